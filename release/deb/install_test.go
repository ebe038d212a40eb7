package deb

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/release/ociimage"
)

// chroot runs a command in root and returns its combined output.
func chroot(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{root}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestInstall installs the package with dpkg into a Debian 12 root file
// system (the container image's base layer, which has every package it
// depends on, with its own turtles account removed and a kvm group added
// as udev would): the user is created as a system user in group kvm, the
// files, directories and conffile are where and whose they should be, the
// binary runs as the user; removing keeps the conffile, purging keeps the
// user and the data. Starting the units needs systemd, which a chroot has
// not: that is left to a VM.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("unpacks a Debian root file system (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg in a chroot needs root")
	}
	layer, err := ociimage.CachedRootfs(context.Background(), debian.CacheDir(),
		ociimage.RootfsOptions{Mirror: "http://deb.debian.org/debian", Arch: "amd64", Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", layer, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", layer, err, out)
	}
	for name, dev := range map[string]int{"null": 3, "zero": 5, "urandom": 9} {
		if err := syscall.Mknod(filepath.Join(root, "dev", name), syscall.S_IFCHR|0o666, 1<<8|dev); err != nil {
			t.Fatal(err)
		}
	}
	// A host as the package finds it: no turtles yet, a kvm group.
	chroot(t, root, "userdel", "turtles")
	chroot(t, root, "sh", "-c", "getent group turtles && groupdel turtles; rm -rf /var/lib/turtles; groupadd --system kvm")

	o := options(t)
	o.Binary = filepath.Join(t.TempDir(), "turtles")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-X main.version=v1.2.3", "-o", o.Binary, "../../cmd/turtles")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pkg, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp/turtles.deb"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	chroot(t, root, "dpkg", "--install", "/tmp/turtles.deb")

	if got := chroot(t, root, "dpkg-query", "-W", "-f", "${Status} ${Version}", "turtles"); got != "install ok installed 1.2.3" {
		t.Errorf("dpkg-query: %q", got)
	}
	pw := strings.Split(strings.TrimSpace(chroot(t, root, "getent", "passwd", "turtles")), ":")
	if uid, _ := strconv.Atoi(pw[2]); len(pw) != 7 || uid == 0 || uid >= 1000 || pw[5] != DataDir || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("user turtles: %q, want a system user (uid 1-999) with home %s and no login shell", pw, DataDir)
	}
	if groups := strings.Fields(chroot(t, root, "id", "-nG", "turtles")); len(groups) != 2 || groups[0] != "turtles" || groups[1] != "kvm" {
		t.Errorf("turtles is in groups %q, want turtles and kvm", groups)
	}
	for path, want := range map[string]string{
		BinaryPath:                            "root root 755",
		ConfigPath:                            "root root 644",
		"/etc/turtles":                        "root turtles 750",
		DataDir:                               "turtles turtles 750",
		UnitDir + "/turtles-serve.service":    "root root 644",
		UnitDir + "/turtles-hook.service":     "root root 644",
		UnitDir + "/turtles-reporter.service": "root root 644",
		UnitDir + "/turtles-bot@.service":     "root root 644",
	} {
		if got := strings.TrimSpace(chroot(t, root, "stat", "-c", "%U %G %a", path)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if out := chroot(t, root, "su", "-s", "/bin/sh", "turtles", "-c", "turtles version"); !strings.HasPrefix(out, "turtles v1.2.3\n") {
		t.Errorf("turtles version as turtles: %q", out)
	}
	// The config the units read is readable by the user, and loads.
	chroot(t, root, "su", "-s", "/bin/sh", "turtles", "-c", "turtles image list --config "+ConfigPath+" --data-dir /tmp/t")

	chroot(t, root, "dpkg", "--remove", "turtles")
	if _, err := os.Stat(filepath.Join(root, BinaryPath)); !os.IsNotExist(err) {
		t.Errorf("after dpkg --remove, %s: %v", BinaryPath, err)
	}
	if _, err := os.Stat(filepath.Join(root, ConfigPath)); err != nil {
		t.Errorf("dpkg --remove took the conffile: %v", err)
	}
	chroot(t, root, "dpkg", "--purge", "turtles")
	if _, err := os.Stat(filepath.Join(root, ConfigPath)); !os.IsNotExist(err) {
		t.Errorf("after dpkg --purge, %s: %v", ConfigPath, err)
	}
	chroot(t, root, "getent", "passwd", "turtles")
	if _, err := os.Stat(filepath.Join(root, DataDir)); err != nil {
		t.Errorf("dpkg --purge took %s: %v", DataDir, err)
	}
}
