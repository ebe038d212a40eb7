package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/syncio"
)

// testImage builds an image of diskSize random bytes (plus a small kernel
// and initrd), imports it into a fresh cache and returns that cache, which
// peers serve from, and the image's ID.
func testImage(t *testing.T, name string, diskSize int) (*Cache, ID) {
	t.Helper()
	src := t.TempDir()
	write := func(n string, size int) {
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".qcow2", diskSize)
	write(name+".vmlinuz", 64<<10)
	write(name+".initrd", 128<<10)
	m := &image.Manifest{Name: name, Disk: name + ".qcow2", Kernel: name + ".vmlinuz", Initrd: name + ".initrd", Append: "console=ttyS0"}
	if err := image.Write(filepath.Join(src, name+".json"), m); err != nil {
		t.Fatal(err)
	}
	seed := newCache(t, t.TempDir(), nil)
	id, err := seed.Import(filepath.Join(src, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return seed, id
}

// newCache returns a cache in dir logging into log (may be nil).
func newCache(t *testing.T, dir string, log *bytes.Buffer, sources ...Source) *Cache {
	t.Helper()
	var w io.Writer = io.Discard
	if log != nil {
		w = syncio.NewWriter(log)
	}
	c, err := New(Config{
		Dir: dir, Mirrors: sources, ProbeTimeout: 2 * time.Second, StallTimeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peer is a test image server with a behaviour.
type peer struct {
	addr string
	// headDelay orders the latency probe.
	headDelay time.Duration
	// corrupt flips a byte in the middle of every disk body.
	corrupt bool
	// dieAfter cuts every disk body after this many bytes (0: never).
	dieAfter int64
	diskGets atomic.Int64 // GETs of a disk
	diskSent atomic.Int64 // body bytes of disks sent
	ranges   []string
	mu       sync.Mutex
}

func (p *peer) handler(c *Cache) http.Handler {
	h := http.StripPrefix("/images", c.Handler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			time.Sleep(p.headDelay)
		}
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ".qcow2") {
			h.ServeHTTP(w, r)
			return
		}
		p.diskGets.Add(1)
		p.mu.Lock()
		p.ranges = append(p.ranges, r.Header.Get("Range"))
		p.mu.Unlock()
		cw := &peerWriter{ResponseWriter: w, p: p}
		h.ServeHTTP(cw, r)
	})
}

type peerWriter struct {
	http.ResponseWriter
	p    *peer
	sent int64
}

func (w *peerWriter) Write(b []byte) (int, error) {
	if w.p.dieAfter > 0 && w.sent+int64(len(b)) > w.p.dieAfter {
		n := w.p.dieAfter - w.sent
		w.ResponseWriter.Write(b[:n])
		w.p.diskSent.Add(n)
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cuts the connection
	}
	if w.p.corrupt && w.sent <= 1<<20 && w.sent+int64(len(b)) > 1<<20 {
		b = bytes.Clone(b)
		b[1<<20-w.sent] ^= 0xff
	}
	n, err := w.ResponseWriter.Write(b)
	w.sent += int64(n)
	w.p.diskSent.Add(int64(n))
	return n, err
}

// startPeers serves c on the given loopback addresses, all on one port,
// and returns a resolver that maps "peers.test" to them.
func startPeers(t *testing.T, c *Cache, peers ...*peer) (*Peers, []*peer) {
	t.Helper()
	var port string
	for attempt := 0; port == ""; attempt++ {
		if attempt > 10 {
			t.Fatal("no common free port on the loopback addresses")
		}
		var ls []net.Listener
		p0 := "0"
		for i, p := range peers {
			l, err := net.Listen("tcp", net.JoinHostPort(p.addr, p0))
			if err != nil {
				break
			}
			ls = append(ls, l)
			if i == 0 {
				_, p0, _ = net.SplitHostPort(l.Addr().String())
			}
		}
		if len(ls) < len(peers) {
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		for i, l := range ls {
			srv := &http.Server{Handler: peers[i].handler(c), ErrorLog: log.New(io.Discard, "", 0)}
			go srv.Serve(l)
			t.Cleanup(func() { srv.Close() })
		}
		port = p0
	}
	n, _ := strconv.Atoi(port)
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.addr)
	}
	return &Peers{Name: "peers.test", Port: n, Resolver: fakeResolver{"peers.test": addrs}}, peers
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// checkImage fails unless the image is complete in c with the right bytes.
func checkImage(t *testing.T, c *Cache, id ID) {
	t.Helper()
	_, files, ok := c.lookup(id)
	if !ok {
		t.Fatalf("image %s is not complete in %s", id, c.Dir())
	}
	for _, f := range files {
		sum, err := image.HashFile(c.path(f.Name))
		if err != nil || sum != f.SHA256 {
			t.Errorf("%s: sha256 %s, %v; want %s", f.Name, sum, err, f.SHA256)
		}
	}
	if parts, _ := filepath.Glob(filepath.Join(c.tmpDir(), "*")); len(parts) > 0 {
		t.Errorf("temporary files left: %v", parts)
	}
}
