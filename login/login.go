// Package login is the dashboard's sign-in and actions: people sign in
// with their forge's OAuth (GitHub, GitLab), and those the forge says may
// push to a repository, asked at the time, rerun, cancel, approve and
// requeue its tasks. Every action is recorded in the state database. It
// implements web.Auth: web mounts it at /login, /logout, /oauth/ and
// /actions/ and asks it who is looking and what they may read.
//
// Sessions and CSRF tokens are package session's; the forge's answers
// come from forge.Account (the person's token: who they are, what they
// may read) and a Pusher (turtles' credentials: who may push). Reruns and
// approvals go through the gate, cancels and requeues through the queue.
//
// cmd/turtles wires it; nothing else imports it.
package login

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/session"
	"github.com/turtles-ci/turtles/state"
)

// Provider is a forge people sign in with.
type Provider struct {
	// Name is the forge's name in sessions and URLs: "github", "gitlab".
	// Its OAuth callback is PUBLIC-URL/oauth/NAME/callback.
	Name string
	// Title is the forge's name for people: "GitHub".
	Title string
	// OAuth is the registered application: client ID and secret, the
	// forge's endpoints and the scopes asked for. RedirectURL is set by
	// New.
	OAuth oauth2.Config
	// Account is the forge as the person whose token it is sees it.
	Account func(token string) (forge.Account, error)
	// Push says who may push to a repository, asked with turtles' own
	// credentials (forge.Lookup satisfies it). Nil: nobody signed in with
	// this forge may act.
	Push Pusher
}

// Pusher answers whether user may push to repo; forge.Lookup satisfies
// it.
type Pusher interface {
	CanPush(ctx context.Context, repo, user string) (bool, error)
}

// History is the part of the state database actions need; state.DB
// satisfies it.
type History interface {
	Get(ctx context.Context, id string) (state.Task, error)
	RecordAction(ctx context.Context, a state.Action) error
	Actions(ctx context.Context, task string) ([]state.Action, error)
}

// Queue is the part of the queue actions need; a queue.Dedupe queue
// satisfies it, whose Publish refuses a key that is live.
type Queue interface {
	Publish(ctx context.Context, t turtles.Task) error
	Emit(ctx context.Context, ev turtles.Event) error
	CancelTask(ctx context.Context, key, reason string) (int, error)
	DeadLetters(ctx context.Context) ([]queue.DeadLetter, error)
	RemoveDead(ctx context.Context, dl queue.DeadLetter) (bool, error)
}

// Gate reruns and approves; *gate.Gate satisfies it.
type Gate interface {
	Rerun(ctx context.Context, c gate.Commit, context string, attempt int) (turtles.Task, error)
	Approve(ctx context.Context, c gate.Commit, by string) (turtles.Task, error)
}

// Config is what New needs. Every field is required unless it says
// otherwise; cmd/turtles decides the durations.
type Config struct {
	// Providers are the forges people sign in with; at least one.
	Providers []Provider
	// Keys seal sessions and make CSRF tokens.
	Keys *session.Keys
	// PublicURL is where people reach the dashboard, such as
	// https://ci.example.com: OAuth callbacks are under it, cookies are
	// Secure when it is https, and actions come only from its origin.
	PublicURL string
	// Private: reading needs a session, and a repository's tasks and
	// logs are shown only to those the forge shows the repository to.
	// The session then keeps the person's token to ask.
	Private bool
	// SessionTTL is how long a sign-in lasts (less when the forge's token
	// expires sooner and Private needs it); LoginTTL how long a person
	// may take at the forge to sign in; ReadTTL how long the forge's
	// answer to "may this person read this repository" is kept.
	SessionTTL, LoginTTL, ReadTTL time.Duration

	History History
	Queue   Queue
	// Gate reruns and approves; nil: a server without forge credentials,
	// which refuses them.
	Gate Gate
	// CloneURL is where bots clone a repository from, for the tasks of a
	// rerun or an approval.
	CloneURL func(repo string) string
	// Pool is the pool of plan tasks (an approval queues one); empty:
	// turtles.DefaultPool.
	Pool string

	// HTTPClient exchanges OAuth codes; nil: http.DefaultClient.
	HTTPClient *http.Client
	// Log gets a line per sign-in and action; nil discards.
	Log *slog.Logger
	// Now is the clock of sessions and records; nil: time.Now.
	Now func() time.Time
}

// Auth is the dashboard's sign-in and actions. Safe for concurrent use.
type Auth struct {
	cfg       Config
	providers map[string]*Provider
	public    *url.URL
	origin    string // scheme://host of PublicURL
	secure    bool
	mux       *http.ServeMux
	log       *slog.Logger
	reads     readCache
}

// New checks cfg and returns the Auth.
func New(cfg Config) (*Auth, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		bad("public URL %q is not an http(s) URL", cfg.PublicURL)
		pub = &url.URL{}
	}
	switch {
	case len(cfg.Providers) == 0:
		bad("no forge to sign in with")
	case cfg.Keys == nil:
		bad("no session keys")
	case cfg.SessionTTL <= 0 || cfg.LoginTTL <= 0 || cfg.ReadTTL <= 0:
		bad("session, login and read TTLs must be positive")
	case cfg.History == nil || cfg.Queue == nil || cfg.CloneURL == nil:
		bad("history, queue and clone URLs are required")
	}
	a := &Auth{cfg: cfg, providers: map[string]*Provider{}, public: pub, origin: originOf(pub),
		secure: pub.Scheme == "https", mux: http.NewServeMux(), log: cfg.Log}
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		switch {
		case p.Name == "" || strings.ContainsAny(p.Name, "/?#:%"):
			bad("forge name %q", p.Name)
		case a.providers[p.Name] != nil:
			bad("forge %s twice", p.Name)
		case p.OAuth.ClientID == "" || p.OAuth.ClientSecret == "" || p.OAuth.Endpoint.AuthURL == "" || p.OAuth.Endpoint.TokenURL == "":
			bad("forge %s: no OAuth client ID, secret or endpoints", p.Name)
		case p.Account == nil:
			bad("forge %s: no account", p.Name)
		}
		p.OAuth.RedirectURL = strings.TrimRight(cfg.PublicURL, "/") + "/oauth/" + p.Name + "/callback"
		a.providers[p.Name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if a.cfg.Now == nil {
		a.cfg.Now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.reads = readCache{m: map[readKey]readAnswer{}}
	a.mux.HandleFunc("GET /login", a.start)
	a.mux.HandleFunc("GET /oauth/{forge}/callback", a.callback)
	a.mux.HandleFunc("POST /logout", a.logout)
	a.mux.HandleFunc("POST /actions/{kind}", a.act)
	return a, nil
}

// ServeHTTP serves GET /login, GET /oauth/{forge}/callback, POST /logout
// and POST /actions/{kind}.
func (a *Auth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	a.mux.ServeHTTP(w, r)
}

// Callback is the OAuth callback URL of forge, to register with it.
func (a *Auth) Callback(forge string) string {
	if p := a.providers[forge]; p != nil {
		return p.OAuth.RedirectURL
	}
	return ""
}

// The cookies. With https, the session's takes the __Host- prefix: the
// browser then keeps it only if it is Secure, for path / and this host
// alone, so that no sibling domain can plant one.
const (
	sessionCookie = "turtles_session"
	loginCookie   = "turtles_login"
)

func (a *Auth) sessionCookieName() string {
	if a.secure {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

// session returns the session of r, if a valid one: an expired or
// tampered cookie is nobody's.
func (a *Auth) session(r *http.Request) (session.Session, bool) {
	c, err := r.Cookie(a.sessionCookieName())
	if err != nil {
		return session.Session{}, false
	}
	s, err := a.cfg.Keys.Decode(c.Value, a.cfg.Now())
	if err != nil {
		return session.Session{}, false
	}
	if _, ok := a.providers[s.Forge]; !ok {
		return session.Session{}, false
	}
	if a.cfg.Private && s.Token == "" {
		// Signed in before the server went private: without the token,
		// what the person may read cannot be asked. They sign in again.
		return session.Session{}, false
	}
	return s, true
}

// Who implements web.Auth.
func (a *Auth) Who(r *http.Request) (user, csrf string) {
	s, ok := a.session(r)
	if !ok {
		return "", ""
	}
	return s.User(), a.cfg.Keys.CSRF(s)
}

// CanRead implements web.Auth. Without Private everyone reads
// everything. With it, only a session reads, and only a repository the
// forge shows its person, asked with their token and remembered for
// ReadTTL; when the forge cannot be asked, the answer is no.
func (a *Auth) CanRead(r *http.Request, repo string) bool {
	if !a.cfg.Private {
		return true
	}
	s, ok := a.session(r)
	if !ok || s.Token == "" {
		return false
	}
	now := a.cfg.Now()
	k := readKey{session: s.ID, repo: repo}
	if ok, known := a.reads.get(k, now); known {
		return ok
	}
	acc, err := a.providers[s.Forge].Account(s.Token)
	var can bool
	if err == nil {
		can, err = acc.CanRead(r.Context(), repo)
	}
	if err != nil {
		a.log.Warn("cannot ask the forge whether a person may read a repository; they may not", "user", s.User(), "repo", repo, "err", err)
		return false
	}
	a.reads.put(k, readAnswer{ok: can, until: now.Add(a.cfg.ReadTTL)})
	return can
}

// readCache remembers the forge's answers to CanRead, per session and
// repository, briefly: a page lists many tasks of one repository.
type readCache struct {
	mu sync.Mutex
	m  map[readKey]readAnswer
}

type readKey struct{ session, repo string }

type readAnswer struct {
	ok    bool
	until time.Time
}

// maxReads bounds the cache; past it, it starts afresh.
const maxReads = 10000

func (c *readCache) get(k readKey, now time.Time) (ok, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, found := c.m[k]
	if !found || !now.Before(v.until) {
		return false, false
	}
	return v.ok, true
}

func (c *readCache) put(k readKey, v readAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxReads {
		clear(c.m)
	}
	c.m[k] = v
}

// originOf is u's origin, scheme://host with the scheme's default port
// left out, in lower case, as browsers send it in Origin.
func originOf(u *url.URL) string {
	if u == nil || u.Host == "" {
		return ""
	}
	host := strings.ToLower(u.Host)
	switch {
	case u.Scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	case u.Scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	}
	return strings.ToLower(u.Scheme) + "://" + host
}
