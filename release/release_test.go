package release

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestVerifyTag: a tag signed by a trusted SSH key verifies, with its
// commit, time and previous tag; lightweight, unsigned and foreign-signed
// tags are refused as ErrUnsigned.
func TestVerifyTag(t *testing.T) {
	trusted, stranger := newSigner(t, "release@example.com"), newSigner(t, "mallory@example.com")
	repo := newRepo(t, "first")
	trusted.tag(t, repo, "v0.1.0", true)
	commit(t, repo, "bot: second")
	head := run(t, repo, "git", "rev-parse", "HEAD")
	trusted.tag(t, repo, "v0.2.0", true)
	trusted.tag(t, repo, "unsigned", false)
	stranger.tag(t, repo, "foreign", true)
	run(t, repo, "git", "tag", "lightweight")

	got, err := VerifyTag(context.Background(), repo, "v0.2.0", trusted.allowed)
	if err != nil {
		t.Fatalf("VerifyTag(v0.2.0): %v", err)
	}
	want := Tag{Name: "v0.2.0", Commit: head, Time: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), Previous: "v0.1.0",
		Tagger: "Release Tester <release@example.com>"}
	if got != want {
		t.Errorf("VerifyTag = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ tag, why string }{
		{"lightweight", "lightweight"},
		{"unsigned", "no signature"},
		{"foreign", ""},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			_, err := VerifyTag(context.Background(), repo, tc.tag, trusted.allowed)
			if !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("VerifyTag(%s) = %v, want ErrUnsigned saying %q", tc.tag, err, tc.why)
			}
		})
	}
	if _, err := VerifyTag(context.Background(), repo, "v9.9.9", trusted.allowed); err == nil || errors.Is(err, ErrUnsigned) {
		t.Errorf("VerifyTag(missing tag) = %v, want a plain error", err)
	}
}

// TestSums: checksums verify; a changed, missing or unlisted-looking file
// and a signature by another key fail as ErrTampered.
func TestSums(t *testing.T) {
	s, other := newSigner(t, "release@example.com"), newSigner(t, "mallory@example.com")
	ctx := context.Background()
	files := map[string]string{"turtles-v1-linux-amd64": "binary", "RELEASE-NOTES.md": "notes\n"}
	newDir := func() string {
		dir := t.TempDir()
		for n, b := range files {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := WriteSums(dir, slices.Collect(func(yield func(string) bool) {
			for n := range files {
				if !yield(n) {
					return
				}
			}
		})); err != nil {
			t.Fatal(err)
		}
		if err := Sign(ctx, dir, s.key); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := newDir()
	sums, _ := os.ReadFile(filepath.Join(dir, SumsFile))
	if want := regexp.MustCompile(`^[0-9a-f]{64}  RELEASE-NOTES.md\n[0-9a-f]{64}  turtles-v1-linux-amd64\n$`); !want.Match(sums) {
		t.Errorf("%s is not sha256sum's sorted format:\n%s", SumsFile, sums)
	}
	if who, err := Verify(ctx, dir, s.allowed); err != nil || who != "release@example.com" {
		t.Fatalf("Verify = %q, %v; want release@example.com", who, err)
	}
	if b, _ := os.ReadFile(filepath.Join(newDir(), SigFile)); !slices.Equal(b, mustRead(t, filepath.Join(dir, SigFile))) {
		t.Error("two Ed25519 signatures of the same sums differ: a rebuilt release would not be identical")
	}

	for _, tc := range []struct {
		name   string
		tamper func(dir string) error
		want   string
	}{
		{"changed binary", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "turtles-v1-linux-amd64"), []byte("binarY"), 0o644)
		}, "turtles-v1-linux-amd64: checksum mismatch"},
		{"missing file", func(dir string) error { return os.Remove(filepath.Join(dir, "RELEASE-NOTES.md")) }, "RELEASE-NOTES.md"},
		{"changed sums", func(dir string) error {
			b, _ := os.ReadFile(filepath.Join(dir, SumsFile))
			return os.WriteFile(filepath.Join(dir, SumsFile), append(b, []byte(strings.Repeat("0", 64)+"  extra\n")...), 0o644)
		}, "Signature verification failed"},
		{"foreign signature", func(dir string) error { return Sign(ctx, dir, other.key) }, "signed by no key"},
		{"no signature", func(dir string) error { return os.Remove(filepath.Join(dir, SigFile)) }, SigFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir()
			if err := tc.tamper(dir); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(ctx, dir, s.allowed)
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want ErrTampered with %q", err, tc.want)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNotes: the notes list the commits since the previous tag, by part,
// and none before it; the first release lists them all.
func TestNotes(t *testing.T) {
	s := newSigner(t, "release@example.com")
	repo := newRepo(t, "bot: old change")
	s.tag(t, repo, "v0.1.0", true)
	commit(t, repo, "bot: claim faster", "docs: explain install", "bot: drain on SIGTERM", "Merge-free subject without part")
	s.tag(t, repo, "v0.2.0", true)
	ctx := context.Background()
	tag, err := VerifyTag(ctx, repo, "v0.2.0", s.allowed)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := Notes(ctx, repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# turtles v0.2.0", "## 4 changes since v0.1.0", "### bot\n\n- claim faster (", "- drain on SIGTERM (",
		"### docs\n\n- explain install (", "### other\n\n- Merge-free subject without part ("} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "old change") {
		t.Errorf("notes list a commit of v0.1.0:\n%s", notes)
	}
	first, err := VerifyTag(ctx, repo, "v0.1.0", s.allowed)
	if err != nil {
		t.Fatal(err)
	}
	if notes, _ := Notes(ctx, repo, first); !strings.Contains(notes, "1 changes (first release)") || !strings.Contains(notes, "old change") {
		t.Errorf("first release's notes:\n%s", notes)
	}
}

// TestSBOM reads the build information of a small program: the SBOM
// names the modules it links (go-cmp, at go.mod's version), is valid
// CycloneDX JSON, and is the same bytes twice.
func TestSBOM(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "sbom")
	run(t, ".", "go", "build", "-o", exe, "./testdata/sbom")
	when := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	a, err := SBOM(exe, "v1.2.3", when)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SBOM(exe, "v1.2.3", when)
	if string(a) != string(b) {
		t.Error("two SBOMs of the same binary differ")
	}
	var bom struct {
		BOMFormat, SpecVersion, SerialNumber string
		Metadata                             struct {
			Timestamp string
			Component struct{ Name, Version string }
		}
		Components []struct{ Name, Version, PURL string }
	}
	if err := json.Unmarshal(a, &bom); err != nil {
		t.Fatal(err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != "1.5" || !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(bom.SerialNumber) ||
		bom.Metadata.Timestamp != "2026-11-01T12:00:00Z" || bom.Metadata.Component.Name != "github.com/turtles-ci/turtles" || bom.Metadata.Component.Version != "v1.2.3" {
		t.Errorf("SBOM header: %+v", bom)
	}
	gomod := string(mustRead(t, "../go.mod"))
	found := false
	for _, c := range bom.Components {
		if c.Name == "github.com/google/go-cmp" {
			found = true
			if !strings.Contains(gomod, c.Name+" "+c.Version) || c.PURL != "pkg:golang/github.com/google/go-cmp@"+c.Version {
				t.Errorf("go-cmp component %+v does not match go.mod", c)
			}
		}
	}
	if !found {
		t.Errorf("no go-cmp among %d components", len(bom.Components))
	}
}
