package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image"
)

// liar is a source that serves a cache's files, but for the disk sends
// what its behaviour says.
type liar struct {
	seed *Cache
	// how the disk is sent: "endless" (the right bytes, then junk without
	// end, chunked), "junk" (junk without end), "says more" (a
	// Content-Length one byte more than the file).
	how string
}

func (l *liar) handler() http.Handler {
	h := http.StripPrefix("/images", l.seed.Handler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ".qcow2") {
			h.ServeHTTP(w, r)
			return
		}
		disk, err := os.ReadFile(filepath.Join(l.seed.Dir(), filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		junk := bytes.Repeat([]byte{0x5a}, 64<<10)
		switch l.how {
		case "says more":
			w.Header().Set("Content-Length", strconv.Itoa(len(disk)+1))
			w.Write(disk)
			w.Write([]byte{0})
			return
		case "endless":
			w.Write(disk)
		}
		for r.Context().Err() == nil {
			if _, err := w.Write(junk); err != nil {
				return
			}
		}
	})
}

// TestFetchStopsAtRecordedSize: a peer that sends more than the manifest
// records, or says it will, fails the fetch with an error that names it;
// nothing past the size is written, and no partial file is kept from it.
func TestFetchStopsAtRecordedSize(t *testing.T) {
	tests := []struct {
		name    string
		how     string
		wantErr string
	}{
		{name: "right bytes then endless junk", how: "endless", wantErr: "sent more than the 1048576 bytes its manifest records"},
		{name: "endless junk", how: "junk", wantErr: "sent more than the 1048576 bytes its manifest records"},
		{name: "Content-Length above the size", how: "says more", wantErr: "has 1048577 bytes; its manifest records 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed, id := testImage(t, "img", 1<<20)
			l := &liar{seed: seed, how: tt.how}
			srv := httptest.NewServer(l.handler())
			defer srv.Close()
			src, err := NewHTTP(srv.URL + "/images/")
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			c := newCache(t, t.TempDir(), &log, src)
			var written int64 // to the disk's part, at most
			c.cfg.wrap = func(w io.Writer) io.Writer { return &countWriter{w: w, n: &written} }
			_, err = c.Ensure(context.Background(), id)
			if err == nil {
				t.Fatal("Ensure succeeded from a source that sent more than the recorded size")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("Ensure error = %v\nwant it to say %q and name the source %s", err, tt.wantErr, srv.URL)
			}
			if !strings.Contains(log.String(), "image source sent corrupted data") {
				t.Errorf("the source was not blamed in the log:\n%s", log.String())
			}
			_, files, _ := seed.lookup(id)
			disk := files[0]
			if _, err := os.Stat(c.path(disk.Name)); err == nil {
				t.Errorf("the disk %s is in the cache", disk.Name)
			}
			if written > disk.Size {
				t.Errorf("%d bytes written to the part of a %d-byte disk", written, disk.Size)
			}
			if fi, err := os.Stat(filepath.Join(c.tmpDir(), disk.Name+".part")); err == nil && fi.Size() > 0 {
				t.Errorf("a %d-byte part of the liar's disk was kept", fi.Size())
			}
		})
	}
}

// TestLiarThenHonestMirror: the liar is skipped and the image comes from
// the next source.
func TestLiarThenHonestMirror(t *testing.T) {
	seed, id := testImage(t, "img", 1<<20)
	bad := httptest.NewServer((&liar{seed: seed, how: "endless"}).handler())
	defer bad.Close()
	good := httptest.NewServer(http.StripPrefix("/images", seed.Handler()))
	defer good.Close()
	badSrc, _ := NewHTTP(bad.URL + "/images/")
	goodSrc, _ := NewHTTP(good.URL + "/images/")
	c := newCache(t, t.TempDir(), nil, badSrc, goodSrc)
	if err := c.init(); err != nil {
		t.Fatal(err)
	}
	// The probe orders by speed; put the liar first whatever it measured.
	p := &pull{c: c, id: id, sources: []Source{badSrc, goodSrc}, bad: map[Source]bool{}}
	_, files, err := p.manifest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := p.file(context.Background(), f); err != nil {
			t.Fatalf("file %s: %v", f.Name, err)
		}
	}
	if !p.bad[badSrc] {
		t.Error("the liar was not blamed")
	}
}

// TestManifestSizeLimits: a fetch refuses a manifest without sizes (an
// old pin) and one that claims more than MaxImageSize, before any file is
// asked for; the cache itself still uses an old pin it holds.
func TestManifestSizeLimits(t *testing.T) {
	seed, id := testImage(t, "img", 1<<20)
	_, files, _ := seed.lookup(id)
	var total int64
	for _, f := range files {
		total += f.Size
	}

	// An old pin: the same manifest without sizes, in the seed cache.
	b, err := os.ReadFile(seed.path(id.ManifestFile()))
	if err != nil {
		t.Fatal(err)
	}
	var m image.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m.Size, m.KernelSize, m.InitrdSize = 0, 0, 0
	old, _ := json.MarshalIndent(&m, "", "  ")
	sum := sha256.Sum256(old)
	oldID := ID("img-" + hex.EncodeToString(sum[:]))
	if err := os.WriteFile(seed.path(oldID.ManifestFile()), old, 0o444); err != nil {
		t.Fatal(err)
	}
	if !seed.Has(oldID) {
		t.Errorf("the cache does not use the old pin %s it holds", oldID)
	}

	srv := httptest.NewServer(http.StripPrefix("/images", seed.Handler()))
	defer srv.Close()
	src, _ := NewHTTP(srv.URL + "/images/")
	tests := []struct {
		name   string
		id     ID
		max    int64
		want   func(error) bool
		reason string // the Fault's, for people
	}{
		{name: "old pin without sizes", id: oldID, want: func(err error) bool { return errors.Is(err, ErrNoSizes) },
			reason: "image " + oldID.Short() + " was pinned by an older turtles; pin it again with turtles image pin"},
		{name: "more than the limit", id: id, max: total - 1, want: func(err error) bool {
			var tl *TooLargeError
			return errors.As(err, &tl) && tl.Total == total
		}, reason: "image " + id.Short() + " is larger than this bot fetches"},
		{name: "at the limit", id: id, max: total, want: func(err error) bool { return err == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{Dir: t.TempDir(), Mirrors: []Source{src}, MaxImageSize: tt.max, ProbeTimeout: 2 * time.Second, StallTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Ensure(context.Background(), tt.id)
			if !tt.want(err) {
				t.Errorf("Ensure = %v", err)
			}
			if tt.reason != "" {
				wantFault(t, err, tt.reason)
			}
		})
	}
	if err := seed.Push(context.Background(), oldID, &HTTPTarget{}); !errors.Is(err, ErrNoSizes) {
		t.Errorf("Push of an old pin = %v, want ErrNoSizes", err)
	}
}

// countWriter counts the bytes written through it into *n; one download
// at a time uses it.
type countWriter struct {
	w io.Writer
	n *int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	*c.n += int64(n)
	return n, err
}
