package attack

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/session"
	"github.com/turtles-ci/turtles/state"
)

// The dashboard's sign-in and actions under attack, on the real binary:
// a person who may only read, forged CSRF tokens and origins, expired,
// tampered and foreign sessions, and sign-in links that would send the
// browser elsewhere. Each attack is followed by the same action done
// right, which must be the only one that took effect: the task's
// attempts count the reruns that went through.

const loginRepo = "octo/dash"

// loginMatrix has one context, quick to run again.
const loginMatrix = "contexts:\n  - name: ok\n    command: echo ran\n"

// sessionKey is the server's session key, which the tests know so that
// they can seal sessions of their own: expired ones, and the barrier's.
const sessionKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type loginWorld struct {
	gh   *githubtest.Server
	s    *e2e.Server
	sha  string
	task string // the ID of context ok of sha
	keys *session.Keys
	runs int // attempts of the task so far
}

func newLoginWorld(t *testing.T) *loginWorld {
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	repoDir := filepath.Join(base, "octo", "dash.git")
	os.MkdirAll(repoDir, 0o755)
	w := &loginWorld{gh: gh}
	w.sha = e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": loginMatrix})
	gh.SetFile(loginRepo, w.sha, ".turtles.yaml", []byte(loginMatrix))
	gh.SetPermission(loginRepo, "maint", "write")
	gh.SetPermission(loginRepo, "reader", "read")
	creds := t.TempDir()
	secretFile, keyFile := filepath.Join(creds, "oauth-secret"), filepath.Join(creds, "session-key")
	os.WriteFile(secretFile, []byte("dash-secret\n"), 0o600)
	os.WriteFile(keyFile, []byte(sessionKey+"\n"), 0o600)
	var err error
	if w.keys, err = session.ParseKeys([]byte(sessionKey)); err != nil {
		t.Fatal(err)
	}
	w.s = e2e.Serve(t, gh, t.TempDir(), "--oauth-github-client-id", "dash", "--oauth-github-client-secret-file", secretFile,
		"--session-key-file", keyFile, "--clone-base-url", "file://"+base)
	gh.OAuth().AddClient("dash", "dash-secret", w.s.URL+"/oauth/github/callback")

	push := e2e.PushPayload(loginRepo, repoDir, w.sha)
	if code, out := w.s.Webhook("push", "push-1", push, e2e.Sign(push)); code/100 != 2 {
		t.Fatalf("push: %d %s", code, out)
	}
	w.waitRuns(t, 1)
	for _, tk := range w.s.Tasks(w.sha) {
		if tk.Context == "ok" {
			w.task = tk.ID
		}
	}
	return w
}

// waitRuns waits until the task's attempt n finished, and checks that
// it has exactly n attempts.
func (w *loginWorld) waitRuns(t *testing.T, n int) {
	t.Helper()
	var got state.Task
	e2e.WaitFor(t, 60*time.Second, fmt.Sprintf("attempt %d of ok to finish", n), func() bool {
		for _, tk := range w.s.Tasks(w.sha) {
			if tk.Context == "ok" {
				got = tk
			}
		}
		if len(got.Attempts) < n {
			return false
		}
		return got.State == state.Finished && got.Attempts[len(got.Attempts)-1].Number >= n
	})
	if len(got.Attempts) != n {
		t.Errorf("task ok has %d attempts, want %d: an attack reran it", len(got.Attempts), n)
	}
	w.runs = n
}

// browser keeps cookies and follows redirects.
type loginBrowser struct {
	w   *loginWorld
	c   *http.Client
	jar http.CookieJar
}

func (w *loginWorld) browser() *loginBrowser {
	jar, _ := cookiejar.New(nil)
	return &loginBrowser{w: w, jar: jar, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// signIn signs in as login, asking to come back to back, and returns
// where the browser landed.
func (b *loginBrowser) signIn(t *testing.T, login, back string) *url.URL {
	t.Helper()
	b.w.gh.OAuth().SignIn(login)
	resp, err := b.c.Get(b.w.s.URL + "/login?return=" + url.QueryEscape(back))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in as %s: %s", login, resp.Status)
	}
	return resp.Request.URL
}

func (b *loginBrowser) setSession(v string) {
	u, _ := url.Parse(b.w.s.URL)
	b.jar.SetCookies(u, []*http.Cookie{{Name: "turtles_session", Value: v, Path: "/"}})
}

func (b *loginBrowser) session() string {
	u, _ := url.Parse(b.w.s.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "turtles_session" {
			return c.Value
		}
	}
	return ""
}

// csrf is the browser's session's CSRF token, as the pages put it in
// their forms.
func (b *loginBrowser) csrf(t *testing.T) string {
	t.Helper()
	s, err := b.w.keys.Decode(b.session(), time.Now())
	if err != nil {
		t.Fatalf("the browser's session: %v", err)
	}
	return b.w.keys.CSRF(s)
}

// post posts form to path with header (pairs; "" deletes), Origin this
// server unless changed, and returns the status code.
func (b *loginBrowser) post(t *testing.T, path string, form url.Values, header ...string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", b.w.s.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.w.s.URL)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	c := &http.Client{Jar: b.jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rerun is the legitimate rerun by maint that follows each attack: it
// goes through, and is the only rerun that does.
func (w *loginWorld) rerun(t *testing.T) {
	t.Helper()
	b := w.browser()
	b.signIn(t, "maint", "/")
	if code := b.post(t, "/actions/rerun", url.Values{"task": {w.task}, "csrf": {b.csrf(t)}}); code != http.StatusSeeOther {
		t.Fatalf("maint's rerun: %d, want 303", code)
	}
	w.waitRuns(t, w.runs+1)
}

func TestAttackLogin(t *testing.T) {
	w := newLoginWorld(t)

	t.Run("reader", func(t *testing.T) {
		attack(t, "login: a person who may read but not push reruns, cancels, approves or requeues a task")
		b := w.browser()
		b.signIn(t, "reader", "/")
		for _, kind := range []string{"rerun", "cancel", "approve", "requeue"} {
			if code := b.post(t, "/actions/"+kind, url.Values{"task": {w.task}, "csrf": {b.csrf(t)}}); code != http.StatusForbidden {
				t.Errorf("%s by a reader: %d, want 403", kind, code)
			}
		}
		w.rerun(t)
	})

	t.Run("csrf", func(t *testing.T) {
		attack(t, "login: another site's page makes a signed-in maintainer's browser rerun a task (CSRF)")
		maint, other := w.browser(), w.browser()
		maint.signIn(t, "maint", "/")
		other.signIn(t, "reader", "/")
		own := maint.csrf(t)
		form := func(tok string) url.Values { return url.Values{"task": {w.task}, "csrf": {tok}} }
		for name, c := range map[string]func() int{
			"no token":                func() int { return maint.post(t, "/actions/rerun", url.Values{"task": {w.task}}) },
			"another session's token": func() int { return maint.post(t, "/actions/rerun", form(other.csrf(t))) },
			"a made-up token": func() int {
				return maint.post(t, "/actions/rerun", form("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
			},
			"the token in the query": func() int {
				return maint.post(t, "/actions/rerun?csrf="+url.QueryEscape(own), url.Values{"task": {w.task}})
			},
			"from another origin": func() int { return maint.post(t, "/actions/rerun", form(own), "Origin", "https://evil.example") },
			"from another site, by Referer": func() int {
				return maint.post(t, "/actions/rerun", form(own), "Origin", "", "Referer", "https://evil.example/x")
			},
			"a cross-site fetch": func() int { return maint.post(t, "/actions/rerun", form(own), "Sec-Fetch-Site", "cross-site") },
		} {
			if code := c(); code != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", name, code)
			}
		}
		w.rerun(t)
	})

	t.Run("sessions", func(t *testing.T) {
		attack(t, "login: an expired, tampered or foreign session cookie acts as a maintainer")
		now := time.Now()
		seal := func(keys *session.Keys, exp time.Time) string {
			v, err := keys.Encode(session.Session{ID: session.NewID(), Forge: "github", Login: "maint", Expires: exp})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		foreign, _ := session.NewKeys([]byte("a key this server never had, 32 bytes long or more"))
		good := seal(w.keys, now.Add(time.Hour))
		b := w.browser()
		for name, v := range map[string]string{
			"expired a minute ago":  seal(w.keys, now.Add(-time.Minute)),
			"a byte changed":        good[:20] + map[bool]string{true: "B", false: "A"}[good[20] == 'A'] + good[21:],
			"sealed by another key": seal(foreign, now.Add(time.Hour)),
			"made up":               "v1.eyJsb2dpbiI6Im1haW50In0.AAAA",
		} {
			b.setSession(v)
			s := session.Session{}
			if d, err := w.keys.Decode(v, now); err == nil {
				s = d
			}
			if code := b.post(t, "/actions/rerun", url.Values{"task": {w.task}, "csrf": {w.keys.CSRF(s)}}); code != http.StatusForbidden {
				t.Errorf("%s session: %d, want 403", name, code)
			}
		}
		// The barrier, with a session the test sealed itself: a sealed
		// session is what the server goes by.
		b.setSession(good)
		if code := b.post(t, "/actions/rerun", url.Values{"task": {w.task}, "csrf": {b.csrf(t)}}); code != http.StatusSeeOther {
			t.Fatalf("rerun with a good session: %d, want 303", code)
		}
		w.waitRuns(t, w.runs+1)
	})

	t.Run("open redirect", func(t *testing.T) {
		attack(t, "login: a sign-in link sends the browser to another site afterwards (open redirect)")
		host := strings.TrimPrefix(w.s.URL, "http://")
		for _, back := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example/", "/%2F%2Fevil.example",
			"javascript:alert(1)", "///evil.example", "http:evil.example"} {
			if landed := w.browser().signIn(t, "reader", back); landed.Host != host {
				t.Errorf("return=%q: landed on %s", back, landed)
			}
		}
	})
}
