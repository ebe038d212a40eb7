package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/vm"
)

func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing: run scripts/deps.sh", tool)
		}
	}
}

// qemuRunning reports whether a qemu whose command line mentions dir runs.
func qemuRunning(dir string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(string(b), "qemu-system") && strings.Contains(string(b), dir) {
			if st, err := os.ReadFile(strings.TrimSuffix(p, "cmdline") + "stat"); err == nil {
				if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(strings.TrimSpace(string(st[i+1:])), "Z") {
					continue
				}
			}
			return true
		}
	}
	return false
}

// debianTestImage returns the manifest of the Debian test image, built
// the first time; it skips the test without QEMU or root.
func debianTestImage(t *testing.T) string {
	t.Helper()
	needQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("building the Debian test image needs root")
	}
	manifest, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", defaultDebianMirror, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return manifest
}

// machinesWorld is the data directory of a test whose machines outlive
// the commands that start them, and the flags that point the commands at
// it and at the Debian test image. The directory has a fixed name, and
// the test's process is the machines' owner: if the test binary is killed
// (a timeout), the next run's sweep stops them.
func machinesWorld(t *testing.T, name string) (data string, flags []string) {
	t.Helper()
	manifest := debianTestImage(t)
	data = filepath.Join(os.TempDir(), name)
	if _, err := vm.Sweep(filepath.Join(data, "vms"), nil); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(data)
	t.Cleanup(func() { os.RemoveAll(data) })
	return data, []string{"--data-dir", data, "--images-dir", filepath.Dir(manifest)}
}

// TestVMCommands drives one real Debian VM through the vm commands.
func TestVMCommands(t *testing.T) {
	data, flags := machinesWorld(t, "turtles-test-vm-commands")
	tt := func(args ...string) (int, string) {
		t.Helper()
		return runTurtles(t, append(args, flags...)...)
	}
	if code, out := tt("vm", "start", "debian-12", "--name", "a", "--forward", "9090", "--owner-pid", strconv.Itoa(os.Getpid())); code != 0 || !strings.HasPrefix(out, "turtles: booting") || !strings.Contains(out, "\na\n") {
		t.Fatalf("vm start: exit %d\n%s", code, out)
	}
	defer tt("vm", "stop", "a")

	cmd := exec.Command(e2e.Bin(t), append([]string{"vm", "list", "--json"}, flags...)...)
	out, err := cmd.Output()
	var states []vm.State
	if err == nil {
		err = json.Unmarshal(out, &states)
	}
	if err != nil || len(states) != 1 || states[0].Name != "a" || states[0].Ports[9090] == 0 {
		t.Errorf("vm list --json: %v\n%s", err, out)
	}
	// Flags go before "--": what follows is the guest's command.
	if code, out := runTurtles(t, append(append([]string{"vm", "ssh"}, flags...), "a", "--", "echo hi from $(hostname); exit 7")...); code != 7 || out != "hi from turtles\n" {
		t.Errorf("vm ssh: exit %d, %q; want 7 and the guest's hello", code, out)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("payload"), 0o644)
	if code, out := tt("vm", "scp", filepath.Join(src, "f.txt"), "a:/var/tmp/in"); code != 0 {
		t.Errorf("vm scp in: exit %d\n%s", code, out)
	}
	dst := t.TempDir()
	if code, out := tt("vm", "scp", "a:/var/tmp/in", dst); code != 0 {
		t.Errorf("vm scp out: exit %d\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "f.txt")); string(b) != "payload" {
		t.Errorf("round trip through the VM: %q, %v", b, err)
	}
	if code, out := tt("vm", "stop", "a"); code != 0 {
		t.Errorf("vm stop: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(data, "vms", "a")); !os.IsNotExist(err) || qemuRunning(data) {
		t.Errorf("after vm stop: machine dir %v, qemu running %v", err, qemuRunning(data))
	}
}

// TestVMKilledMidBoot: SIGKILL to `turtles run` while its VM boots takes
// qemu with it; SIGKILL to `turtles vm start` (whose qemu is detached, to
// outlive it) leaves a machine that the next vm command sweeps.
func TestVMKilledMidBoot(t *testing.T) {
	needQEMU(t)
	images := t.TempDir()
	disk := filepath.Join(images, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// A disk that never boots: the machine stays "mid-boot" until killed.
	if err := image.Write(filepath.Join(images, "blank.json"), &image.Manifest{Name: "blank", Disk: "blank.qcow2"}); err != nil {
		t.Fatal(err)
	}
	killWhenBooting := func(t *testing.T, cmd *exec.Cmd, dir string) {
		t.Helper()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		e2e.WaitFor(t, 20*time.Second, "qemu to start", func() bool { return qemuRunning(dir) })
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}

	t.Run("run", func(t *testing.T) {
		repo := t.TempDir()
		e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": "contexts:\n  - name: vm\n    image: blank\n    command: true\n"})
		tmp := t.TempDir()
		cmd := exec.Command(e2e.Bin(t), "run", "vm", "--dir", repo, "--images-dir", images)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		killWhenBooting(t, cmd, tmp)
		e2e.WaitFor(t, 5*time.Second, "qemu to die with turtles run", func() bool { return !qemuRunning(tmp) })
	})
	// A pinned image the images directory lacks is fetched from a peer
	// before the boot, as a bot fetches it.
	t.Run("run-pinned", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		peer, mine := t.TempDir(), t.TempDir()
		out, _, err := turtlesCmd(t, ctx, "image", "pin", filepath.Join(images, "blank.json"), "--images-dir", peer)
		m := regexp.MustCompile(`blank: (blank-[0-9a-f]{64})`).FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("image pin: %q, %v", out, err)
		}
		addr, stop, _ := serveImagesDir(t, ctx, peer, m[1])
		defer stop()
		repo := t.TempDir()
		e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": "images:\n  blank: " + m[1] + "\ncontexts:\n  - name: vm\n    image: blank\n    command: true\n"})
		tmp := t.TempDir()
		var log bytes.Buffer
		cmd := exec.Command(e2e.Bin(t), "run", "vm", "--dir", repo, "--images-dir", mine, "--image-peers", addr)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		cmd.Stdout, cmd.Stderr = &log, &log
		killWhenBooting(t, cmd, tmp)
		if c, err := cache.New(cache.Config{Dir: mine}); err != nil || !c.Has(cache.ID(m[1])) {
			t.Errorf("%s is not in the images directory after the run (%v)", m[1], err)
		}
		if !strings.Contains(log.String(), "fetched image "+m[1]) {
			t.Errorf("the run's log does not say it fetched the image:\n%s", log.String())
		}
	})
	t.Run("vm-start", func(t *testing.T) {
		data := t.TempDir()
		cmd := exec.Command(e2e.Bin(t), "vm", "start", "blank", "--name", "k", "--data-dir", data, "--images-dir", images)
		killWhenBooting(t, cmd, data)
		if code, out := runTurtles(t, "vm", "list", "--data-dir", data); code != 0 || strings.Contains(out, "\nk ") {
			t.Errorf("vm list after a killed start: exit %d\n%s", code, out)
		}
		if qemuRunning(data) {
			t.Error("qemu of the killed start still runs after the sweep")
		}
		if _, err := os.Stat(filepath.Join(data, "vms", "k")); !os.IsNotExist(err) {
			t.Errorf("overlay and seed of the killed start survive the sweep: %v", err)
		}
	})
}
