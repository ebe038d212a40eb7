// Package registry runs an OCI image registry whose content lives in a
// directory and survives restarts: the registry of `turtles cluster up
// --registry`, which the host reaches on a port and the cluster's guests
// by name through QEMU's user-mode network (see guest.go).
//
// The registry is go-containerregistry's (pkg/registry), which keeps blobs
// in a BlobHandler (here its disk handler) but manifests in memory. This
// package keeps each manifest in a file as well, written before the
// client is told the push succeeded, and puts them back at start.
//
// cmd/turtles imports it; tests may.
package registry

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
)

// Config configures a Registry.
type Config struct {
	// Dir holds the content (blobs/ and manifests/); created if missing.
	// Everything pushed survives a restart on the same Dir.
	Dir string
	// Log receives the registry's own messages; nil discards them.
	Log *slog.Logger
	// Password, if set, is required of every request, with HTTP basic
	// authentication as User: a task's registry, on a bot's loopback
	// that other tasks share, is that task's alone.
	Password string
}

// User is the user name of a registry with a Password.
const User = "turtles"

// Registry is a running registry. Close stops it; its content stays.
type Registry struct {
	ln  net.Listener
	srv *http.Server
	// done is closed when Serve returns, with its error in err.
	done chan struct{}
	err  error
}

// Start serves a registry on a new TCP listener at addr, such as
// "127.0.0.1:0" (any free port; Addr says which).
func Start(addr string, cfg Config) (*Registry, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry: listen: %w", err)
	}
	r, err := Serve(ln, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return r, nil
}

// Serve serves a registry on ln, which it closes on Close.
func Serve(ln net.Listener, cfg Config) (*Registry, error) {
	h, err := Handler(cfg)
	if err != nil {
		return nil, err
	}
	r := &Registry{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}}
	go func() {
		r.err = r.srv.Serve(ln)
		close(r.done)
	}()
	return r, nil
}

// Addr is the address the registry listens on, HOST:PORT.
func (r *Registry) Addr() string { return r.ln.Addr().String() }

// Port is the TCP port the registry listens on.
func (r *Registry) Port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// Close stops the registry, letting requests in flight finish for up to
// 10 s. Closing it again does nothing.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	if werr := r.Wait(); err == nil {
		err = werr
	}
	return err
}

// Wait blocks until the registry stops serving and returns why: nil after
// Close, the listener's error otherwise.
func (r *Registry) Wait() error {
	<-r.done
	if errors.Is(r.err, http.ErrServerClosed) {
		return nil
	}
	return r.err
}

// Handler returns the registry's HTTP handler on cfg.Dir, with the
// manifests found there put back.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Dir == "" {
		return nil, errors.New("registry: no Dir for the content")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	blobs := filepath.Join(cfg.Dir, "blobs")
	for _, d := range []string{blobs, filepath.Join(cfg.Dir, "manifests")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	// Uploads cut short by a crash; the disk handler names them so.
	if left, _ := filepath.Glob(filepath.Join(blobs, "upload-*")); len(left) > 0 {
		for _, p := range left {
			os.Remove(p)
		}
	}
	inner := ggcr.New(
		ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(blobs)),
		ggcr.Logger(log.New(logWriter{cfg.Log}, "", 0)),
	)
	j := &journal{dir: filepath.Join(cfg.Dir, "manifests"), next: inner, log: cfg.Log}
	if err := j.replay(); err != nil {
		return nil, err
	}
	if cfg.Password == "" {
		return j, nil
	}
	want := []byte(User + ":" + cfg.Password)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user+":"+pass), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="turtles"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"this registry takes its task's credentials only"}]}`+"\n")
			return
		}
		j.ServeHTTP(w, r)
	}), nil
}

// BasicAuth is the Authorization header of a registry with password.
func BasicAuth(password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(User+":"+password))
}

// logWriter turns the registry's log.Logger lines into debug records.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimRight(string(p), "\n"), "part", "registry")
	return len(p), nil
}

// manifestRef splits /v2/REPO/manifests/REF as go-containerregistry's
// registry does; ok is false for any other path.
func manifestRef(path string) (repo, ref string, ok bool) {
	elems := strings.Split(path, "/")
	if len(elems) < 5 || elems[0] != "" || elems[1] != "v2" || elems[len(elems)-2] != "manifests" {
		return "", "", false
	}
	return strings.Join(elems[2:len(elems)-2], "/"), elems[len(elems)-1], true
}

// The distribution spec's grammar of repository names, tags and digests.
var (
	repoRe   = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRe = regexp.MustCompile(`^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
)

// validRef reports whether repo and ref are a repository name and a tag
// or digest as the distribution spec writes them: what the journal keeps
// and replays, so that a name that is odd once is not odd at replay.
func validRef(repo, ref string) bool {
	return len(repo) <= 255 && repoRe.MatchString(repo) && (tagRe.MatchString(ref) || len(ref) <= 255 && digestRe.MatchString(ref))
}

// maxManifest bounds a manifest body, as distribution's registry does.
const maxManifest = 4 << 20

// recorder holds a response until the journal has written what it
// acknowledges.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

func (r *recorder) copyTo(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	w.WriteHeader(r.status)
	w.Write(r.body.Bytes())
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("manifest larger than %d bytes", maxManifest)
	}
	return b, nil
}
