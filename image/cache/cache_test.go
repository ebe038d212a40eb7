package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestNewNamesWhatIsMissing: the cache decides no timeout itself; New
// refuses a Config with sources that lacks one, and says which. A cache
// without sources never fetches and needs none.
func TestNewNamesWhatIsMissing(t *testing.T) {
	mirror, err := NewHTTP("http://127.0.0.1:1/images/")
	if err != nil {
		t.Fatal(err)
	}
	complete := Config{Mirrors: []Source{mirror}, ProbeTimeout: 2 * time.Second, StallTimeout: 30 * time.Second}
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "complete", change: func(*Config) {}},
		{name: "no dir", change: func(c *Config) { c.Dir = "" }, wantErr: "no directory"},
		{name: "no probe timeout", change: func(c *Config) { c.ProbeTimeout = 0 }, wantErr: "ProbeTimeout is 0s"},
		{name: "no stall timeout", change: func(c *Config) { c.StallTimeout = 0 }, wantErr: "StallTimeout is 0s"},
		{name: "peers, no probe timeout", change: func(c *Config) { c.Mirrors, c.Peers, c.ProbeTimeout = nil, &Peers{Name: "images.example"}, 0 }, wantErr: "ProbeTimeout is 0s"},
		{name: "no sources, no timeouts", change: func(c *Config) { c.Mirrors, c.ProbeTimeout, c.StallTimeout = nil, 0, 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := complete
			cfg.Dir = t.TempDir()
			tt.change(&cfg)
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// One peer sends corrupted bytes, one dies mid-transfer, one is healthy:
// the pull ends with the right image and blames the corrupted one.
func TestPullFromPeers(t *testing.T) {
	seed, id := testImage(t, "debian-12", 4<<20)
	peers, ps := startPeers(t, seed,
		&peer{addr: "127.0.0.2", corrupt: true},
		&peer{addr: "127.0.0.3", dieAfter: 1<<20 + 12345, headDelay: 300 * time.Millisecond},
		&peer{addr: "127.0.0.4", headDelay: 600 * time.Millisecond},
		&peer{addr: "127.0.0.5", headDelay: 900 * time.Millisecond}, // never reached
	)
	peers.Resolver.(fakeResolver)["peers.test"] = append(peers.Resolver.(fakeResolver)["peers.test"], "127.0.0.6") // down
	var log bytes.Buffer
	c := newCache(t, t.TempDir(), &log)
	c.cfg.Peers = peers
	path, err := c.Ensure(ctx(t), id)
	if err != nil {
		t.Fatalf("Ensure: %v\nlog:\n%s", err, log.String())
	}
	if path != filepath.Join(c.Dir(), string(id)+".json") {
		t.Errorf("path %s", path)
	}
	checkImage(t, c, id)
	logs := log.String()
	if !strings.Contains(logs, "corrupted") || !strings.Contains(logs, `source=http://127.0.0.2:`) {
		t.Errorf("the corrupted source is not blamed in the log:\n%s", logs)
	}
	if strings.Count(logs, "sent corrupted data") != 1 {
		t.Errorf("want exactly one source blamed:\n%s", logs)
	}
	if got := ps[2].ranges; len(got) != 1 || got[0] != fmt.Sprintf("bytes=%d-", 1<<20+12345) {
		t.Errorf("healthy peer got ranges %q, want one resume from where 127.0.0.3 died\n%s", got, logs)
	}
	if ps[3].diskGets.Load() != 0 {
		t.Errorf("the fourth peer was asked for the disk")
	}
	// A second Ensure is a hit: no new downloads.
	before := ps[2].diskGets.Load()
	if _, err := c.Ensure(ctx(t), id); err != nil || ps[2].diskGets.Load() != before {
		t.Errorf("second Ensure: %v, downloads %d -> %d", err, before, ps[2].diskGets.Load())
	}
}

// Two bots (two Cache values, as two processes) pulling the same image
// into one directory download it once.
func TestConcurrentPullsDownloadOnce(t *testing.T) {
	seed, id := testImage(t, "img", 8<<20)
	peers, ps := startPeers(t, seed, &peer{addr: "127.0.0.2"})
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		c := newCache(t, dir, nil)
		c.cfg.Peers = peers
		wg.Go(func() { _, errs[i] = c.Ensure(ctx(t), id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkImage(t, newCache(t, dir, nil), id)
	if n := ps[0].diskGets.Load(); n != 1 {
		t.Errorf("disk downloaded %d times, want 1", n)
	}
	if n := ps[0].diskSent.Load(); n != 8<<20 {
		t.Errorf("sent %d disk bytes, want %d", n, 8<<20)
	}
}

// A pull cut short keeps its part; the next pull resumes it with Range.
func TestResume(t *testing.T) {
	seed, id := testImage(t, "img", 4<<20)
	dying, _ := startPeers(t, seed, &peer{addr: "127.0.0.2", dieAfter: 3 << 20})
	dir := t.TempDir()
	c := newCache(t, dir, nil)
	c.cfg.Peers = dying
	_, err := c.Ensure(ctx(t), id)
	wantFault(t, err, "image "+id.Short()+" could not be fetched")
	parts, _ := filepath.Glob(filepath.Join(c.tmpDir(), "*.part"))
	if len(parts) != 1 {
		t.Fatalf("parts %v, want one", parts)
	}
	if fi, _ := os.Stat(parts[0]); fi.Size() != 3<<20 {
		t.Fatalf("part has %d bytes, want %d", fi.Size(), 3<<20)
	}
	healthy, ps := startPeers(t, seed, &peer{addr: "127.0.0.3"})
	var log bytes.Buffer
	c = newCache(t, dir, &log)
	c.cfg.Peers = healthy
	if _, err := c.Ensure(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	checkImage(t, c, id)
	if got := ps[0].ranges; len(got) != 1 || got[0] != fmt.Sprintf("bytes=%d-", 3<<20) {
		t.Errorf("ranges %q, want a resume at %d", got, 3<<20)
	}
	if !strings.Contains(log.String(), "resuming") {
		t.Errorf("no resume in the log:\n%s", log.String())
	}
}

// A full disk is a clear infra error and leaves no partial file: on a
// small tmpfs where the test may mount one, and with writes failing with
// ENOSPC (as on hosts where it may not).
func TestDiskFull(t *testing.T) {
	seed, id := testImage(t, "img", 4<<20)
	peers, _ := startPeers(t, seed, &peer{addr: "127.0.0.2"})
	for _, mode := range []string{"tmpfs", "injected"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			c := newCache(t, dir, nil)
			c.cfg.Peers = peers
			if mode == "tmpfs" {
				if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
					t.Skipf("cannot mount tmpfs: %v", err)
				}
				t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
			} else {
				c.cfg.wrap = func(w io.Writer) io.Writer { return &fullWriter{w: w, room: 2 << 20} }
			}
			_, err := c.Ensure(ctx(t), id)
			if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Ensure on a full disk: %v, want ErrDiskFull, ENOSPC", err)
			}
			wantFault(t, err, "the bot's image cache has no room for image "+id.Short())
			if !strings.Contains(err.Error(), "turtles image prune") {
				t.Errorf("error does not say what to do: %v", err)
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".tmp", "*"))
			disk, _ := filepath.Glob(filepath.Join(dir, "*.qcow2"))
			if len(left)+len(disk) > 0 {
				t.Errorf("files left: %v %v", left, disk)
			}
			if c.Has(id) {
				t.Error("image present after a failed pull")
			}
		})
	}
}

type fullWriter struct {
	w    io.Writer
	room int
}

func (f *fullWriter) Write(p []byte) (int, error) {
	if len(p) > f.room {
		n, _ := f.w.Write(p[:f.room])
		f.room = 0
		return n, &os.PathError{Op: "write", Path: "part", Err: syscall.ENOSPC}
	}
	f.room -= len(p)
	return f.w.Write(p)
}

// Sources that lack the image, or nothing configured, are clear errors.
func TestNoSource(t *testing.T) {
	seed, _ := testImage(t, "img", 1<<20)
	peers, _ := startPeers(t, seed, &peer{addr: "127.0.0.2"})
	other, _ := ParseID("img-" + strings.Repeat("0", 64))
	c := newCache(t, t.TempDir(), nil)
	_, err := c.Ensure(ctx(t), other)
	if err == nil || !strings.Contains(err.Error(), "no image sources") {
		t.Errorf("no sources: %v", err)
	}
	wantFault(t, err, "this bot has nowhere to fetch image img-000000000000 from")
	c.cfg.Peers = peers
	_, err = c.Ensure(ctx(t), other)
	if err == nil || !strings.Contains(err.Error(), "does not have it") {
		t.Errorf("missing everywhere: %v", err)
	}
	wantFault(t, err, "no image mirror or peer has image img-000000000000")
}

// wantFault checks that err is an infra Fault with reason, the sentence
// a commit status shows.
func wantFault(t *testing.T, err error, reason string) {
	t.Helper()
	if f, ok := turtles.FaultOf(err); !ok || f.Class != turtles.Infra || f.Reason != reason {
		t.Errorf("error %v: Fault %+v, %v; want class infra, reason %q", err, f, ok, reason)
	}
}

// A mirror that is a store.Store (S3 in production; a directory here)
// serves a pushed image, and resumes by seeking.
func TestStoreMirror(t *testing.T) {
	seed, id := testImage(t, "img", 3<<20)
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Push(ctx(t), id, &StoreTarget{Store: st}); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, t.TempDir(), nil, &Store{Store: st, Name: "dir"})
	if _, err := c.Ensure(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	checkImage(t, c, id)
}

func TestImportIsStable(t *testing.T) {
	seed, id := testImage(t, "img", 1<<20)
	again, err := seed.Import(filepath.Join(seed.Dir(), id.ManifestFile()))
	if err != nil {
		t.Fatal(err)
	}
	if again != id {
		t.Errorf("import of a pinned manifest: %s, want %s", again, id)
	}
	entries, err := seed.List()
	if err != nil || len(entries) != 1 || entries[0].ID != id || len(entries[0].Files) != 3 {
		t.Errorf("List: %+v, %v", entries, err)
	}
}

func TestParseID(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		name string
		ok   bool
	}{
		{in: "debian-12-" + hex, name: "debian-12", ok: true},
		{in: "x-" + hex, name: "x", ok: true},
		{in: "debian-12", ok: false},
		{in: "-" + hex, ok: false},
		{in: "debian-12-" + strings.ToUpper(hex), ok: false},
		{in: "debian-12-" + hex[:63], ok: false},
		{in: "../x-" + hex, ok: false},
		{in: ".x-" + hex, ok: false},
	} {
		id, err := ParseID(tc.in)
		if (err == nil) != tc.ok || tc.ok && (id.Name() != tc.name || id.Hash() != hex) {
			t.Errorf("ParseID(%q) = %q (%q, %q), %v; want ok %v, name %q", tc.in, id, id.Name(), id.Hash(), err, tc.ok, tc.name)
		}
	}
}

// A source that stops sending without closing is given up on after the
// stall timeout; the next one resumes.
func TestStalledSource(t *testing.T) {
	seed, id := testImage(t, "img", 2<<20)
	release := make(chan struct{})
	h := http.StripPrefix("/images", seed.Handler())
	stalling := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".qcow2") {
			w.Header().Set("Content-Length", strconv.Itoa(2<<20))
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			<-release
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(stalling.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets the handler end
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			time.Sleep(300 * time.Millisecond) // probed after the stalling one
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(healthy.Close)
	var log bytes.Buffer
	s1, _ := NewHTTP(stalling.URL + "/images/")
	s2, _ := NewHTTP(healthy.URL + "/images/")
	c := newCache(t, t.TempDir(), &log, s1, s2)
	c.cfg.StallTimeout = 300 * time.Millisecond
	if _, err := c.Ensure(ctx(t), id); err != nil {
		t.Fatalf("Ensure: %v\n%s", err, log.String())
	}
	checkImage(t, c, id)
	if !strings.Contains(log.String(), "source stalled") {
		t.Errorf("no stall in the log:\n%s", log.String())
	}
}
