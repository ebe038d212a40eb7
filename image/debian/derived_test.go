package debian

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image"
)

// TestCachedPackages builds a real derived image with one small package
// (or finds it in the cache), checks that the package's program and its
// dpkg record are on the built disk (read with debugfs, without booting
// or mounting it), and that asking again is a cache hit.
func TestCachedPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Debian image")
	}
	if os.Geteuid() != 0 {
		t.Skip("building a Debian image needs root")
	}
	for _, tool := range []string{"debootstrap", "debugfs", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing: run scripts/deps.sh", tool)
		}
	}
	ctx := context.Background()
	start := time.Now()
	path, err := CachedPackages(ctx, CacheDir(), "debian-12", []string{"hello"}, testMirror, testWriter{t}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first CachedPackages (a build unless cached): %v", time.Since(start).Round(time.Millisecond))

	m, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "debian-12_hello" || len(m.Packages) != 1 || m.Packages[0] != "hello" || m.BuilderVersion != Version {
		t.Errorf("manifest name %q, packages %q, builder version %d; want debian-12_hello, [hello], %d", m.Name, m.Packages, m.BuilderVersion, Version)
	}
	if filepath.Base(path) != "debian-12_hello.json" || filepath.Base(filepath.Dir(path)) != "debian-12_hello-v2" {
		t.Errorf("manifest at %s, want .../debian-12_hello-v%d/debian-12_hello.json", path, Version)
	}
	if !strings.Contains(filepath.Base(m.Disk), "debian-12_hello-"+m.SHA256) {
		t.Errorf("disk %s is not named by its sha256 %s", m.Disk, m.SHA256)
	}
	for _, p := range []string{m.Kernel, m.Initrd} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}

	raw := filepath.Join(t.TempDir(), "root.img")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", m.Disk, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	cat := func(p string) []byte {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command("debugfs", "-R", "cat "+p, raw)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("debugfs cat %s: %v\n%s", p, err, stderr.Bytes())
		}
		return stdout.Bytes()
	}
	if b := cat("/usr/bin/hello"); !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Errorf("/usr/bin/hello on the disk is %d bytes and not an ELF program", len(b))
	}
	if status := string(cat("/var/lib/dpkg/status")); !strings.Contains(status, "Package: hello\nStatus: install ok installed\n") {
		t.Errorf("dpkg status on the disk does not list hello as installed")
	}
	// The base's packages are there too, and nothing of the build is left.
	if b := cat("/usr/sbin/sshd"); !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Errorf("/usr/sbin/sshd missing from the derived disk")
	}
	if b := cat("/usr/sbin/policy-rc.d"); len(b) != 0 {
		t.Errorf("the build's policy-rc.d is left on the disk: %q", b)
	}

	// Same packages in another order and repeated: the same cache entry,
	// found without building.
	start = time.Now()
	again, err := CachedPackages(ctx, CacheDir(), "debian-12", []string{"hello", "hello"}, testMirror, testWriter{t}, slog.Default())
	took := time.Since(start)
	if err != nil || again != path {
		t.Fatalf("second CachedPackages = %s, %v; want %s", again, err, path)
	}
	t.Logf("second CachedPackages (cache hit): %v", took)
	if took > 5*time.Second {
		t.Errorf("second CachedPackages took %v: not a cache hit", took)
	}
}

// TestSweepBuilds: what a killed build left (here a tmpfs mounted in its
// tree, as debootstrap's /proc or derive's loop mount would be) is
// unmounted and removed by the next build under the cache's lock, and
// what is not a build's is kept.
func TestSweepBuilds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, ".build-123", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "debian-12.json")
	if err := os.WriteFile(keep, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", root).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", root).Run() })
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sweepBuilds(context.Background(), dir, testWriter{t}, slog.Default())
	for _, m := range mountPoints() {
		if strings.HasPrefix(m, dir) {
			t.Errorf("still mounted: %s", m)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".build-123")); !os.IsNotExist(err) {
		t.Errorf("the killed build's directory is still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("sweep removed what is not a build's: %v", err)
	}
}
