package forgetest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"sync"
)

// OAuth is a fake OAuth 2 authorization server of a forge, as the fake
// APIs (githubtest, gitlabtest) mount it: the authorization code flow
// with PKCE (S256), a registered redirect URL per client, single-use codes
// and the access tokens it issued. The person at the browser is whoever
// SignIn says: the fake asks no password and shows no consent page, it
// redirects at once, as a forge does for an app the person approved
// before. It is strict where a real forge is, so that a client that
// would fail against one fails here: a redirect_uri other than the
// registered one, a code used twice or by another client, a missing or
// wrong code_verifier are refused.
//
// Its methods are safe for concurrent use.
type OAuth struct {
	mu       sync.Mutex
	clients  map[string]oauthClient
	signedIn string
	codes    map[string]*grant
	tokens   map[string]string // access token -> login
	// Exchanged counts successful token exchanges.
	exchanged int
}

type oauthClient struct{ secret, redirect string }

type grant struct {
	client, redirect, challenge, login string
	used                               bool
}

// NewOAuth returns a fake authorization server with no clients.
func NewOAuth() *OAuth {
	return &OAuth{clients: map[string]oauthClient{}, codes: map[string]*grant{}, tokens: map[string]string{}}
}

// AddClient registers an application: its client ID and secret, and the
// one callback URL the forge redirects to.
func (o *OAuth) AddClient(id, secret, redirect string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clients[id] = oauthClient{secret: secret, redirect: redirect}
}

// SignIn makes login the person signed in to the forge in the browser;
// "" signs out, after which authorization is denied.
func (o *OAuth) SignIn(login string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.signedIn = login
}

// Issue returns a new access token of login, as if login had gone
// through the flow.
func (o *OAuth) Issue(login string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.issueLocked(login)
}

func (o *OAuth) issueLocked(login string) string {
	tok := "oauth-" + randomHex()
	o.tokens[tok] = login
	return tok
}

// Revoke makes token worthless, as a person revoking the app does.
func (o *OAuth) Revoke(token string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.tokens, token)
}

// Exchanged counts the codes exchanged for tokens.
func (o *OAuth) Exchanged() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.exchanged
}

// Who returns the login of a request's bearer token (Authorization:
// Bearer or token), and whether the token is one this server issued.
func (o *OAuth) Who(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	var tok string
	for _, p := range []string{"Bearer ", "bearer ", "token "} {
		if len(a) > len(p) && a[:len(p)] == p {
			tok = a[len(p):]
		}
	}
	if tok == "" {
		return "", false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	login, ok := o.tokens[tok]
	return login, ok
}

// Authorize serves the authorization endpoint (GET): with a known client,
// its registered redirect URL, response_type=code and an S256 PKCE
// challenge, it redirects the browser back with a code for the person
// signed in and the state given; otherwise it answers 400 and redirects
// nowhere, as forges do for a wrong redirect URL.
func (o *OAuth) Authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o.mu.Lock()
	c, known := o.clients[q.Get("client_id")]
	login := o.signedIn
	o.mu.Unlock()
	switch {
	case !known:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case q.Get("redirect_uri") != "" && q.Get("redirect_uri") != c.redirect:
		http.Error(w, "The redirect_uri is not associated with this application.", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) < 43:
		http.Error(w, "PKCE with S256 is required", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(c.redirect)
	bq := back.Query()
	if st := q.Get("state"); st != "" {
		bq.Set("state", st)
	}
	if login == "" {
		bq.Set("error", "access_denied")
	} else {
		code := randomHex()
		o.mu.Lock()
		o.codes[code] = &grant{client: q.Get("client_id"), redirect: c.redirect, challenge: q.Get("code_challenge"), login: login}
		o.mu.Unlock()
		bq.Set("code", code)
	}
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// Token serves the token endpoint (POST, form): it exchanges a code once,
// for the client it was issued to, with its redirect URL and the PKCE
// verifier of its challenge.
func (o *OAuth) Token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	c, known := o.clients[id]
	g := o.codes[f.Get("code")]
	switch {
	case !known || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1:
		tokenError(w, "invalid_client")
	case f.Get("grant_type") != "authorization_code" || g == nil || g.used || g.client != id:
		tokenError(w, "invalid_grant")
	case f.Get("redirect_uri") != "" && f.Get("redirect_uri") != g.redirect:
		tokenError(w, "invalid_grant")
	case challengeOf(f.Get("code_verifier")) != g.challenge:
		tokenError(w, "invalid_grant")
	default:
		g.used = true
		o.exchanged++
		WriteJSON(w, http.StatusOK, nil, "application/json", map[string]any{
			"access_token": o.issueLocked(g.login), "token_type": "bearer", "scope": ""})
		return
	}
	// A used code is burnt for good.
	if g != nil {
		g.used = true
	}
}

func tokenError(w http.ResponseWriter, code string) {
	WriteJSON(w, http.StatusBadRequest, nil, "application/json", map[string]string{"error": code})
}

// challengeOf is PKCE's S256 challenge of verifier; "" has none.
func challengeOf(verifier string) string {
	if verifier == "" {
		return "\x00none"
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomHex() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
