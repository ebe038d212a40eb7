package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/gitlab"
	"github.com/turtles-ci/turtles/login"
	"github.com/turtles-ci/turtles/session"
	"github.com/turtles-ci/turtles/web"
)

// The dashboard's sign-in and actions (package login), for the processes
// that serve the pages: serve and reporter. docs/dashboard-login.md says
// how to register the OAuth application.

// loginFlags are the options of sign-in.
var loginFlags = []string{"oauth-github-client-id", "oauth-github-client-secret-file", "oauth-gitlab-client-id",
	"oauth-gitlab-client-secret-file", "session-key-file", "private"}

func loginOptions() []option {
	return []option{
		opt("oauth-github-client-id", "client ID of the GitHub OAuth App (or GitHub App) people sign in to the dashboard with; callback PUBLIC-URL/oauth/github/callback. Unset: no sign-in, no actions", str(func(s *Settings) *string { return &s.OAuthGitHubClientID })),
		opt("oauth-github-client-secret-file", "file holding that application's client secret (or set TURTLES_OAUTH_GITHUB_CLIENT_SECRET)", str(func(s *Settings) *string { return &s.OAuthGitHubClientSecretFile })),
		opt("oauth-gitlab-client-id", "application ID of the GitLab OAuth application people sign in to the dashboard with; callback PUBLIC-URL/oauth/gitlab/callback. Unset: no sign-in, no actions", str(func(s *Settings) *string { return &s.OAuthGitLabClientID })),
		opt("oauth-gitlab-client-secret-file", "file holding that application's secret (or set TURTLES_OAUTH_GITLAB_CLIENT_SECRET)", str(func(s *Settings) *string { return &s.OAuthGitLabClientSecretFile })),
		opt("session-key-file", "file of the keys that sign dashboard sessions, one per line, at least 32 bytes each: the first signs, the others still open (rotation); or set TURTLES_SESSION_KEY. Default: generated in DATA-DIR/session-key; give every replica the same", str(func(s *Settings) *string { return &s.SessionKeyFile })),
		opt("private", "reading the dashboard and the API needs a sign-in, and a repository's tasks and logs are shown only to those the forge shows the repository to", boolean(func(s *Settings) *bool { return &s.Private })),
	}
}

// How long a sign-in lasts, how long a person may take at the forge to
// sign in, and how long the forge's answer to "may this person read this
// repository" is kept: a working day; a login page left open over
// coffee; a page load and its updates, while a revoked access counts
// within a minute.
const (
	sessionTTL = 12 * time.Hour
	loginTTL   = 10 * time.Minute
	readTTL    = time.Minute
)

func (s *Settings) validateLogin() error {
	other := map[string]string{forgeGitHub: s.OAuthGitLabClientID, forgeGitLab: s.OAuthGitHubClientID}[s.Forge]
	if other != "" {
		// Who may act is asked of the forge the repositories are on.
		return fmt.Errorf("oauth-%s-client-id: this turtles runs with --forge %s; sign-in is with the forge of the repositories", map[string]string{forgeGitHub: "gitlab", forgeGitLab: "github"}[s.Forge], s.Forge)
	}
	if s.Private && s.oauthClientID() == "" {
		return fmt.Errorf("private: needs a sign-in: --oauth-%s-client-id", s.Forge)
	}
	return nil
}

// oauthClientID is the OAuth client of --forge, "" without one.
func (s Settings) oauthClientID() string {
	if s.Forge == forgeGitLab {
		return s.OAuthGitLabClientID
	}
	return s.OAuthGitHubClientID
}

// cloneBase is where repositories are cloned from when turtles names the
// URL itself (the scanner, the dashboard's reruns): --clone-base-url, or
// for GitLab its instance.
func (s Settings) cloneBase() string {
	if s.Forge == forgeGitLab && s.CloneBaseURL == defaults().CloneBaseURL {
		return s.GitLabURL // GitLab's default, as github.com is GitHub's
	}
	return s.CloneBaseURL
}

// newAuth builds the dashboard's sign-in and actions, or nil when no
// OAuth client is configured: then the pages show no buttons.
func (sys *system) newAuth() (web.Auth, error) {
	s := sys.s
	id := s.oauthClientID()
	if id == "" {
		return nil, nil
	}
	env, file := "TURTLES_OAUTH_GITHUB_CLIENT_SECRET", s.OAuthGitHubClientSecretFile
	if s.Forge == forgeGitLab {
		env, file = "TURTLES_OAUTH_GITLAB_CLIENT_SECRET", s.OAuthGitLabClientSecretFile
	}
	clientSecret, err := secret(env, file)
	if err != nil {
		return nil, fmt.Errorf("oauth client secret: %w", err)
	}
	if clientSecret == "" {
		return nil, fmt.Errorf("oauth-%s-client-id needs its secret: --oauth-%s-client-secret-file or %s", s.Forge, s.Forge, env)
	}
	keys, keyPath, err := sessionKeys(s)
	if err != nil {
		return nil, err
	}
	ua := "turtles/" + buildVersion()
	hc := &http.Client{Timeout: 30 * time.Second}
	p := login.Provider{Name: s.Forge, OAuth: oauth2.Config{ClientID: id, ClientSecret: clientSecret}}
	if s.Forge == forgeGitLab {
		p.Title = "GitLab"
		if p.OAuth.Endpoint, err = gitlab.OAuthEndpoint(s.GitLabURL); err != nil {
			return nil, err
		}
		// Who someone is needs read_user; whether they see a private
		// project, read_api.
		p.OAuth.Scopes = []string{"read_user"}
		if s.Private {
			p.OAuth.Scopes = []string{"read_api"}
		}
		p.Account = func(token string) (forge.Account, error) {
			return gitlab.NewAccount(gitlab.AccountConfig{BaseURL: s.GitLabURL, Token: token, HTTPClient: hc, UserAgent: ua})
		}
	} else {
		p.Title = "GitHub"
		if p.OAuth.Endpoint, err = github.OAuthEndpoint(s.GitHubAPI); err != nil {
			return nil, err
		}
		// Who someone is needs no scope. An OAuth App's token sees a
		// private repository only with repo; a GitHub App's token is
		// bounded by the App's permissions and ignores scopes.
		if s.Private {
			p.OAuth.Scopes = []string{"repo"}
		}
		p.Account = func(token string) (forge.Account, error) {
			return github.NewAccount(github.AccountConfig{BaseURL: s.GitHubAPI, Token: token, HTTPClient: hc, UserAgent: ua})
		}
	}
	if lookup, ok := sys.Forge.Get().(forge.Lookup); ok {
		p.Push = lookup
	} else {
		sys.log.Warn("no forge credentials: people may sign in to the dashboard, but none may act, since the forge cannot be asked who may push")
	}
	cfg := login.Config{
		Providers:  []login.Provider{p},
		Keys:       keys,
		PublicURL:  s.PublicURL,
		Private:    s.Private,
		SessionTTL: sessionTTL, LoginTTL: loginTTL, ReadTTL: readTTL,
		History:    sys.State.Get(),
		Queue:      sys.Queue.Get(),
		CloneURL:   func(repo string) string { return strings.TrimRight(s.cloneBase(), "/") + "/" + repo + ".git" },
		Pool:       s.Pool,
		HTTPClient: hc,
		Log:        sys.log.With("part", "login"),
	}
	if g, ok := sys.Gate.GetOK(); ok {
		cfg.Gate = g
	}
	a, err := login.New(cfg)
	if err != nil {
		return nil, err
	}
	sys.log.Info("dashboard sign-in with "+p.Title, "callback", a.Callback(p.Name), "session_keys", keyPath, "private", s.Private)
	return a, nil
}

var _ web.Auth = (*login.Auth)(nil)

// sessionKeys reads the session keys, or generates one in the data dir
// on first start so that sign-in works with no more flags than the OAuth
// client's.
func sessionKeys(s Settings) (*session.Keys, string, error) {
	v, err := secret("TURTLES_SESSION_KEY", s.SessionKeyFile)
	if err != nil {
		return nil, "", fmt.Errorf("session key: %w", err)
	}
	if v != "" {
		k, err := session.ParseKeys([]byte(v))
		if err != nil {
			return nil, "", fmt.Errorf("session-key-file: %w", err)
		}
		return k, s.SessionKeyFile, nil
	}
	path := filepath.Join(s.DataDir, "session-key")
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		k, err := session.ParseKeys(b)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		return k, path, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("session key: %w", err)
	}
	buf := make([]byte, 32)
	rand.Read(buf)
	v = hex.EncodeToString(buf)
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("create %s: %w", s.DataDir, err)
	}
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return nil, "", fmt.Errorf("write generated session key: %w", err)
	}
	k, err := session.NewKeys([]byte(v))
	return k, path, err
}

// boolean is a setting that is on or off; --NAME alone turns it on.
func boolean(p func(*Settings) *bool) binding {
	return bind(p, func(v *bool) pflag.Value { return (*boolValue)(v) })
}

type boolValue bool

func (v *boolValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		*v = true
	case "false", "0", "no", "off":
		*v = false
	default:
		return fmt.Errorf("want true or false, got %q", s)
	}
	return nil
}
func (v *boolValue) String() string {
	if *v {
		return "true"
	}
	return "false"
}
func (v *boolValue) Type() string { return "bool" }

// IsBoolFlag lets --NAME stand for --NAME=true.
func (v *boolValue) IsBoolFlag() bool { return true }
