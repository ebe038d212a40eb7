// Package systemd_test checks the systemd units beside it with systemd's
// own tools: `systemd-analyze verify` (unknown keys, bad values, missing
// dependencies) and `systemd-analyze security` (the exposure of each
// service), both offline against a root holding the units and a turtles
// binary; and that every flag the units pass exists and the default
// configuration loads. Nothing is started: these machines run no systemd.
package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// units are the unit files here, and the instance each is verified as.
var units = map[string]string{
	"turtles-serve.service":    "turtles-serve.service",
	"turtles-hook.service":     "turtles-hook.service",
	"turtles-reporter.service": "turtles-reporter.service",
	"turtles-bot@.service":     "turtles-bot@public.service",
}

// runsVMs are the units whose processes boot QEMU and sandbox commands
// with bubblewrap, which limits their hardening.
var runsVMs = map[string]bool{"turtles-serve.service": true, "turtles-bot@.service": true}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// turtles builds the turtles binary once for every test here.
func turtles(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "turtles-systemd-test-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "turtles")
		if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/turtles").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build turtles: %v", buildErr)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

// root makes a root file system for systemd-analyze --root: the host's
// system units (for the targets ours name), ours in /etc/systemd/system,
// and turtles at /usr/bin/turtles, where the .deb installs it.
func root(t *testing.T, edit func(name, body string) string) string {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is missing (Debian's systemd package): %v", err)
	}
	r := t.TempDir()
	for _, d := range []string{"usr/bin", "etc/systemd/system", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(r, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy the system units: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", turtles(t), filepath.Join(r, "usr/bin/turtles")).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for name := range units {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		body := string(b)
		if edit != nil {
			body = edit(name, body)
		}
		if err := os.WriteFile(filepath.Join(r, "etc/systemd/system", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// verify runs systemd-analyze verify on every unit and returns what it
// said: nothing at all when every unit is right.
func verify(t *testing.T, r string) string {
	t.Helper()
	args := []string{"verify", "--man=no", "--root=" + r}
	for _, inst := range units {
		args = append(args, inst)
	}
	slices.Sort(args[3:])
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil {
		return string(out) + err.Error()
	}
	return string(out)
}

func TestVerify(t *testing.T) {
	if out := verify(t, root(t, nil)); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
}

// TestVerifyBites proves verify reports what a typo would do: a misspelt
// key is ignored by systemd (the unit still starts, unhardened), and an
// ExecStart that does not exist fails.
func TestVerifyBites(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"misspelt key", "NoNewPrivileges=yes", "NoNewPrivilege=yes", "Unknown key 'NoNewPrivilege'"},
		{"bad value", "ProtectSystem=strict", "ProtectSystem=stricter", "Failed to parse protect system value"},
		{"missing program", "ExecStart=/usr/bin/turtles", "ExecStart=/usr/bin/turtle", "/usr/bin/turtle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := root(t, func(name, body string) string {
				if name != "turtles-hook.service" {
					return body
				}
				return strings.Replace(body, tc.old, tc.new, 1)
			})
			if out := verify(t, r); !strings.Contains(out, tc.want) {
				t.Errorf("verify said %q, want %q", out, tc.want)
			}
		})
	}
}

// TestSecurity keeps the exposure systemd-analyze security reports low:
// the hook and the reporter run no task and are locked down; serve and
// bots, which boot QEMU and sandbox commands, less so.
func TestSecurity(t *testing.T) {
	r := root(t, nil)
	overall := regexp.MustCompile(`Overall exposure level for (\S+): (\d+\.\d+)`)
	for file, inst := range units {
		out, _ := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "--root="+r, inst).CombinedOutput()
		m := overall.FindStringSubmatch(string(out))
		if m == nil {
			t.Errorf("%s: no exposure level in:\n%s", inst, out)
			continue
		}
		level, _ := strconv.ParseFloat(m[2], 64)
		limit := 2.0
		if runsVMs[file] {
			limit = 4.0
		}
		if level > limit {
			t.Errorf("%s: exposure %.1f, want at most %.1f\n%s", inst, level, limit, out)
		}
	}
}

// unit is a unit file's settings: "Section.Key" to its values.
type unit map[string][]string

func parse(t *testing.T, name string) unit {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

// TestHardening names the settings each unit must have, and those that
// the units that run VMs must not have, each with what it would break:
// a later "more hardening" that breaks QEMU or the sandbox fails here,
// not on a user's host.
func TestHardening(t *testing.T) {
	all := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
		"User": "turtles", "RestrictRealtime": "yes", "ProtectKernelModules": "yes",
	}
	noTasks := map[string]string{
		"PrivateDevices": "yes", "MemoryDenyWriteExecute": "yes", "RestrictNamespaces": "yes", "ProtectKernelTunables": "yes",
		"ProtectControlGroups": "yes", "ProtectHostname": "yes", "ProtectProc": "invisible", "PrivateUsers": "yes",
	}
	// What QEMU and bubblewrap need, and the setting that would take it.
	vmBreakers := map[string]string{
		"PrivateDevices":         "hides /dev/kvm",
		"MemoryDenyWriteExecute": "QEMU's TCG writes and runs code",
		"RestrictNamespaces":     "bubblewrap makes user, mount and PID namespaces",
		"ProtectKernelTunables":  "covers part of /proc, so bubblewrap cannot mount a fresh one in a user namespace",
		"ProtectKernelLogs":      "covers /proc/kmsg, the same",
		"ProtectProc":            "mounts /proc with hidepid, the same",
		"ProcSubset":             "the same",
		"ProtectHostname":        "forbids sethostname, which bubblewrap's --hostname does",
		"ProtectControlGroups":   "makes the cgroup tree read-only: no task cgroups",
		"PrivateUsers":           "maps group kvm away: no /dev/kvm",
	}
	for file := range units {
		u := parse(t, file)
		for k, want := range all {
			if got := u["Service."+k]; len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s=%q, want %q", file, k, got, want)
			}
		}
		if !runsVMs[file] {
			for k, want := range noTasks {
				if got := u["Service."+k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s: %s=%q, want %q (it runs no VM and no task)", file, k, got, want)
				}
			}
			continue
		}
		for k, why := range vmBreakers {
			if v, ok := u["Service."+k]; ok {
				t.Errorf("%s: %s=%s %s", file, k, v, why)
			}
		}
		for k, want := range map[string]string{"DeviceAllow": "/dev/kvm rw", "SupplementaryGroups": "kvm", "Delegate": "yes",
			"KillMode": "mixed", "DevicePolicy": "closed"} {
			if got := u["Service."+k]; !slices.Contains(got, want) {
				t.Errorf("%s: %s=%q, want %q", file, k, got, want)
			}
		}
		if f := strings.Join(u["Service.SystemCallFilter"], " "); !strings.Contains(f, "@mount") || !strings.Contains(f, "sethostname") {
			t.Errorf("%s: SystemCallFilter=%s lacks @mount or sethostname, which bubblewrap needs", file, f)
		}
	}
}

// TestFlags checks that every flag a unit's ExecStart passes is one
// `turtles COMMAND --help` lists, and that the default configuration the
// .deb installs loads with turtles' strict loader.
func TestFlags(t *testing.T) {
	bin := turtles(t)
	flagRe := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)
	for file := range units {
		u := parse(t, file)
		exec0 := u["Service.ExecStart"]
		if len(exec0) != 1 {
			t.Errorf("%s: %d ExecStart lines", file, len(exec0))
			continue
		}
		args := strings.Fields(exec0[0])
		if args[0] != "/usr/bin/turtles" {
			t.Errorf("%s: runs %s, not /usr/bin/turtles", file, args[0])
			continue
		}
		var sub []string
		flags := map[string]bool{}
		for _, a := range args[1:] {
			if name, ok := strings.CutPrefix(a, "--"); ok {
				name, _, _ = strings.Cut(name, "=")
				flags[name] = true
			} else if len(flags) == 0 {
				sub = append(sub, a)
			}
		}
		out, err := exec.Command(bin, append(sub, "--help")...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: turtles %s --help: %v\n%s", file, strings.Join(sub, " "), err, out)
			continue
		}
		known := map[string]bool{}
		for _, m := range flagRe.FindAllStringSubmatch(string(out), -1) {
			known[m[1]] = true
		}
		for f := range flags {
			if !known[f] {
				t.Errorf("%s: turtles %s has no --%s", file, strings.Join(sub, " "), f)
			}
		}
		if !flags["config"] {
			t.Errorf("%s: does not read /etc/turtles/turtles.yaml (--config)", file)
		}
	}
	out, err := exec.Command(bin, "image", "list", "--config", "turtles.yaml", "--data-dir", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Errorf("turtles.yaml does not load as a turtles config: %v\n%s", err, out)
	}
}
