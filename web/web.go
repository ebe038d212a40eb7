// Package web serves turtles over HTTP: the dashboard (what runs now, a
// commit's contexts, the history and its search, a test's history, the
// flakiest tests, an attempt's page with its live log), the JSON API
// beside each page, the webhook endpoints, the raw files in the store and
// /metrics. It reads; the only writes go through the hook handlers and
// the Auth it is given.
//
// Pages are rendered on the server (html/template) and read without
// JavaScript; a small script (live.js) refreshes their live parts.
//
// cmd/turtles wires it; nothing else imports it.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// History is the part of the state database (state.DB) the pages and
// the API read: with PostgreSQL, every replica shows the same.
type History interface {
	List(ctx context.Context, f state.Filter) ([]state.Task, error)
	Get(ctx context.Context, id string) (state.Task, error)
	Tests(ctx context.Context, f state.TestFilter) ([]state.TestStats, error)
	KnownIssues(ctx context.Context, f state.IssueFilter) ([]state.IssueStats, error)
	TestRuns(ctx context.Context, f state.TestFilter) ([]state.TestRun, error)
}

// Config is what the server shows and where it finds it.
type Config struct {
	History History
	Store   store.Store
	// Queue, if set, answers /api/v1/deadletters.
	Queue queue.Queue
	// Hooks maps a path under /hook/ ("github") to its receiver.
	Hooks    map[string]http.Handler
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
	// Now is the clock of the pages' "waited" and "ago"; nil is time.Now.
	Now func() time.Time
	// BotTimeout is how long after its last heartbeat a bot is shown as
	// no longer alive; 0 is a minute.
	BotTimeout time.Duration
	// Bots lists the bots that heartbeat (the "Now" page). state.DB satisfies it.
	Bots interface {
		Bots(ctx context.Context) ([]state.Bot, error)
	}
	// Actions lists what people did to a task (shown on the task and commit pages). state.DB satisfies it.
	Actions interface {
		Actions(ctx context.Context, task string) ([]state.Action, error)
	}
	// Auth, when set, is login and actions: web mounts it at /login, /logout, /oauth/ and /actions/,
	// asks it who is looking, and asks it before showing any repository's tasks or logs.
	Auth Auth
	// PublicURL is where people reach this server, for the commands a
	// page shows (turtles debug); "" is the request's own host.
	PublicURL string
}

// Auth is who looks at a page and what they may see; package login implements it.
type Auth interface {
	http.Handler // serves GET /login, POST /logout, GET /oauth/{forge}/callback, POST /actions/{kind}
	// Who returns the user signed in on r ("" for nobody) and the CSRF token that forms on the
	// page must carry in the field "csrf".
	Who(r *http.Request) (user, csrf string)
	// CanRead reports whether r may see repo's tasks and logs: true for everyone unless the
	// server runs with --private, then only for a user the forge lets read repo.
	CanRead(r *http.Request, repo string) bool
}

// Server is the HTTP handler.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BotTimeout <= 0 {
		cfg.BotTimeout = time.Minute
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	for name, h := range cfg.Hooks {
		s.mux.Handle("POST /hook/"+name, h)
	}
	// Pages, each with its JSON beside it (docs/dashboard.md).
	s.mux.HandleFunc("GET /{$}", s.nowPage)
	s.mux.HandleFunc("GET /now", s.nowPage)
	s.mux.HandleFunc("GET /api/v1/now", s.nowAPI)
	s.mux.HandleFunc("GET /commits/{path...}", s.commitPage)
	s.mux.HandleFunc("GET /api/v1/commits/{path...}", s.commitAPI)
	s.mux.HandleFunc("GET /history", s.historyPage)
	s.mux.HandleFunc("GET /api/v1/tasks", s.listTasks)
	s.mux.HandleFunc("GET /tests", s.flakyPage)
	s.mux.HandleFunc("GET /api/v1/tests", s.listTests)
	s.mux.HandleFunc("GET /api/v1/known-issues", s.listKnownIssues)
	s.mux.HandleFunc("GET /tests/history", s.testPage)
	s.mux.HandleFunc("GET /api/v1/tests/history", s.testAPI)
	s.mux.HandleFunc("GET /tasks/{id}", s.taskPage)
	s.mux.HandleFunc("GET /tasks/{id}/{attempt}", s.taskPage)
	s.mux.HandleFunc("GET /api/v1/tasks/{id}", s.getTask)
	s.mux.HandleFunc("GET /api/v1/deadletters", s.deadLetters)
	s.mux.HandleFunc("GET /api/v1/bots", s.botsAPI)
	s.mux.HandleFunc("GET /logs/{key...}", s.file)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	if cfg.Auth != nil {
		for _, p := range []string{"/login", "/logout", "/oauth/", "/actions/"} {
			s.mux.Handle(p, cfg.Auth)
		}
	}
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// LogURL is the page of one attempt of t under base (the public URL of
// the server). Bots put it in events; the reporter links statuses to it.
func LogURL(base string, t turtles.Task) string {
	return fmt.Sprintf("%s/tasks/%s/%d", strings.TrimRight(base, "/"), t.ID(), t.Attempt)
}

// render writes the page name of data, with an ETag of its bytes so
// that a live page's poll that finds nothing new costs a 304.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		s.cfg.Log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// Action buttons are forms: no other site may frame them.
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	sum := sha256.Sum256(b.Bytes())
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h.Set("ETag", etag)
	if code == http.StatusOK && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Log.Error("request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; see the server log")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
