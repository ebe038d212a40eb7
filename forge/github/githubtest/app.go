package githubtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// app is the GitHub App the server plays, once EnableApp was called.
type app struct {
	id, installation int64
	key              *rsa.PublicKey
	ttl              time.Duration
	tokens           map[string]issued
	// owners maps an account (lower case) to its installation, for
	// SetInstallation.
	owners map[string]int64
}

type issued struct {
	expiry       time.Time
	installation int64
}

// EnableApp makes the server accept JWTs of GitHub App appID signed with
// the private half of key, trade them for installation tokens of
// installationID that live ttl (GitHub: an hour) on POST
// /app/installations/{id}/access_tokens, and accept those tokens like the
// server's token.
func (s *Server) EnableApp(appID, installationID int64, key *rsa.PublicKey, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app = &app{id: appID, installation: installationID, key: key, ttl: ttl, tokens: map[string]issued{}, owners: map[string]int64{}}
}

// SetInstallation installs the App (EnableApp first) on account owner as
// installation id: GET /repos/OWNER/REPO/installation and
// /orgs/OWNER/installation answer it, and that installation's tokens, and
// only those, are accepted on OWNER's repositories.
func (s *Server) SetInstallation(owner string, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app.owners[strings.ToLower(owner)] = id
}

// installationOf mimics GET /repos/{owner}/{repo}/installation and
// /orgs/{owner}/installation, which need the App's JWT.
func (s *Server) installationOf(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.app
	var id int64
	if a != nil {
		id = a.owners[strings.ToLower(r.PathValue("owner"))]
	}
	s.mu.Unlock()
	if a == nil || id == 0 {
		s.answer(w, r, http.StatusNotFound, nil, errorBody("Not Found", "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app"))
		return
	}
	jwt, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if err := a.verify(jwt, time.Now()); err != nil {
		s.answer(w, r, http.StatusUnauthorized, nil, errorBody("A JSON web token could not be decoded: "+err.Error(), ""))
		return
	}
	s.answer(w, r, http.StatusOK, nil, map[string]any{"id": id, "app_id": a.id, "account": map[string]any{"login": r.PathValue("owner")}})
}

// InstallationTokens returns how many installation tokens were issued.
func (s *Server) InstallationTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.app == nil {
		return 0
	}
	return len(s.app.tokens)
}

// appToken reports whether the Authorization header a carries a live
// installation token, of the installation on the account r addresses if
// SetInstallation named one.
func (s *Server) appToken(a string, r *http.Request) bool {
	tok, ok := strings.CutPrefix(a, "token ")
	if !ok {
		tok, ok = strings.CutPrefix(a, "Bearer ")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || s.app == nil {
		return false
	}
	t, ok := s.app.tokens[tok]
	if !ok || !time.Now().Before(t.expiry) {
		return false
	}
	owner := r.PathValue("owner")
	if owner == "" {
		owner = r.PathValue("org")
	}
	want, ok := s.app.owners[strings.ToLower(owner)]
	return !ok || want == t.installation
}

// accessToken mimics POST /app/installations/{id}/access_tokens.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.app
	s.mu.Unlock()
	if a == nil {
		s.answer(w, r, http.StatusNotFound, nil, errorBody("Not Found", ""))
		return
	}
	jwt, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if err := a.verify(jwt, time.Now()); err != nil {
		s.answer(w, r, http.StatusUnauthorized, nil, errorBody("A JSON web token could not be decoded: "+err.Error(), ""))
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	known := id == a.installation
	for _, x := range a.owners {
		known = known || id == x
	}
	s.mu.Unlock()
	if !known {
		s.answer(w, r, http.StatusNotFound, nil, errorBody("Not Found", ""))
		return
	}
	s.mu.Lock()
	s.nextID++
	tok := fmt.Sprintf("ghs_fake%04d", s.nextID)
	exp := time.Now().Add(a.ttl)
	a.tokens[tok] = issued{expiry: exp, installation: id}
	s.mu.Unlock()
	s.answer(w, r, http.StatusCreated, nil, map[string]any{"token": tok, "expires_at": exp.UTC().Format(time.RFC3339),
		"permissions": map[string]string{"statuses": "write", "contents": "read", "pull_requests": "read", "members": "read"}})
}

// verify checks an RS256 JWT as GitHub does: signed by the App's key,
// issued by the App, not expired, at most 10 minutes long.
func (a *app) verify(jwt string, now time.Time) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a JWT")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
	for i, v := range []any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, v) != nil {
			return fmt.Errorf("bad JWT part %d", i)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || hdr.Alg != "RS256" {
		return fmt.Errorf("want an RS256 signature")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(a.key, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("signature does not match the App's key")
	}
	switch {
	case claims.Iss != strconv.FormatInt(a.id, 10):
		return fmt.Errorf("issuer %q is not App %d", claims.Iss, a.id)
	case now.Unix() >= claims.Exp:
		return fmt.Errorf("expired")
	case claims.Exp-claims.Iat > 600+60:
		return fmt.Errorf("'Expiration time' claim ('exp') is too far in the future")
	}
	return nil
}
