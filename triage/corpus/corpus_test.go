package corpus

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image/debian"
)

// TestCorpus runs one task of every fault through a real bot and
// requires every verdict right. The VM cases boot the Debian test image
// under QEMU (TCG here): left out with -short.
func TestCorpus(t *testing.T) {
	images := ""
	if !testing.Short() {
		images = debianImages(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rep, err := Run(ctx, Config{Dir: dir, Images: images, MaxDeliveries: 3,
		Progress: testWriter{t},
		Log:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tasks in %s:\n%s", len(rep.Results), rep.Took.Round(time.Second), rep.Summary())
	want := len(Cases)
	if images == "" {
		want -= 3
	}
	if len(rep.Results) != want {
		t.Errorf("%d results, want %d", len(rep.Results), want)
	}
	for _, r := range rep.Results {
		if r.Wrong != "" {
			t.Errorf("%s: %s", r.Task.Context, r.Wrong)
		}
	}
	if rep.RegressionsHidden != 0 || rep.Correct != len(rep.Results) {
		t.Errorf("%d of %d right, %d regressions hidden", rep.Correct, len(rep.Results), rep.RegressionsHidden)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "vms")); len(left) != 0 {
		t.Errorf("machines left behind: %v", left)
	}
}

// debianImages is the directory of the cached Debian test image, built
// the first time (as root, with debootstrap).
func debianImages(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "debootstrap", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: run scripts/deps.sh", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("building the Debian test image needs root")
	}
	m, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(m)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
