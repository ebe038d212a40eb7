package login_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/session"
)

// TestSignIn: a person signs in at the forge and lands back where they
// were, signed in, with a session cookie the page's scripts cannot read
// and other sites' forms do not carry.
func TestSignIn(t *testing.T) {
	w := newWorld(t, options{})
	b := w.browser()
	if user, _ := b.who(); user != "" {
		t.Fatalf("signed in before signing in: %q", user)
	}
	landed := b.signIn("alice", "/tasks/0123456789abcdef?attempt=2")
	if landed.Host != strings.TrimPrefix(w.srv.URL, "http://") || landed.RequestURI() != "/tasks/0123456789abcdef?attempt=2" {
		t.Errorf("landed on %s, want this server's /tasks/0123456789abcdef?attempt=2", landed)
	}
	user, csrf := b.who()
	if user != "github:alice" || csrf == "" {
		t.Errorf("Who = %q, %q; want github:alice and a CSRF token", user, csrf)
	}
	if w.gh.OAuth().Exchanged() != 1 {
		t.Errorf("%d codes exchanged, want 1", w.gh.OAuth().Exchanged())
	}

	// The cookie as the server set it.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", w.srv.URL+"/login", nil)
	w.gh.OAuth().SignIn("alice")
	w.auth.ServeHTTP(rec, req)
	loc, _ := url.Parse(rec.Header().Get("Location"))
	var loginCookie *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "turtles_login" {
			loginCookie = c
		}
	}
	if loginCookie == nil || !loginCookie.HttpOnly || loginCookie.SameSite != http.SameSiteLaxMode || loginCookie.Path != "/oauth/" {
		t.Errorf("login cookie %+v, want HttpOnly, SameSite=Lax, for /oauth/ only", loginCookie)
	}
	q := loc.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("redirect_uri") != w.srv.URL+"/oauth/github/callback" {
		t.Errorf("authorization URL %s, want S256 PKCE, a state and the callback", loc)
	}
	resp, err := http.Get(loc.String()) // the forge, which redirects to the callback; follow it by hand
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb := httptest.NewRequest("GET", resp.Request.URL.String(), nil)
	cb.AddCookie(loginCookie)
	rec = httptest.NewRecorder()
	w.auth.ServeHTTP(rec, cb)
	var sess *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "turtles_session" {
			sess = c
		}
	}
	if rec.Code != http.StatusSeeOther || sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.Secure {
		t.Errorf("callback: %d, session cookie %+v; want 303 and HttpOnly, SameSite=Lax, path /, not Secure on http", rec.Code, sess)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("callback Cache-Control %q, want no-store", rec.Header().Get("Cache-Control"))
	}
}

// TestSignInDenied: a person who says no at the forge is not signed in.
func TestSignInDenied(t *testing.T) {
	w := newWorld(t, options{})
	b := w.browser()
	w.gh.OAuth().SignIn("")
	resp, err := b.c.Get(w.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("denied sign-in: %s, want 403", resp.Status)
	}
	if user, _ := b.who(); user != "" {
		t.Errorf("signed in as %q after saying no", user)
	}
}

// TestAttackOpenRedirect: after signing in, the browser goes back to a
// page of this server, whatever return the link said.
func TestAttackOpenRedirect(t *testing.T) {
	w := newWorld(t, options{})
	host := strings.TrimPrefix(w.srv.URL, "http://")
	for _, back := range []string{
		"https://evil.example/phish",
		"//evil.example/phish",
		"///evil.example/phish",
		"/\\evil.example/phish",
		"\\\\evil.example/phish",
		"/%2F%2Fevil.example/phish",
		"/%5Cevil.example",
		"javascript:alert(document.cookie)",
		"http:evil.example",
		" //evil.example",
		"/\t/evil.example",
		"//evil.example@" + host + "/",
		"/tasks/x\r\nLocation: https://evil.example",
	} {
		landed := w.browser().signIn("alice", back)
		if landed.Host != host {
			t.Errorf("return=%q: landed on %s, another origin", back, landed)
		}
	}
}

// TestAttackForgedState: a callback with a code and state from a sign-in
// this browser did not start (login CSRF: the attacker's own account
// planted in the victim's browser) signs nobody in.
func TestAttackForgedState(t *testing.T) {
	w := newWorld(t, options{})
	// The attacker starts a sign-in and stops at the callback.
	attacker := w.browser()
	attacker.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.Contains(req.URL.Path, "/oauth/github/callback") {
			return http.ErrUseLastResponse
		}
		return nil
	}
	w.gh.OAuth().SignIn("mallory")
	resp, err := attacker.c.Get(w.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	planted := resp.Header.Get("Location")
	if !strings.Contains(planted, "code=") {
		t.Fatalf("no callback with a code: %s", planted)
	}
	// The victim, who started a sign-in of their own (or none), follows it.
	for _, started := range []bool{false, true} {
		victim := w.browser()
		if started {
			victim.c.CheckRedirect = func(req *http.Request, via []*http.Request) error { return http.ErrUseLastResponse }
			w.gh.OAuth().SignIn("victim")
			resp, err := victim.c.Get(w.srv.URL + "/login")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			victim.c.CheckRedirect = nil
		}
		resp, err := victim.c.Get(planted)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("planted callback (victim started a sign-in: %v): %s, want 400", started, resp.Status)
		}
		if user, _ := victim.who(); user != "" {
			t.Errorf("planted callback signed the victim in as %q", user)
		}
	}
}

// TestAttackExpiredSession: a session past its time is nobody's, though
// the browser (or a thief) still sends it.
func TestAttackExpiredSession(t *testing.T) {
	w := newWorld(t, options{})
	b := w.browser()
	b.signIn("alice", "/")
	w.clock.Advance(12*time.Hour - time.Second)
	if user, _ := b.who(); user != "github:alice" {
		t.Fatalf("Who a second before expiry = %q", user)
	}
	w.clock.Advance(time.Second)
	if user, csrf := b.who(); user != "" || csrf != "" {
		t.Errorf("Who after expiry = %q, %q; want nobody", user, csrf)
	}
}

// TestAttackTamperedCookie: a session cookie changed in any way, or made
// up, or sealed under another server's key, is nobody's.
func TestAttackTamperedCookie(t *testing.T) {
	w := newWorld(t, options{})
	b := w.browser()
	b.signIn("bob", "/")
	good := b.cookie()
	if good == "" {
		t.Fatal("no session cookie")
	}
	other, _ := session.NewKeys([]byte("another server's key, 32 bytes or more"))
	forged, _ := other.Encode(session.Session{ID: "x", Forge: "github", Login: "alice", Expires: w.clock.Now().Add(time.Hour)})
	for name, v := range map[string]string{
		"a byte changed":   good[:len(good)/2] + string(rune('A'+(good[len(good)/2]-'A'+1)%26)) + good[len(good)/2+1:],
		"truncated":        good[:len(good)-2],
		"another server's": forged,
		"made up":          "v1.eyJ1c2VyIjoiYWxpY2UifQ.c2lnbmF0dXJl",
	} {
		b.setCookie(v)
		if user, _ := b.who(); user != "" {
			t.Errorf("%s cookie: Who = %q, want nobody", name, user)
		}
	}
}

// TestSignOut: signing out needs the page's token, and then the browser
// holds no session.
func TestSignOut(t *testing.T) {
	w := newWorld(t, options{})
	b := w.browser()
	b.signIn("alice", "/")
	if code, _, _ := b.post("/logout", url.Values{"csrf": {"wrong"}}); code != http.StatusForbidden {
		t.Errorf("sign-out with a wrong token: %d, want 403", code)
	}
	if user, _ := b.who(); user != "github:alice" {
		t.Fatalf("signed out by a forged sign-out")
	}
	_, csrf := b.who()
	if code, loc, _ := b.post("/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || loc != "/" {
		t.Errorf("sign-out: %d to %q, want 303 to /", code, loc)
	}
	if user, _ := b.who(); user != "" {
		t.Errorf("Who after sign-out = %q", user)
	}
}

// TestCanRead: without --private everyone reads everything; with it,
// nobody without a session, and a private repository only those the
// forge shows it to.
func TestCanRead(t *testing.T) {
	open := newWorld(t, options{})
	if !open.auth.CanRead(httptest.NewRequest("GET", "/", nil), repo) {
		t.Error("a stranger cannot read a repository without --private")
	}

	w := newWorld(t, options{private: true})
	const secret = "octo/secret"
	w.gh.SetPrivate(secret)
	w.gh.SetPermission(secret, "bob", "read")
	nobody := httptest.NewRequest("GET", "/", nil)
	stranger, reader := w.browser(), w.browser()
	stranger.signIn("carol", "/")
	reader.signIn("bob", "/")
	for _, tt := range []struct {
		who  string
		r    *http.Request
		repo string
		want bool
	}{
		{"nobody", nobody, repo, false},
		{"nobody", nobody, secret, false},
		{"a stranger", stranger.request("GET", "/", nil), repo, true},
		{"a stranger", stranger.request("GET", "/", nil), secret, false},
		{"a reader", reader.request("GET", "/", nil), secret, true},
	} {
		if got := w.auth.CanRead(tt.r, tt.repo); got != tt.want {
			t.Errorf("CanRead(%s, %s) = %v, want %v", tt.who, tt.repo, got, tt.want)
		}
	}

	// A session from before the server went private holds no token to
	// ask with: it is nobody's.
	old, _ := w.keys.Encode(session.Session{ID: "before", Forge: "github", Login: "bob", Expires: w.clock.Now().Add(time.Hour)})
	tokenless := w.browser()
	tokenless.setCookie(old)
	if user, _ := tokenless.who(); user != "" || w.auth.CanRead(tokenless.request("GET", "/", nil), secret) {
		t.Errorf("a session without a token under --private: Who %q, or it reads", user)
	}

	// The answer is kept briefly: one page lists many tasks of one
	// repository. After ReadTTL the forge is asked again, and a revoked
	// read access counts.
	asks := func() int {
		n := 0
		for _, r := range w.gh.Requests() {
			if r.Path == "/repos/"+secret {
				n++
			}
		}
		return n
	}
	before := asks()
	for range 5 {
		w.auth.CanRead(reader.request("GET", "/", nil), secret)
	}
	if asks() != before {
		t.Errorf("the forge was asked %d more times within ReadTTL", asks()-before)
	}
	w.gh.SetPermission(secret, "bob", "")
	w.clock.Advance(time.Minute)
	if w.auth.CanRead(reader.request("GET", "/", nil), secret) {
		t.Error("a revoked reader still reads after ReadTTL")
	}
}
