package login_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/forgetest"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/forge/gitlab"
	"github.com/turtles-ci/turtles/forge/gitlab/gitlabtest"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/login"
	"github.com/turtles-ci/turtles/queue"
	qsqlite "github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/session"
	"github.com/turtles-ci/turtles/state"
	ssqlite "github.com/turtles-ci/turtles/state/sqlite"
)

// The world of the tests: a fake GitHub (API and OAuth), the real state
// database and queue (SQLite), the real gate, and the dashboard's login
// served over HTTP with a page at every other path, which the browser
// lands on after a sign-in or an action.

const (
	repo     = "octo/hello"
	token    = "turtles-token"
	clientID = "dashboard"
	secret   = "dashboard-secret"
	sha1     = "1111111111111111111111111111111111111111"
	sha2     = "2222222222222222222222222222222222222222"
	matrix   = "contexts:\n  - name: unit\n    command: make check\n"
)

var keySecret = []byte("the dashboard's session key, 32 bytes or more")

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type world struct {
	t     *testing.T
	gh    *githubtest.Server
	gl    *gitlabtest.Server // with options.gitlab, instead of gh
	oauth *forgetest.OAuth
	state state.DB
	raw   *qsqlite.DB // the queue under the dedupe
	q     queue.Queue
	auth  *login.Auth
	srv   *httptest.Server
	clock *clock
	keys  *session.Keys
}

type options struct {
	private bool
	noGate  bool
	// gitlab: the forge is GitLab (w.gl), not GitHub (w.gh).
	gitlab bool
	// keepDead: the queue cannot remove dead letters.
	keepDead bool
}

// keptDead is a queue whose dead letters cannot be removed.
type keptDead struct{ queue.Queue }

func (keptDead) RemoveDead(context.Context, queue.DeadLetter) (bool, error) {
	return false, errors.New("the broker went away")
}

func actionQueue(q queue.Queue, o options) login.Queue {
	if o.keepDead {
		return keptDead{q}
	}
	return q
}

func newWorld(t *testing.T, o options) *world {
	t.Helper()
	w := &world{t: t, clock: &clock{now: time.Now().Truncate(time.Second)}}
	dir := t.TempDir()
	db, err := ssqlite.Open(context.Background(), filepath.Join(dir, "state.db"), state.Options{Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.state = db
	raw, err := qsqlite.Open(filepath.Join(dir, "queue.db"),
		queue.Options{Lease: time.Minute, MaxDeliveries: 1, Poll: 10 * time.Millisecond, Clock: clockwork.NewRealClock()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	w.raw = raw
	w.q = queue.Dedupe(raw, state.Reserver{DB: db}, time.Second)

	var p login.Provider
	var turtlesForge interface {
		forge.Forge
		forge.Lookup
	}
	if o.gitlab {
		w.gl = gitlabtest.NewServer(t, token)
		w.oauth = w.gl.OAuth()
		c, err := gitlab.New(gitlab.Config{BaseURL: w.gl.URL, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		turtlesForge = c
		ep, err := gitlab.OAuthEndpoint(w.gl.URL)
		if err != nil {
			t.Fatal(err)
		}
		p = login.Provider{Name: "gitlab", Title: "GitLab", OAuth: oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: ep},
			Account: func(tok string) (forge.Account, error) {
				return gitlab.NewAccount(gitlab.AccountConfig{BaseURL: w.gl.URL, Token: tok})
			}}
		w.gl.SetFile(repo, sha1, ".turtles.yaml", []byte(matrix))
		w.gl.SetProjectAccess(repo, "alice", gitlabtest.Developer)
		w.gl.SetProjectAccess(repo, "bob", gitlabtest.Reporter)
	} else {
		w.gh = githubtest.NewServer(t, token)
		w.oauth = w.gh.OAuth()
		c, err := github.New(github.Config{BaseURL: w.gh.URL, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		turtlesForge = c
		ep, err := github.OAuthEndpoint(w.gh.URL)
		if err != nil {
			t.Fatal(err)
		}
		p = login.Provider{Name: "github", Title: "GitHub", OAuth: oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: ep},
			Account: func(tok string) (forge.Account, error) {
				return github.NewAccount(github.AccountConfig{BaseURL: w.gh.URL, Token: tok})
			}}
		w.gh.SetFile(repo, sha1, ".turtles.yaml", []byte(matrix))
		w.gh.SetPermission(repo, "alice", "write")
		w.gh.SetPermission(repo, "bob", "read")
	}
	p.Push = turtlesForge
	var g login.Gate
	if !o.noGate {
		gt, err := gate.New(gate.Config{Lookup: turtlesForge, Forge: turtlesForge, Queue: w.q, Events: w.q, Now: w.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		g = gt
	}

	var handler http.Handler
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { handler.ServeHTTP(rw, r) }))
	t.Cleanup(w.srv.Close)
	w.oauth.AddClient(clientID, secret, w.srv.URL+"/oauth/"+p.Name+"/callback")
	w.keys, err = session.NewKeys(keySecret)
	if err != nil {
		t.Fatal(err)
	}
	w.auth, err = login.New(login.Config{
		Providers:  []login.Provider{p},
		Keys:       w.keys,
		PublicURL:  w.srv.URL,
		Private:    o.private,
		SessionTTL: 12 * time.Hour, LoginTTL: 10 * time.Minute, ReadTTL: time.Minute,
		History:  db,
		Queue:    actionQueue(w.q, o),
		Gate:     g,
		CloneURL: func(r string) string { return "file:///repos/" + r + ".git" },
		Now:      w.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range []string{"/login", "/logout", "/oauth/", "/actions/"} {
		mux.Handle(p, w.auth)
	}
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, "page "+r.URL.RequestURI()) })
	handler = mux
	return w
}

// browser is a person's browser: it keeps cookies and follows redirects.
type browser struct {
	w  *world
	c  *http.Client
	jr http.CookieJar
}

func (w *world) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{w: w, jr: jar, c: &http.Client{Jar: jar}}
}

// signIn signs in as login (at the forge) through /login?return=back and
// returns where the browser landed.
func (b *browser) signIn(login, back string) *url.URL {
	b.w.t.Helper()
	b.w.oauth.SignIn(login)
	resp, err := b.c.Get(b.w.srv.URL + "/login?return=" + url.QueryEscape(back))
	if err != nil {
		b.w.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.w.t.Fatalf("sign in as %s: %s: %s", login, resp.Status, body)
	}
	return resp.Request.URL
}

// request is a request carrying the browser's cookies.
func (b *browser) request(method, path string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, b.w.srv.URL+path, body)
	u, _ := url.Parse(b.w.srv.URL)
	for _, c := range b.jr.Cookies(u) {
		r.AddCookie(c)
	}
	return r
}

// who is what the Auth says of the browser's session.
func (b *browser) who() (user, csrf string) { return b.w.auth.Who(b.request("GET", "/", nil)) }

// cookie returns the browser's session cookie value.
func (b *browser) cookie() string {
	u, _ := url.Parse(b.w.srv.URL)
	for _, c := range b.jr.Cookies(u) {
		if c.Name == "turtles_session" {
			return c.Value
		}
	}
	return ""
}

// setCookie replaces the browser's session cookie value.
func (b *browser) setCookie(v string) {
	u, _ := url.Parse(b.w.srv.URL)
	b.jr.SetCookies(u, []*http.Cookie{{Name: "turtles_session", Value: v, Path: "/"}})
}

// post posts form to path as a page of this server would (Origin set),
// without following the redirect, and returns the status, Location and
// body.
func (b *browser) post(path string, form url.Values, header ...string) (int, string, string) {
	b.w.t.Helper()
	req, _ := http.NewRequest("POST", b.w.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.w.srv.URL)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	c := &http.Client{Jar: b.jr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		b.w.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// act posts the action kind on task with the browser's own CSRF token.
func (b *browser) act(kind, task string, extra ...string) (int, string, string) {
	b.w.t.Helper()
	_, csrf := b.who()
	form := url.Values{"task": {task}, "csrf": {csrf}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	return b.post("/actions/"+kind, form)
}

// task is a test task of context on sha.
func task(sha, context string, pr int) turtles.Task {
	return turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: repo, CloneURL: "file:///repos/octo/hello.git"},
		SHA: sha, PR: pr, Context: context, Command: "make check", Pool: "public", Attempt: 1, Trusted: true, Created: time.Now()}
}

// record records events of t into the history, as the results recorder
// would: queued, then started, then finished as class ("" stops after
// started).
func (w *world) record(t turtles.Task, class turtles.Class) {
	w.t.Helper()
	evs := []turtles.Event{
		{ID: t.ID() + "-q", Type: turtles.EventQueued, Task: t, Time: w.clock.Now()},
		{ID: t.ID() + "-s", Type: turtles.EventStarted, Task: t, Bot: "bot-1", Time: w.clock.Now()},
	}
	if class != "" {
		evs = append(evs, turtles.Event{ID: t.ID() + "-f", Type: turtles.EventFinished, Task: t, Time: w.clock.Now(),
			Outcome: &turtles.Outcome{Class: class, Reason: string(class)}})
	}
	for _, ev := range evs {
		if _, err := w.state.Record(context.Background(), ev); err != nil {
			w.t.Fatal(err)
		}
	}
}

// queued is what is in the queue, by state ("ready", "leased", "dead").
func (w *world) queued() map[string]int {
	w.t.Helper()
	stats, err := w.raw.Stats(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]int{}
	for _, s := range stats {
		out[s.State] += s.Count
	}
	return out
}

// actions are the recorded actions on task, as "user kind: result".
func (w *world) actions(task string) []string {
	w.t.Helper()
	acts, err := w.state.Actions(context.Background(), task)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, a := range acts {
		out = append(out, a.User+" "+a.Kind+": "+a.Result)
	}
	return out
}
