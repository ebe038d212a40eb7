// Package gitmirror is the git mirror inside a deployment: bots clone from
// it, and it alone fetches from the forge, so that bots (which run
// untrusted code) need no route to the forge and no forge credentials.
//
// The Server serves git's smart HTTP protocol read-only (git http-backend
// under net/http/cgi) from bare mirrors it keeps in a directory, fetching
// a repository from the forge when a bot asks for it and its copy is older
// than Config.Interval or lacks the commit the bot's task names. It is not
// a way to read other repositories, for anyone who can reach it:
//
//   - every request must carry the bearer secret (Config.Token) that bots
//     are given as a file their tasks cannot read;
//   - every request names the task it serves (TaskHeader, the task's key)
//     and is refused unless that task is live in the state database (its
//     key reserved: from before it is queued until its final event), so
//     that only repositories turtles is testing right now are served.
//     Reservations, not the history of tasks or a list the hook keeps:
//     every publish makes one before the task reaches the queue (so a bot
//     never asks before it exists, as it could before the history records
//     the task's queued event), they end with the task, and they are
//     already shared by every process through the state database;
//   - repository names are checked strictly (CheckName) before they reach
//     a path or a git command line.
//
// Client is the bot's side: the URL and headers to fetch a task's commit
// through the mirror. Only cmd/turtles (the git-mirror command and the
// bot's wiring) and package bot import this package.
package gitmirror

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles/git"
)

// TaskHeader names the task a request serves: its key
// (turtles.Task.Key).
const TaskHeader = "Turtles-Task"

// Tasks says which tasks are live: the part of state.DB the mirror needs
// (state.DB.Live), so that this package does not import package state.
type Tasks interface {
	// Live reports whether a task of key is queued or running. An error
	// is the database's: the request is answered 503.
	Live(ctx context.Context, key string) (bool, error)
}

// Config configures a Server. Every field is required unless it says
// otherwise; cmd/turtles decides the defaults.
type Config struct {
	// Dir holds the bare mirrors, DIR/OWNER/NAME.git. It belongs to this
	// server alone.
	Dir string
	// Token is the bearer secret bots present.
	Token string
	// Tasks says whether the task a request names is live.
	Tasks Tasks
	// Upstream is the forge's clone URL of a repository.
	Upstream func(name string) string
	// Auth, if set, returns the Authorization header value ("Basic ...",
	// "Bearer ...") of a fetch of name from the forge; nil fetches
	// without credentials. Its error stops the fetch.
	Auth func(ctx context.Context, name string) (string, error)
	// Interval is how long a fetched copy is fresh: a request for an
	// older one fetches first.
	Interval time.Duration
	// FetchTimeout bounds one fetch from the forge.
	FetchTimeout time.Duration
	// MaxSize bounds a mirror's size on disk, in bytes: a fetch that
	// grows it past this is stopped (within a poll of sizePoll), and a
	// mirror already past it is not fetched again.
	MaxSize int64
	// MaxRequest bounds the body of one upload-pack request, in bytes.
	MaxRequest int64
	// Now is the clock of Interval; default time.Now.
	Now func() time.Time
	// Log receives what the mirror does and why it refused; nil discards.
	Log *slog.Logger
}

// Server is a git mirror; it implements http.Handler.
type Server struct {
	cfg   Config
	token [32]byte // sha256 of cfg.Token: compared in constant time
	git   string   // the git binary

	mu    sync.Mutex
	repos map[string]*mirror
}

// New returns a Server for cfg, or an error naming what is missing.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.Dir == "" {
		errs = append(errs, errors.New("gitmirror: no directory"))
	}
	if len(cfg.Token) < 16 {
		errs = append(errs, errors.New("gitmirror: the token must be at least 16 bytes"))
	}
	if cfg.Tasks == nil || cfg.Upstream == nil {
		errs = append(errs, errors.New("gitmirror: Tasks and Upstream are required"))
	}
	if cfg.Interval < 0 || cfg.FetchTimeout <= 0 || cfg.MaxSize <= 0 || cfg.MaxRequest <= 0 {
		errs = append(errs, errors.New("gitmirror: Interval must not be negative, FetchTimeout, MaxSize and MaxRequest must be positive"))
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		errs = append(errs, fmt.Errorf("gitmirror: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("gitmirror: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, token: sha256.Sum256([]byte(cfg.Token)), git: gitPath, repos: map[string]*mirror{}}, nil
}

// ServeHTTP serves /healthz and the two read endpoints of git's smart
// HTTP protocol. The order of the checks is the order of what a caller
// may learn: nothing without the token, nothing of a repository without
// a live task of it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Write([]byte("ok\n"))
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="turtles git mirror"`)
		s.refuse(w, r, http.StatusUnauthorized, "a bearer token is required", nil)
		return
	}
	name, endpoint, err := parsePath(r.URL.Path)
	if err != nil {
		s.refuse(w, r, http.StatusNotFound, "not a repository this mirror serves", err)
		return
	}
	switch {
	case endpoint == endpointPush:
		s.refuse(w, r, http.StatusForbidden, "this mirror is read-only", nil)
		return
	case endpoint == endpointRefs && (r.Method != http.MethodGet || r.URL.RawQuery != "service=git-upload-pack"),
		endpoint == endpointUploadPack && r.Method != http.MethodPost:
		s.refuse(w, r, http.StatusMethodNotAllowed, "only fetches are served (smart HTTP upload-pack)", nil)
		return
	}
	sha, err := parseTask(name, r.Header.Get(TaskHeader))
	if err != nil {
		s.refuse(w, r, http.StatusForbidden, "the request names no task of this repository", err)
		return
	}
	live, err := s.cfg.Tasks.Live(r.Context(), r.Header.Get(TaskHeader))
	switch {
	case err != nil:
		s.refuse(w, r, http.StatusServiceUnavailable, "the state database cannot say which tasks are live; try again", err)
		return
	case !live:
		// The same answer as for a repository that does not exist: no
		// one learns which repositories turtles tests.
		s.refuse(w, r, http.StatusNotFound, "not a repository this mirror serves", fmt.Errorf("task %q is not live", r.Header.Get(TaskHeader)))
		return
	}
	if endpoint == endpointRefs {
		// A fetch starts here: the moment to bring the mirror up to date.
		if err := s.sync(r.Context(), name, sha); err != nil {
			code := http.StatusBadGateway
			if errors.Is(err, errTooBig) {
				code = http.StatusInsufficientStorage
			}
			s.refuse(w, r, code, "the mirror could not fetch "+name+" from the forge", err)
			return
		}
	} else if _, err := os.Stat(s.path(name)); err != nil {
		s.refuse(w, r, http.StatusNotFound, "not a repository this mirror serves", err)
		return
	}
	s.backend(w, r, name, endpoint)
}

// authorized reports whether r carries the bearer token.
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1
}

// refuse answers code with reason (for the client) and logs cause.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason string, cause error) {
	attrs := []any{"code", code, "method", r.Method, "path", clip(r.URL.Path), "remote", r.RemoteAddr, "reason", reason}
	if cause != nil {
		attrs = append(attrs, "err", cause)
	}
	s.cfg.Log.Warn("git mirror refused a request", attrs...)
	http.Error(w, reason, code)
}

// backend hands the request to git http-backend, rewritten to the
// checked name and without the mirror's own headers: git needs neither
// the token nor the task.
func (s *Server) backend(w http.ResponseWriter, r *http.Request, name, endpoint string) {
	r2 := r.Clone(r.Context())
	r2.Header.Del("Authorization")
	r2.Header.Del(TaskHeader)
	r2.URL.Path = "/" + name + ".git/" + endpoint
	r2.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequest)
	h := &cgi.Handler{
		Path: s.git,
		Args: []string{"http-backend"},
		Dir:  s.cfg.Dir,
		Env: append(git.Environ(),
			"GIT_PROJECT_ROOT="+s.cfg.Dir,
			"GIT_HTTP_EXPORT_ALL=1",
			// Bots fetch a commit by its ID, advertised or not; every
			// object of a mirror came from the same forge repository.
			"GIT_CONFIG_COUNT=2",
			"GIT_CONFIG_KEY_0=uploadpack.allowAnySHA1InWant", "GIT_CONFIG_VALUE_0=true",
			"GIT_CONFIG_KEY_1=http.receivepack", "GIT_CONFIG_VALUE_1=false",
		),
		Stderr: logWriter{s.cfg.Log, name},
	}
	h.ServeHTTP(w, r2)
}

// path is the directory of name's mirror.
func (s *Server) path(name string) string {
	return filepath.Join(s.cfg.Dir, filepath.FromSlash(name)+".git")
}

// logWriter logs what git http-backend writes to stderr.
type logWriter struct {
	log  *slog.Logger
	repo string
}

func (l logWriter) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(string(p)); msg != "" {
		l.log.Warn("git http-backend", "repo", l.repo, "stderr", clip(msg))
	}
	return len(p), nil
}

var _ io.Writer = logWriter{}
