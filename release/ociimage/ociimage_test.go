package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var epoch = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// tree makes a small root file system: a regular file, a directory, a
// symbolic link, a hard link and a setuid program, with times after
// epoch (which the layer must clamp).
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"etc/os-release": "ID=debian\n", "usr/bin/tool": "#!/bin/sh\necho tool\n", "var/lib/empty/.keep": ""}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Chmod(filepath.Join(root, "usr/bin/tool"), 0o755|fs.ModeSetuid))
	must(t, os.Symlink("tool", filepath.Join(root, "usr/bin/link")))
	must(t, os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/hard")))
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// layer writes tree's layer into a file and returns its path.
func layer(t *testing.T, root string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	f, err := os.Create(path)
	must(t, err)
	must(t, WriteTarGz(f, root, epoch))
	must(t, f.Close())
	return path
}

// TestWriteTarGz: the layer lists the tree in order with clamped times,
// numeric owners, the link types and mode bits kept, and two writes of the
// same tree are the same bytes.
func TestWriteTarGz(t *testing.T) {
	root := tree(t)
	a, b := layer(t, root), layer(t, root)
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("two layers of the same tree differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(ab))
	must(t, err)
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		names = append(names, h.Name)
		if h.ModTime.After(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: time %s, owner names %q %q: want clamped to %s, numeric owners", h.Name, h.ModTime, h.Uname, h.Gname, epoch)
		}
		switch h.Name {
		case "usr/bin/hard": // the first of the two names holds the data
			if h.Typeflag != tar.TypeReg || h.Mode&04000 == 0 {
				t.Errorf("usr/bin/hard: type %c mode %o, want the setuid file", h.Typeflag, h.Mode)
			}
		case "usr/bin/link":
			if h.Typeflag != tar.TypeSymlink || h.Linkname != "tool" {
				t.Errorf("usr/bin/link: type %c link %q, want a symlink to tool", h.Typeflag, h.Linkname)
			}
		case "usr/bin/tool":
			if h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/hard" {
				t.Errorf("usr/bin/tool: type %c link %q, want a hard link to usr/bin/hard", h.Typeflag, h.Linkname)
			}
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not in order: %q", names)
	}
	want := []string{"etc/", "etc/os-release", "usr/", "usr/bin/", "usr/bin/hard", "usr/bin/link", "usr/bin/tool", "var/", "var/lib/", "var/lib/empty/", "var/lib/empty/.keep"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

// fakeBinary is a stand-in for turtles: these tests check the image's
// structure; TestImageRuns runs the real binary inside the real image.
func fakeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "turtles")
	must(t, os.WriteFile(p, []byte("#!/bin/sh\necho turtles\n"), 0o755))
	return p
}

// TestBuild: the image is the base layer and the binary's layer, runs the
// binary as uid 10001, is labelled, and its layout is the same bytes when
// written twice; unpacked, it holds both layers' files.
func TestBuild(t *testing.T) {
	o := Options{Rootfs: layer(t, tree(t)), Binary: fakeBinary(t), Arch: "amd64", Created: epoch, Version: "v1.2.3", Revision: "abc"}
	img, err := Build(o)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	if cf.Config.User != "10001:10001" || !slices.Equal(cf.Config.Entrypoint, []string{Binary}) || cf.Architecture != "amd64" ||
		!cf.Created.Time.Equal(epoch) || cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("config: user %q entrypoint %q arch %q created %s labels %v", cf.Config.User, cf.Config.Entrypoint, cf.Architecture, cf.Created, cf.Config.Labels)
	}
	layers, err := img.Layers()
	must(t, err)
	if len(layers) != 2 || len(cf.History) != 2 {
		t.Fatalf("%d layers, %d history entries: want the base and the binary", len(layers), len(cf.History))
	}

	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	must(t, WriteLayout(a, img, "turtles:v1.2.3"))
	again, err := Build(o)
	must(t, err)
	must(t, WriteLayout(b, again, "turtles:v1.2.3"))
	if diff := cmp.Diff(readTree(t, a), readTree(t, b)); diff != "" {
		t.Errorf("two builds of the same inputs differ (-first +second):\n%s", diff)
	}
	var ta, tb bytes.Buffer
	must(t, WriteLayoutTar(&ta, a, epoch))
	must(t, WriteLayoutTar(&tb, b, epoch))
	if !bytes.Equal(ta.Bytes(), tb.Bytes()) {
		t.Error("the OCI archives of two builds differ")
	}

	read, err := ReadLayout(a)
	must(t, err)
	d1, _ := img.Digest()
	d2, _ := read.Digest()
	if d1 != d2 {
		t.Errorf("layout holds %s, built %s", d2, d1)
	}
	dst := t.TempDir()
	must(t, Unpack(context.Background(), read, dst))
	for name, want := range map[string]string{"etc/os-release": "ID=debian\n", "usr/local/bin/turtles": "#!/bin/sh\necho turtles\n", "usr/bin/tool": "#!/bin/sh\necho tool\n"} {
		if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(got) != want {
			t.Errorf("unpacked %s: %q, %v; want %q", name, got, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(dst, "usr/local/bin/turtles")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("unpacked binary: %v %v, want mode 0755", st, err)
	}
}

// readTree returns every file under dir, path to content.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return err
	}))
	return out
}

// TestBuildNamesWhatIsMissing: Build decides nothing itself.
func TestBuildNamesWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no rootfs", Options{Binary: "b", Arch: "amd64", Created: epoch}, "Rootfs and Binary"},
		{"no arch", Options{Rootfs: "r", Binary: "b", Created: epoch}, "no Arch"},
		{"no time", Options{Rootfs: "r", Binary: "b", Arch: "amd64"}, "no Created"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Build(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestUnpackRefusesEscapes: a layer cannot write outside the directory it
// is unpacked into.
func TestUnpackRefusesEscapes(t *testing.T) {
	for _, h := range []tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg},
		{Name: "ok/../../evil", Typeflag: tar.TypeReg},
		{Name: "link", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		must(t, tw.WriteHeader(&h))
		must(t, tw.Close())
		dst := t.TempDir()
		if err := extract(context.Background(), &buf, filepath.Join(dst, "root")); err == nil {
			t.Errorf("%s (%c %s) unpacked", h.Name, h.Typeflag, h.Linkname)
		}
	}
}

// TestPush pushes the image to a registry (go-containerregistry's, in
// memory, over HTTP) and pulls it back by the digest Push returned.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := Build(Options{Rootfs: layer(t, tree(t)), Binary: fakeBinary(t), Arch: "amd64", Created: epoch})
	must(t, err)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/ci/turtles:v1.2.3"
	pushed, err := Push(context.Background(), img, ref)
	must(t, err)
	want, _ := img.Digest()
	if !strings.HasSuffix(pushed, "@"+want.String()) {
		t.Errorf("Push returned %s, want a reference to %s", pushed, want)
	}
	for _, r := range []string{ref, pushed} {
		pr, err := name.ParseReference(r)
		must(t, err)
		got, err := remote.Image(pr)
		must(t, err)
		if d, _ := got.Digest(); d != want {
			t.Errorf("pulled %s: digest %s, want %s", r, d, want)
		}
	}
}
