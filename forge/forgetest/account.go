package forgetest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles/forge"
)

// The contract of forge.Account and of a forge's OAuth endpoints: the
// dashboard's login, against a backend's fake API.

// AccountEnv is one backend's Account under test, on a fresh fake.
type AccountEnv struct {
	// New returns the backend's Account for a person's token.
	New func(token string) (forge.Account, error)
	// Endpoint is the backend's OAuth endpoints (its OAuthEndpoint) on
	// the fake.
	Endpoint oauth2.Endpoint
	// OAuth is the fake's authorization server.
	OAuth *OAuth
	Fake  AccountFake
	// Repo is a repository name valid for the backend.
	Repo string
}

// AccountFake sets up repositories on a backend's fake.
type AccountFake interface {
	// MakePrivate makes repo visible only to those granted access.
	MakePrivate(repo string)
	// GrantRead gives user read access to repo.
	GrantRead(repo, user string)
}

// RunAccount runs the suite; newEnv returns a fresh backend for each
// subtest.
func RunAccount(t *testing.T, newEnv func(t *testing.T) AccountEnv) {
	ctx := context.Background()
	account := func(t *testing.T, e AccountEnv, token string) forge.Account {
		t.Helper()
		a, err := e.New(token)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	t.Run("web flow with PKCE", func(t *testing.T) {
		e := newEnv(t)
		const callback = "https://ci.example/oauth/forge/callback"
		e.OAuth.AddClient("app", "app-secret", callback)
		e.OAuth.SignIn("alice")
		cfg := oauth2.Config{ClientID: "app", ClientSecret: "app-secret", Endpoint: e.Endpoint, RedirectURL: callback}
		verifier := oauth2.GenerateVerifier()
		code := authorize(t, cfg.AuthCodeURL("the-state", oauth2.S256ChallengeOption(verifier)), "the-state")
		if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption("another verifier, not the one challenged")); err == nil {
			t.Error("Exchange with the wrong PKCE verifier succeeded")
		}
		code = authorize(t, cfg.AuthCodeURL("the-state", oauth2.S256ChallengeOption(verifier)), "the-state")
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Error("a code was exchanged twice")
		}
		login, err := account(t, e, tok.AccessToken).Login(ctx)
		if err != nil || login != "alice" {
			t.Errorf("Login = %q, %v; want alice", login, err)
		}
	})
	t.Run("revoked token is permanent", func(t *testing.T) {
		e := newEnv(t)
		tok := e.OAuth.Issue("alice")
		e.OAuth.Revoke(tok)
		a := account(t, e, tok)
		if _, err := a.Login(ctx); !errors.Is(err, forge.ErrPermanent) {
			t.Errorf("Login with a revoked token = %v, want ErrPermanent", err)
		}
		if _, err := a.CanRead(ctx, e.Repo); !errors.Is(err, forge.ErrPermanent) {
			t.Errorf("CanRead with a revoked token = %v, want ErrPermanent", err)
		}
	})
	t.Run("read access", func(t *testing.T) {
		e := newEnv(t)
		stranger := account(t, e, e.OAuth.Issue("stranger"))
		reader := account(t, e, e.OAuth.Issue("reader"))
		if ok, err := stranger.CanRead(ctx, e.Repo); err != nil || !ok {
			t.Errorf("CanRead of a public repository by a stranger = %v, %v; want true", ok, err)
		}
		e.Fake.MakePrivate(e.Repo)
		e.Fake.GrantRead(e.Repo, "reader")
		if ok, err := stranger.CanRead(ctx, e.Repo); err != nil || ok {
			t.Errorf("CanRead of a private repository by a stranger = %v, %v; want false", ok, err)
		}
		if ok, err := reader.CanRead(ctx, e.Repo); err != nil || !ok {
			t.Errorf("CanRead of a private repository by a reader = %v, %v; want true", ok, err)
		}
		if _, err := reader.CanRead(ctx, "../../user"); !errors.Is(err, forge.ErrPermanent) {
			t.Errorf("CanRead of a bad name = %v, want ErrPermanent", err)
		}
	})
	t.Run("empty token", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.New(""); err == nil {
			t.Error("an account without a token")
		}
	})
}

// authorize follows the authorization URL as a browser would, up to the
// redirect back to the client, and returns the code in it after checking
// the state came back.
func authorize(t *testing.T, authURL, state string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s, want a redirect", resp.Status)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Query().Get("state"); got != state {
		t.Fatalf("state came back as %q, want %q", got, state)
	}
	code := back.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", back)
	}
	return code
}
