package debian

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/image"
)

// TestCached builds the real image once (or finds it in the cache) and
// checks that its manifest points at a kernel, an initrd and a disk named
// by its sha256. Booting it is the vm package's test.
func TestCached(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building a Debian image needs root")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("debootstrap missing: run scripts/deps.sh")
	}
	path, err := Cached(context.Background(), CacheDir(), "debian-12", testWriter{t}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Disk, m.SHA256) || m.BuilderVersion != Version {
		t.Errorf("manifest %+v: disk not named by its sha256 or wrong builder version", m)
	}
	for _, p := range []string{m.Disk, m.Kernel, m.Initrd} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	sum, err := image.HashFile(m.Disk)
	if err != nil || sum != m.SHA256 {
		t.Errorf("disk sha256 = %s, %v; manifest says %s", sum, err, m.SHA256)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
