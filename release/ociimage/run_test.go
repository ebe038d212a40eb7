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
	t.Run("guest task", func(t *testing.T) { guestTask(t, root) })
}

// guestTask runs a context in a guest VM of the Debian test image with
// `turtles run`, as uid 10001 inside the image's root file system, with
// only /proc, /dev and the images directory from the host (what a
// container runtime and the manifests give a bot): the checkout (git), the
// VM's disk overlay (qemu-img), its boot (QEMU, under TCG without
// /dev/kvm) and SSH to it all work with the image's own tools.
func guestTask(t *testing.T, root string) {
	manifest, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", testMirror, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	// A repository with one guest-mode context, owned by the image's user.
	repo := filepath.Join(root, Home, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "contexts:\n  - name: guest\n    image: debian-12\n    timeout: 15m\n    command: |\n" +
		"      . /etc/os-release\n      echo \"guest: $PRETTY_NAME on $(uname -m)\"\n"
	if err := os.WriteFile(filepath.Join(repo, ".turtles.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"chown", "-R", "10001:10001", repo}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	git := "git -c user.name=T -c user.email=t@example.com -C " + Home + "/repo "
	chroot(t, root, "10001:10001", "sh", "-c", git+"init -q && "+git+"add .turtles.yaml && "+git+"commit -q -m test")

	// A private mount namespace: the mounts end with the command.
	script := `set -e
root=$1 images=$2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mkdir -p "$root/images"
mount --bind "$images" "$root/images"
mount -o remount,bind,ro "$root/images"
exec chroot --userspec=10001:10001 "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=` + Home + ` LC_ALL=C \
	turtles run --dir ` + Home + `/repo --images-dir /images --data-dir ` + Home + `/data guest
`
	start := time.Now()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, filepath.Dir(manifest))
	out, err := cmd.CombinedOutput()
	t.Logf("turtles run in the image took %s:\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("turtles run guest: %v", err)
	}
	if !strings.Contains(string(out), "guest: Debian GNU/Linux 12 (bookworm) on x86_64") {
		t.Errorf("the guest did not run the command")
	}
}
