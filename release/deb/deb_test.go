package deb

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestVersion(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "v1.2.3", want: "1.2.3"},
		{in: "1.2.3", want: "1.2.3"},
		{in: "v1.2.3-4-gabcdef1", want: "1.2.3+4.gabcdef1"},
		{in: "v1.2.3-4-gabcdef1-dirty", want: "1.2.3+4.gabcdef1.dirty"},
		{in: "v1.2.3-rc.1", want: "1.2.3+rc.1"},
		{in: "f00932c", want: "0~f00932c"},
		{in: "f00932c-dirty", want: "0~f00932c+dirty"},
		{in: "2bb4f16", want: "0~2bb4f16"},
		{in: "2bb4f16-dirty", want: "0~2bb4f16+dirty"},
		{in: "", err: "no version"},
		{in: "v1.2 3", err: "no Debian version"},
		{in: "v1_2", err: "no Debian version"},
	} {
		got, err := Version(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Version(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("Version(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// options builds Options from the repository's real units and default
// configuration and a stand-in binary.
func options(t *testing.T) Options {
	t.Helper()
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(units) < 4 {
		t.Fatalf("units of deploy/systemd: %q, %v", units, err)
	}
	bin := filepath.Join(t.TempDir(), "turtles")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho turtles\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return Options{Binary: bin, Arch: "amd64", Version: "v1.2.3", Units: units, Config: "../../deploy/systemd/turtles.yaml",
		Depends: []string{"git", "qemu-system-x86"}, Maintainer: "Release Tester <release@example.com>",
		Time: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), Out: t.TempDir()}
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBuild inspects the package with dpkg-deb: its control fields, its
// files with their owners, modes and times, its conffile and scripts;
// and builds it twice, into the same bytes.
func TestBuild(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatalf("dpkg-deb is missing (run on Debian): %v", err)
	}
	o := options(t)
	path, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "turtles_1.2.3_amd64.deb" {
		t.Errorf("package file %s, want turtles_1.2.3_amd64.deb", path)
	}
	for field, want := range map[string]string{"Package": "turtles", "Version": "1.2.3", "Architecture": "amd64",
		"Depends": "adduser, git, qemu-system-x86", "Maintainer": o.Maintainer} {
		if got := strings.TrimSpace(dpkgDeb(t, "--field", path, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	// drwxr-xr-x root/root 0 2026-11-01 12:00 ./usr/bin/
	var files []string
	line := regexp.MustCompile(`^([-dl][rwxs-]{9}) (\S+)\s+\d+ (\S+ \S+) \./(.*)$`)
	for l := range strings.Lines(dpkgDeb(t, "--contents", path)) {
		m := line.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			t.Fatalf("unexpected --contents line %q", l)
		}
		if m[2] != "root/root" || m[3] != "2026-11-01 12:00" {
			t.Errorf("%s: owner %s time %s, want root/root at the package's time", m[4], m[2], m[3])
		}
		if m[4] != "" && !strings.HasSuffix(m[4], "/") {
			files = append(files, m[1]+" /"+m[4])
		}
	}
	want := []string{"-rw-r--r-- /etc/turtles/turtles.yaml", "-rw-r--r-- /lib/systemd/system/turtles-bot@.service",
		"-rw-r--r-- /lib/systemd/system/turtles-hook.service", "-rw-r--r-- /lib/systemd/system/turtles-reporter.service",
		"-rw-r--r-- /lib/systemd/system/turtles-serve.service", "-rwxr-xr-x /usr/bin/turtles"}
	slices.Sort(files)
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	ctrl := t.TempDir()
	dpkgDeb(t, "--control", path, ctrl)
	if b, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); string(b) != ConfigPath+"\n" {
		t.Errorf("conffiles %q, want %s", b, ConfigPath)
	}
	post, _ := os.ReadFile(filepath.Join(ctrl, "postinst"))
	for _, want := range []string{"adduser --system --group --home /var/lib/turtles", "adduser turtles kvm"} {
		if !strings.Contains(string(post), want) {
			t.Errorf("postinst lacks %q", want)
		}
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(ctrl, script)).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", script, err, out)
		}
	}

	o2 := o
	o2.Out = t.TempDir()
	again, err := Build(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same package differ")
	}
}

// TestBuildRefuses: Build decides nothing itself.
func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no binary", func(o *Options) { o.Binary = "" }, "Binary, Config and Units"},
		{"no units", func(o *Options) { o.Units = nil }, "Binary, Config and Units"},
		{"unknown arch", func(o *Options) { o.Arch = "mips" }, `architecture "mips"`},
		{"no time", func(o *Options) { o.Time = time.Time{} }, "Maintainer, Time and Out"},
		{"bad version", func(o *Options) { o.Version = "v1 2" }, "no Debian version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t)
			tc.change(&o)
			if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
