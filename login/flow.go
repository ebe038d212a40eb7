package login

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles/session"
)

// The sign-in: GET /login sends the browser to the forge with a fresh
// state and a PKCE challenge, both kept in a short-lived sealed cookie;
// the forge sends it back to GET /oauth/{forge}/callback with a code,
// which is exchanged (with the PKCE verifier) for the person's token,
// which says who they are. The browser then goes back to where it was,
// a path on this server and nowhere else.

// flow is a sign-in in progress, sealed in the login cookie.
type flow struct {
	State    string `json:"state"`
	Verifier string `json:"verifier"`
	Forge    string `json:"forge"`
	Return   string `json:"return"`
}

const purposeLogin = "login"

func (a *Auth) start(w http.ResponseWriter, r *http.Request) {
	back, ok := safePath(r.URL.Query().Get("return"))
	if !ok {
		back = "/"
	}
	name := r.URL.Query().Get("forge")
	if name == "" && len(a.cfg.Providers) == 1 {
		name = a.cfg.Providers[0].Name
	}
	p := a.providers[name]
	if p == nil {
		a.choose(w, back)
		return
	}
	f := flow{State: random(), Verifier: oauth2.GenerateVerifier(), Forge: p.Name, Return: back}
	v, err := a.cfg.Keys.Seal(purposeLogin, f, a.cfg.Now().Add(a.cfg.LoginTTL))
	if err != nil {
		a.log.Error("seal a sign-in", "err", err)
		a.page(w, http.StatusInternalServerError, "Signing in failed on our side; see the server log.", "")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: v, Path: "/oauth/", MaxAge: int(a.cfg.LoginTTL / time.Second),
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, p.OAuth.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

// choose shows the forges to sign in with.
func (a *Auth) choose(w http.ResponseWriter, back string) {
	type choice struct{ Title, URL string }
	var cs []choice
	for _, p := range a.cfg.Providers {
		q := url.Values{"forge": {p.Name}, "return": {back}}
		cs = append(cs, choice{Title: p.Title, URL: "/login?" + q.Encode()})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTemplate.ExecuteTemplate(w, "choose", cs)
}

func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	// The flow is over whatever happens: its cookie goes.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/oauth/", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	again := "/login"
	c, err := r.Cookie(loginCookie)
	var f flow
	if err == nil {
		_, err = a.cfg.Keys.Open(purposeLogin, c.Value, a.cfg.Now(), &f)
	}
	p := a.providers[r.PathValue("forge")]
	q := r.URL.Query()
	switch {
	case err != nil:
		a.page(w, http.StatusBadRequest, "This sign-in was not started here, or took too long. Sign in again.", again)
		return
	case p == nil || f.Forge != p.Name:
		a.page(w, http.StatusBadRequest, "This sign-in was started with another forge. Sign in again.", again)
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1:
		// Another sign-in's answer, or a forged one (login CSRF).
		a.log.Warn("sign-in answer with a state this browser did not send", "forge", p.Name)
		a.page(w, http.StatusBadRequest, "This sign-in answer does not belong to the sign-in this browser started. Sign in again.", again)
		return
	case q.Get("error") != "":
		a.page(w, http.StatusForbidden, p.Title+" did not sign you in ("+q.Get("error")+").", again)
		return
	case q.Get("code") == "":
		a.page(w, http.StatusBadRequest, p.Title+" sent no code. Sign in again.", again)
		return
	}
	ctx := r.Context()
	if a.cfg.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, a.cfg.HTTPClient)
	}
	tok, err := p.OAuth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		a.log.Warn("OAuth code exchange failed", "forge", p.Name, "err", err)
		a.page(w, http.StatusBadGateway, p.Title+" did not take the sign-in code. Sign in again.", again)
		return
	}
	acc, err := p.Account(tok.AccessToken)
	var name string
	if err == nil {
		name, err = acc.Login(ctx)
	}
	if err != nil {
		a.log.Warn("cannot ask the forge who signed in", "forge", p.Name, "err", err)
		a.page(w, http.StatusBadGateway, p.Title+" did not say who you are. Sign in again.", again)
		return
	}
	now := a.cfg.Now()
	s := session.Session{ID: session.NewID(), Forge: p.Name, Login: name, Expires: now.Add(a.cfg.SessionTTL)}
	if a.cfg.Private {
		// What the forge shows this person is asked with their token.
		s.Token = tok.AccessToken
		if !tok.Expiry.IsZero() && tok.Expiry.Before(s.Expires) {
			s.Expires = tok.Expiry
		}
	}
	v, err := a.cfg.Keys.Encode(s)
	if err != nil {
		a.log.Error("seal a session", "err", err)
		a.page(w, http.StatusInternalServerError, "Signing in failed on our side; see the server log.", "")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: a.sessionCookieName(), Value: v, Path: "/", Expires: s.Expires,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	a.log.Info("signed in", "user", s.User(), "until", s.Expires)
	back, ok := safePath(f.Return)
	if !ok {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// logout ends the session on this browser. It needs the CSRF token too:
// a stranger's page must not sign people out.
func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.session(r); ok {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if !a.sameOrigin(r) || !a.cfg.Keys.CheckCSRF(s, r.PostFormValue("csrf")) {
			a.page(w, http.StatusForbidden, "This sign-out did not come from a page of this server.", "/")
			return
		}
		a.log.Info("signed out", "user", s.User())
	}
	http.SetCookie(w, &http.Cookie{Name: a.sessionCookieName(), Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// maxReturn bounds a return path.
const maxReturn = 2048

// safePath returns p if it is a path on this server (an absolute path,
// with its query), for redirects: anything a browser could take to
// another origin ("//evil", "/\evil", "https://evil", "javascript:") or
// that hides characters is refused.
func safePath(p string) (string, bool) {
	if p == "" || len(p) > maxReturn || p[0] != '/' {
		return "", false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return "", false
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '\\' || r >= 0x80 }) {
		return "", false
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	// A path whose decoding starts with "//" or "/\" is another origin to
	// some servers and proxies.
	if len(u.Path) > 1 && (u.Path[1] == '/' || u.Path[1] == '\\') || strings.Contains(u.Path, "\\") {
		return "", false
	}
	out := u.EscapedPath()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out, true
}

// random is a fresh unguessable token.
func random() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand docs)
	return base64.RawURLEncoding.EncodeToString(b)
}

var pageTemplate = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · turtles</title></head><body>{{end}}
{{define "message"}}{{template "head" "turtles"}}
<main><p role="alert">{{.Message}}</p>{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}</main>
</body></html>{{end}}
{{define "choose"}}{{template "head" "Sign in"}}
<main><h1>Sign in</h1><ul>{{range .}}<li><a href="{{.URL}}">with {{.Title}}</a></li>{{end}}</ul></main>
</body></html>{{end}}`))

// page answers code with a message for people and a link to go on.
func (a *Auth) page(w http.ResponseWriter, code int, msg, link string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	text := "Go back"
	if link == "/login" {
		text = "Sign in"
	}
	pageTemplate.ExecuteTemplate(w, "message", map[string]string{"Message": msg, "Link": link, "LinkText": text})
}
