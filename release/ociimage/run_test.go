package ociimage

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image/debian"
)

// testMirror is the Debian mirror the base layer is built from.
const testMirror = "http://deb.debian.org/debian"

// realImage builds the image `make image` builds, from the cached base
// layer (built on first use: minutes, root and the mirror) and a static
// turtles binary, and unpacks it into a directory.
func realImage(t *testing.T) (root, layer string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and unpacks the real image (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building the base layer and chroot need root")
	}
	ctx := context.Background()
	layer, err := CachedRootfs(ctx, debian.CacheDir(), RootfsOptions{Mirror: testMirror, Arch: "amd64", Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "turtles")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-X main.version=v0.0.0-test -X main.commit=feedface", "-o", bin, "../../cmd/turtles")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built the binary in %s", time.Since(start).Round(time.Second))
	start = time.Now()
	img, err := Build(Options{Rootfs: layer, Binary: bin, Arch: "amd64", Created: epoch, Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, img, "turtles:test"); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the layout in %s", time.Since(start).Round(time.Second))
	read, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(t.TempDir(), "root")
	start = time.Now()
	if err := Unpack(ctx, read, root); err != nil {
		t.Fatal(err)
	}
	t.Logf("unpacked the image in %s", time.Since(start).Round(time.Second))
	// What a container runtime provides: the basic devices.
	for name, dev := range map[string]int{"null": 3, "zero": 5, "urandom": 9} {
		if err := syscall.Mknod(filepath.Join(root, "dev", name), syscall.S_IFCHR|0o666, 1<<8|dev); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(root, "dev", name), 0o666)
	}
	return root, layer
}

// chroot runs a command in root as user ("" for root) and returns its
// combined output.
func chroot(t *testing.T, root, user string, args ...string) string {
	t.Helper()
	full := []string{root}
	if user != "" {
		full = []string{"--userspec=" + user, root}
	}
	cmd := exec.Command("chroot", append(full, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + Home, "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestImageRuns unpacks the real image and uses it: turtles runs there as
// the image's own user and reports its version, every program a bot runs
// is there and starts, the account is what the manifests and units
// expect, and the packages are the Dockerfile's (ociimage.Packages).
func TestImageRuns(t *testing.T) {
	root, layer := realImage(t)
	user := "10001:10001"
	out := chroot(t, root, user, Binary, "version")
	if !strings.HasPrefix(out, "turtles v0.0.0-test\ncommit feedface\n") || !strings.Contains(out, "dep github.com/spf13/cobra ") {
		t.Errorf("turtles version in the image:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"qemu-system-x86_64", "--version"}, "QEMU emulator version"},
		{[]string{"qemu-img", "--version"}, "qemu-img version"},
		{[]string{"git", "--version"}, "git version"},
		{[]string{"ssh", "-V"}, "OpenSSH"},
		{[]string{"bwrap", "--version"}, "bubblewrap"},
		{[]string{"sh", "-c", "test -s /etc/ssl/certs/ca-certificates.crt && echo CA bundle"}, "CA bundle"},
		{[]string{"id"}, "uid=10001(turtles) gid=10001(turtles)"},
		{[]string{"sh", "-c", "touch $HOME/written && echo home writable"}, "home writable"},
	} {
		if out := chroot(t, root, user, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("%s in the image: %q, want %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
	// The binary belongs to root: the account that runs it cannot change it.
	if st, err := os.Stat(filepath.Join(root, Binary)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v %v, want mode 0755", Binary, st, err)
	}
	if out, err := exec.Command("chroot", "--userspec="+user, root, "sh", "-c", "echo x >> "+Binary).CombinedOutput(); err == nil {
		t.Errorf("user %s could write %s: %s", user, Binary, out)
	}
	installed, err := InstalledPackages(layer)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Packages {
		if _, ok := installed[p]; !ok {
			t.Errorf("package %s is not installed in the base layer", p)
		}
	}
	dpkg := chroot(t, root, "", "dpkg-query", "-W", "-f", "${Package}\n")
	got := strings.Fields(dpkg)
	slices.Sort(got)
	if len(got) != len(installed) {
		t.Errorf("dpkg in the image lists %d packages, the layer's list %d", len(got), len(installed))
	}
}
