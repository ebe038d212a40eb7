package github_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

// appKey is one RSA key for every App test: generating one costs ~100 ms.
var appKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func pemOf(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func TestAppAuth(t *testing.T) {
	ctx := context.Background()
	st := forge.Status{Context: "lint", State: forge.Success, Description: "ok"}
	t.Run("statuses and lookups with installation tokens", func(t *testing.T) {
		srv := githubtest.NewServer(t, "not-the-app-token")
		// Tokens that expire within the library's one-minute margin are
		// renewed before every use: three requests, three tokens.
		srv.EnableApp(1234, 99, &appKey.PublicKey, 30*time.Second)
		c, err := github.New(github.Config{BaseURL: srv.URL, App: &github.App{ID: 1234, InstallationID: 99, PrivateKey: pemOf(appKey)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetStatus(ctx, "octo/hello", sha, st); err != nil {
			t.Fatalf("SetStatus: %v", err)
		}
		srv.SetPermission("octo/hello", "maint", "write")
		if ok, err := c.CanPush(ctx, "octo/hello", "maint"); err != nil || !ok {
			t.Fatalf("CanPush = %v, %v", ok, err)
		}
		if got := srv.InstallationTokens(); got != 2 {
			t.Errorf("%d installation tokens issued, want 2 (short-lived ones are renewed)", got)
		}
		var tokenReqs, apiReqs int
		for _, r := range srv.Requests() {
			a := r.Header.Get("Authorization")
			switch {
			case strings.HasPrefix(r.Path, "/app/installations/99/access_tokens"):
				tokenReqs++
				if !strings.HasPrefix(a, "Bearer ey") {
					t.Errorf("token request authorized with %q, want the App's JWT", a)
				}
			default:
				apiReqs++
				if !strings.HasPrefix(a, "token ghs_fake") {
					t.Errorf("%s %s authorized with %q, want the installation token", r.Method, r.Path, a)
				}
			}
		}
		if tokenReqs != 2 || apiReqs != 2 {
			t.Errorf("%d token and %d API requests, want 2 and 2", tokenReqs, apiReqs)
		}
	})
	t.Run("long-lived token is reused", func(t *testing.T) {
		srv := githubtest.NewServer(t, "x")
		srv.EnableApp(1234, 99, &appKey.PublicKey, time.Hour)
		c, err := github.New(github.Config{BaseURL: srv.URL + "/", App: &github.App{ID: 1234, InstallationID: 99, PrivateKey: pemOf(appKey)}})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := c.SetStatus(ctx, "octo/hello", sha, st); err != nil {
				t.Fatal(err)
			}
		}
		if got := srv.InstallationTokens(); got != 1 {
			t.Errorf("%d installation tokens issued for 3 statuses, want 1", got)
		}
	})
	t.Run("wrong key is permanent", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		srv := githubtest.NewServer(t, "x")
		srv.EnableApp(1234, 99, &appKey.PublicKey, time.Hour)
		c, err := github.New(github.Config{BaseURL: srv.URL, App: &github.App{ID: 1234, InstallationID: 99, PrivateKey: pemOf(other)}})
		if err != nil {
			t.Fatal(err)
		}
		err = c.SetStatus(ctx, "octo/hello", sha, st)
		if !errors.Is(err, forge.ErrPermanent) {
			t.Errorf("SetStatus with the wrong key: %v, want a permanent error", err)
		}
		if len(srv.Statuses()) != 0 {
			t.Errorf("statuses set with a wrong key: %+v", srv.Statuses())
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error shows the key: %v", err)
		}
	})
	t.Run("installation of each account looked up", func(t *testing.T) {
		srv := githubtest.NewServer(t, "x")
		srv.EnableApp(1234, 0, &appKey.PublicKey, time.Hour)
		srv.SetInstallation("octo", 11)
		srv.SetInstallation("Acme", 22)
		srv.AddMember("acme", "wile")
		c, err := github.New(github.Config{BaseURL: srv.URL, App: &github.App{ID: 1234, PrivateKey: pemOf(appKey)}})
		if err != nil {
			t.Fatal(err)
		}
		for _, repo := range []string{"octo/hello", "acme/rockets", "octo/world", "ACME/anvils"} {
			if err := c.SetStatus(ctx, repo, sha, st); err != nil {
				t.Fatalf("SetStatus on %s: %v", repo, err)
			}
		}
		if ok, err := c.IsMember(ctx, "acme", "wile"); err != nil || !ok {
			t.Errorf("IsMember(acme, wile) = %v, %v", ok, err)
		}
		if n := srv.InstallationTokens(); n != 2 {
			t.Errorf("%d installation tokens, want one per account", n)
		}
		lookups := 0
		for _, r := range srv.Requests() {
			if strings.HasSuffix(r.Path, "/installation") {
				lookups++
			}
		}
		if lookups != 2 {
			t.Errorf("%d installation lookups, want one per account", lookups)
		}
		err = c.SetStatus(ctx, "stranger/repo", sha, st)
		if !errors.Is(err, forge.ErrPermanent) {
			t.Errorf("SetStatus where the App is not installed: %v, want a permanent error", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for name, cfg := range map[string]github.Config{
			"token and app":    {Token: "t", App: &github.App{ID: 1, InstallationID: 2, PrivateKey: pemOf(appKey)}},
			"no App ID":        {App: &github.App{InstallationID: 2, PrivateKey: pemOf(appKey)}},
			"bad installation": {App: &github.App{ID: 1, InstallationID: -1, PrivateKey: pemOf(appKey)}},
			"not a key":        {App: &github.App{ID: 1, InstallationID: 2, PrivateKey: []byte("hello")}},
		} {
			if _, err := github.New(cfg); err == nil {
				t.Errorf("%s: New succeeded", name)
			}
		}
	})
}
