package web

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/turtles-ci/turtles/store"
)

// file serves a stored object: logs, result.json, artifacts. Live logs
// are fetched with Range by the log page, so offsets matter.
func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	// Errors too: every answer under /logs/ is sandboxed.
	w.Header().Set("Content-Security-Policy", fileCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if store.CheckKey(key) != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	// A file of a repository the viewer may not read is not there.
	if s.cfg.Auth != nil {
		if repo, ok := repoOfKey(key); !ok || !s.viewer(r).canRead(repo) {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
	}
	rc, info, err := s.cfg.Store.Get(r.Context(), key)
	if errors.Is(err, store.ErrNotExist) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer rc.Close()
	setFileHeaders(w.Header(), key, info.ContentType)
	if rs, ok := rc.(io.ReadSeeker); ok {
		http.ServeContent(w, r, "", info.Modified, rs)
		return
	}
	io.Copy(w, rc)
}

// fileCSP applies to every stored file: a task wrote it, and even if a
// browser renders it (a type it sniffs, a bug) it runs in a unique origin
// with no script and loads nothing, so it never acts on turtles' origin.
const fileCSP = "sandbox; default-src 'none'"

// setFileHeaders says how a stored file of contentType is served, beside
// the sandbox: plain text, JSON and raster images inline; anything that
// could be active (HTML, SVG, XML, PDF, script, unknown) as a download,
// and HTML as text besides.
func setFileHeaders(h http.Header, key, contentType string) {
	ct := contentType
	if ct == "" || strings.Contains(strings.ToLower(ct), "html") { // text/html, application/xhtml+xml
		ct = "text/plain; charset=utf-8"
	}
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-cache")
	if contentType != "" && !store.Inline(contentType) {
		d := mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(key)})
		if d == "" {
			d = "attachment"
		}
		h.Set("Content-Disposition", d)
	}
}
