package cache

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Handler serves the cache's complete files, read-only, for peers and
// `turtles image serve`: GET and HEAD of /FILE with Range, ETag and
// Content-Length (http.ServeContent). Partial downloads and locks live in
// hidden directories and are never served; nor is anything but a plain
// file directly in the cache directory. Mount it under /images/ with
// http.StripPrefix, where Peers looks.
func (c *Cache) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		c.serve(sw, r)
		c.m.served.WithLabelValues(strconv.Itoa(sw.code)).Inc()
	})
}

func (c *Cache) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" || strings.Contains(name, "/") || !validServed(name) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(c.path(name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	// Names carry the content's hash and files never change in place, so
	// name, size and time make a strong validator.
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	if strings.HasSuffix(name, ".json") {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if r.Method == http.MethodGet {
		c.m.servedBytes.Add(float64(fi.Size()))
	}
	http.ServeContent(w, r, name, fi.ModTime().Truncate(time.Second), f)
}

// validServed: a manifest (ID.json) or a plain file name; never hidden.
func validServed(name string) bool {
	if id, ok := strings.CutSuffix(name, ".json"); ok {
		_, err := ParseID(id)
		return err == nil
	}
	return plainName(name)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps sendfile(2) for bodies: ServeContent copies through
// io.CopyN, which uses the writer's ReadFrom.
func (s *statusWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(s.ResponseWriter, r) }

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
