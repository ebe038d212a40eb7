// Package web serves turtles over HTTP: the webhook endpoints, the JSON
// API, the log pages people follow from commit statuses, the raw files in
// the store, and /metrics. It reads; the only writes go through the hook
// handlers it is given.
//
// cmd/turtles wires it; nothing else imports it.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web/logpage"
)

// History is the part of the state database (state.DB) the pages and
// the API read: with PostgreSQL, every replica shows the same.
type History interface {
	List(ctx context.Context, f state.Filter) ([]state.Task, error)
	Get(ctx context.Context, id string) (state.Task, error)
	Tests(ctx context.Context, f state.TestFilter) ([]state.TestStats, error)
	KnownIssues(ctx context.Context, f state.IssueFilter) ([]state.IssueStats, error)
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

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"class": func(o *turtles.Outcome) string {
		if o == nil {
			return ""
		}
		return string(o.Class)
	},
	"short": func(s string) string { return s[:min(len(s), 12)] },
	// verdict is the triage of an outcome, "" where its class says all.
	"verdict": func(o turtles.Outcome) string { return string(turtles.VerdictOf(o)) },
	// The log viewer of web/logpage, shared with the static page.
	"viewer": func() template.JS { return template.JS(logpage.Script) },
}).ParseFS(templateFS, "templates/*.html"))

// New returns the server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	for name, h := range cfg.Hooks {
		s.mux.Handle("POST /hook/"+name, h)
	}
	s.mux.HandleFunc("GET /api/v1/tasks", s.listTasks)
	s.mux.HandleFunc("GET /api/v1/tasks/{id}", s.getTask)
	s.mux.HandleFunc("GET /api/v1/deadletters", s.deadLetters)
	s.mux.HandleFunc("GET /api/v1/tests", s.listTests)
	s.mux.HandleFunc("GET /api/v1/known-issues", s.listKnownIssues)
	s.mux.HandleFunc("GET /tasks/{id}", s.taskPage)
	s.mux.HandleFunc("GET /tasks/{id}/{attempt}", s.taskPage)
	s.mux.HandleFunc("GET /logs/{key...}", s.file)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("GET /{$}", s.index)
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

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := state.Filter{State: state.TaskState(q.Get("state")), Repo: q.Get("repo"), SHA: q.Get("sha")}
	switch f.State {
	case "", state.Queued, state.Running, state.Retrying, state.Finished:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown state %q: want queued, running, retrying or finished", f.State))
		return
	}
	limit, err := queryLimit(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Limit = limit
	tasks, err := s.cfg.History.List(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.cfg.History.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, state.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such task")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Queue == nil {
		writeError(w, http.StatusNotFound, "this process has no queue")
		return
	}
	dl, err := s.cfg.Queue.DeadLetters(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if dl == nil {
		dl = []queue.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": dl})
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	tasks, err := s.cfg.History.List(r.Context(), state.Filter{Limit: 200})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.render(w, "index.html", map[string]any{"Tasks": tasks})
}

type taskView struct {
	Task    state.Task
	Attempt int
	Live    bool
	LogKey  string
	Prefix  string // the attempt's files, for the viewer
	Log     string
	// LogSize is the raw byte length behind Log, where a live page resumes.
	LogSize int
	Files   []store.Info
	Result  *turtles.Result
}

// maxInlineLog bounds how much log the page embeds; the rest is a link.
const maxInlineLog = 4 << 20

func (s *Server) taskPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := s.cfg.History.Get(ctx, r.PathValue("id"))
	if errors.Is(err, state.ErrNotFound) {
		http.Error(w, "No such task. It may not have been picked up yet: try again in a moment.", http.StatusNotFound)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	v := taskView{Task: t, Attempt: len(t.Attempts)}
	if len(t.Attempts) > 0 {
		v.Attempt = t.Attempts[len(t.Attempts)-1].Number
	}
	if a := r.PathValue("attempt"); a != "" {
		if v.Attempt, err = strconv.Atoi(a); err != nil || v.Attempt < 1 {
			http.Error(w, "bad attempt number", http.StatusBadRequest)
			return
		}
	}
	for _, a := range t.Attempts {
		if a.Number == v.Attempt {
			v.Live = a.State == state.Running
		}
	}
	if v.Attempt > 0 {
		prefix := store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: t.Repo}, SHA: t.SHA, Context: t.Context, Attempt: v.Attempt})
		v.LogKey = prefix + store.LogName
		v.Prefix = prefix
		v.Log, v.LogSize = s.readLog(ctx, v.LogKey)
		v.Files, _ = s.cfg.Store.List(ctx, prefix)
		v.Result = s.readResult(ctx, prefix+store.ResultName)
	}
	s.render(w, "task.html", v)
}

// readLog returns the start of a log without terminal escapes, and how
// many raw bytes that was.
func (s *Server) readLog(ctx context.Context, key string) (string, int) {
	rc, _, err := s.cfg.Store.Get(ctx, key)
	if err != nil {
		return "", 0
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, maxInlineLog))
	return stripANSI(string(b)), len(b)
}

func (s *Server) readResult(ctx context.Context, key string) *turtles.Result {
	rc, _, err := s.cfg.Store.Get(ctx, key)
	if err != nil {
		return nil
	}
	defer rc.Close()
	var res turtles.Result
	if json.NewDecoder(rc).Decode(&res) != nil {
		return nil
	}
	return &res
}

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

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		s.cfg.Log.Error("render page", "page", name, "err", err)
	}
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Log.Error("request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; see the server log")
}

// queryLimit reads the optional ?limit= of a list request; 0 means the
// lister's default.
func queryLimit(q url.Values) (int, error) {
	l := q.Get("limit")
	if l == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 {
		return 0, errors.New("limit must be a positive number")
	}
	return n, nil
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

// stripANSI drops terminal escape sequences so that coloured test output
// reads cleanly in the page (the raw log keeps them).
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
		}
	}
	return b.String()
}
