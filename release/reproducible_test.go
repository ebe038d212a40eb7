package release

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/release/ociimage"
)

// TestRelease makes a release of this repository's HEAD twice, in two
// temporary directories, from a tag signed by a test key: the two are the
// same bytes, file for file; they verify; a tampered copy does not; and an
// unsigned tag is refused before anything is built. With root (for the
// cached base layer) the release includes the container image.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds turtles for two architectures, twice (-short)")
	}
	ctx := context.Background()
	s := newSigner(t, "release@example.com")
	repo := filepath.Join(t.TempDir(), "repo.git")
	run(t, ".", "git", "clone", "-q", "--bare", "..", repo)
	head := run(t, repo, "git", "rev-parse", "HEAD")
	s.tag(t, repo, "v0.0.1-test", true)
	s.tag(t, repo, "v0.0.1-unsigned", false)

	c := Config{Repo: repo, Tag: "v0.0.1-test", AllowedSigners: s.allowed, SigningKey: s.key,
		Arches: []string{"amd64", "arm64"}, ImageArch: "amd64", Log: slog.Default()}
	if os.Geteuid() == 0 {
		layer, err := ociimage.CachedRootfs(ctx, debian.CacheDir(), ociimage.RootfsOptions{
			Mirror: "http://deb.debian.org/debian", Arch: "amd64", Log: slog.Default()})
		if err != nil {
			t.Fatal(err)
		}
		c.Rootfs = layer
	} else {
		t.Log("not root: the release has no image (its base layer needs debootstrap)")
	}

	// The unsigned tag first: refused, nothing written.
	bad := c
	bad.Tag, bad.Out = "v0.0.1-unsigned", filepath.Join(t.TempDir(), "unsigned")
	if _, err := Release(ctx, bad); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("Release of an unsigned tag: %v, want ErrUnsigned", err)
	}
	if _, err := os.Stat(bad.Out); !os.IsNotExist(err) {
		t.Errorf("Release of an unsigned tag wrote %s (%v)", bad.Out, err)
	}

	var dirs []string
	var files []string
	for i := range 2 {
		c.Out = filepath.Join(t.TempDir(), "dist")
		start := time.Now()
		r, err := Release(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("release %d: %d files in %s", i+1, len(r.Files), time.Since(start).Round(time.Second))
		dirs, files = append(dirs, c.Out), r.Files
	}
	want := []string{"RELEASE-NOTES.md", SumsFile, SigFile, "turtles-v0.0.1-test-linux-amd64", "turtles-v0.0.1-test-linux-amd64.cdx.json",
		"turtles-v0.0.1-test-linux-arm64", "turtles-v0.0.1-test-linux-arm64.cdx.json", "turtles_0.0.1+test_amd64.deb", "turtles_0.0.1+test_arm64.deb"}
	if c.Rootfs != "" {
		want = append(want, "turtles-v0.0.1-test-image-amd64.oci.tar")
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(files))
	if !slices.Equal(got, want) {
		t.Errorf("release files %q, want %q", got, want)
	}
	for _, f := range files {
		a, err := os.ReadFile(filepath.Join(dirs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dirs[1], f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the two builds", f)
		}
	}

	who, err := Verify(ctx, dirs[0], s.allowed)
	if err != nil || who != "release@example.com" {
		t.Errorf("Verify = %q, %v", who, err)
	}
	// sha256sum agrees with VerifySums.
	cmd := exec.Command("sha256sum", "--check", "--strict", SumsFile)
	cmd.Dir = dirs[0]
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}
	bin := filepath.Join(dirs[0], "turtles-v0.0.1-test-linux-amd64")
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "turtles v0.0.1-test\ncommit "+head+"\n") {
		t.Errorf("turtles version of the release: %v\n%s", err, out)
	}
	// One changed byte in the second release's binary.
	f, err := os.OpenFile(filepath.Join(dirs[1], "turtles-v0.0.1-test-linux-arm64"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Verify(ctx, dirs[1], s.allowed); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "turtles-v0.0.1-test-linux-arm64") {
		t.Errorf("Verify of a tampered release = %v, want ErrTampered naming the binary", err)
	}
}
