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

// testMirror is the Debian mirror the test image is built from.
const testMirror = "http://deb.debian.org/debian"

// TestBuildNamesWhatIsMissing: Build decides no mirror itself; it refuses
// Options that lack one, and says which, before it needs root or tools.
func TestBuildNamesWhatIsMissing(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no mirror", opts: Options{Recipe: "debian-12", Out: t.TempDir()}, wantErr: "no Mirror"},
		{name: "unknown recipe", opts: Options{Recipe: "plan9", Out: t.TempDir(), Mirror: testMirror}, wantErr: `unknown image recipe "plan9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Build: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

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
	path, err := Cached(context.Background(), CacheDir(), "debian-12", testMirror, testWriter{t}, slog.Default())
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

// TestDeriveNeedsARecipeImage: a derived image is made only from an image
// of its recipe and version with no packages of its own, not from another
// derived image or a disk of unknown make.
func TestDeriveNeedsARecipeImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Build checks for root first")
	}
	for _, tt := range []struct {
		name string
		m    image.Manifest
	}{
		{name: "derived", m: image.Manifest{Name: "debian-12_hello", Packages: []string{"hello"}, Builder: "image/debian", BuilderVersion: Version, Disk: "d.qcow2"}},
		{name: "old version", m: image.Manifest{Name: "debian-12", Builder: "image/debian", BuilderVersion: Version - 1, Disk: "d.qcow2"}},
		{name: "not ours", m: image.Manifest{Name: "debian-12", Disk: "d.qcow2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			base := dir + "/base.json"
			if err := image.Write(base, &tt.m); err != nil {
				t.Fatal(err)
			}
			_, err := Build(context.Background(), Options{Recipe: "debian-12", Packages: []string{"nginx"}, Base: base, Out: dir, Mirror: testMirror})
			if err == nil || !strings.Contains(err.Error(), "not an image of recipe debian-12") {
				t.Errorf("Build from %+v: %v, want a refusal", tt.m, err)
			}
		})
	}
}
