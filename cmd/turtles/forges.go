package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/gitlab"
	"github.com/turtles-ci/turtles/hook"
)

// Forges turtles talks to (--forge).
const (
	forgeGitHub = "github"
	forgeGitLab = "gitlab"
)

// forgeFlags are the options that choose the forge and its credentials,
// beyond github-api and github-token-file.
var forgeFlags = []string{"forge", "gitlab-url", "gitlab-token-file", "github-app-id", "github-app-key-file", "github-installation-id"}

func forgeOptions() []option {
	return []option{
		opt("forge", "github or gitlab: where webhooks come from (/hook/FORGE) and statuses go", str(func(s *Settings) *string { return &s.Forge })),
		opt("gitlab-url", "GitLab instance URL, such as https://gitlab.example.com/", str(func(s *Settings) *string { return &s.GitLabURL })),
		opt("gitlab-token-file", "file holding the GitLab access token (api scope, Developer) for statuses and lookups (or set TURTLES_GITLAB_TOKEN)", str(func(s *Settings) *string { return &s.GitLabTokenFile })),
		opt("github-app-id", "GitHub App ID: authenticate as the App's installation instead of with a token (0: use the token)", num(func(s *Settings) *int { return &s.GitHubAppID })),
		opt("github-app-key-file", "PEM file holding the GitHub App's private key", str(func(s *Settings) *string { return &s.GitHubAppKeyFile })),
		opt("github-installation-id", "the GitHub App installation to act as (0: each repository owner's installation, looked up)", num(func(s *Settings) *int { return &s.GitHubInstallationID })),
	}
}

// addForgeFlags registers the forge options on a command that addFlags
// already gave --config.
func addForgeFlags(fs *pflag.FlagSet, names ...string) {
	if len(names) == 0 {
		names = forgeFlags
	}
	addOptions(fs, names...)
}

// validateForge checks the forge settings that need no file read.
func (s *Settings) validateForge() error {
	switch s.Forge {
	case forgeGitHub, forgeGitLab:
	default:
		return fmt.Errorf("forge: %q, want github or gitlab", s.Forge)
	}
	if s.GitHubAppID < 0 || s.GitHubInstallationID < 0 {
		return errors.New("github-app-id and github-installation-id must not be negative")
	}
	if s.GitHubAppID > 0 && s.GitHubAppKeyFile == "" {
		return errors.New("github-app-id needs github-app-key-file")
	}
	return nil
}

// newForge returns the forge statuses go to: GitLab or GitHub with the
// configured credentials, or, with none, a forge that only logs.
//
// client, if set, makes the HTTP client of the forge's API calls.
func newForge(s Settings, log *slog.Logger, client func(forge string) (*http.Client, error)) (forge.Forge, error) {
	if client == nil {
		client = func(string) (*http.Client, error) { return nil, nil }
	}
	ua := "turtles/" + buildVersion()
	if s.Forge == forgeGitLab {
		token, err := secret("TURTLES_GITLAB_TOKEN", s.GitLabTokenFile)
		if err != nil {
			return nil, err
		}
		if token == "" {
			log.Warn("no GitLab token (--gitlab-token-file or TURTLES_GITLAB_TOKEN): statuses are logged, not sent")
			return forge.Log{Log: log.With("part", "reporter")}, nil
		}
		hc, err := client(forgeGitLab)
		if err != nil {
			return nil, err
		}
		return gitlab.New(gitlab.Config{BaseURL: s.GitLabURL, Token: token, Log: log.With("part", "gitlab"), UserAgent: ua, HTTPClient: hc})
	}
	hc, err := client(forgeGitHub)
	if err != nil {
		return nil, err
	}
	if s.GitHubAppID > 0 {
		key, err := readAppKey(s.GitHubAppKeyFile)
		if err != nil {
			return nil, err
		}
		log.Info("authenticating to GitHub as an App installation", "app_id", s.GitHubAppID,
			"installation_id", s.GitHubInstallationID, "hint", "installation 0: each owner's installation is looked up")
		return github.New(github.Config{BaseURL: s.GitHubAPI, Log: log.With("part", "github"), UserAgent: ua, HTTPClient: hc,
			App: &github.App{ID: int64(s.GitHubAppID), InstallationID: int64(s.GitHubInstallationID), PrivateKey: key}})
	}
	token, err := secret("TURTLES_GITHUB_TOKEN", s.GitHubTokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" {
		log.Warn("no GitHub token (--github-token-file or TURTLES_GITHUB_TOKEN) or App (--github-app-id): statuses are logged, not sent")
		return forge.Log{Log: log.With("part", "reporter")}, nil
	}
	return github.New(github.Config{BaseURL: s.GitHubAPI, Token: token, Log: log.With("part", "github"), UserAgent: ua, HTTPClient: hc})
}

// readAppKey reads a GitHub App's PEM private key, checking its shape so
// that a wrong file fails at start, not at the first status.
func readAppKey(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("github app key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("github app key %s: not PEM", file)
	}
	if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
		if _, err2 := x509.ParsePKCS8PrivateKey(blk.Bytes); err2 != nil {
			return nil, fmt.Errorf("github app key %s: not an RSA private key", file)
		}
	}
	return b, nil
}

// webhookReceiver returns the receiver of --forge's webhooks and the path
// under /hook/ it is mounted at. Only that forge's is mounted: a GitLab
// delivery to a GitHub turtles would queue work whose statuses go nowhere.
func webhookReceiver(s Settings, cfg hook.Config) (string, http.Handler, error) {
	budget, err := hook.NewBudget(int64(s.WebhookBodyBudget), s.WebhookBodyWait)
	if err != nil {
		return "", nil, err
	}
	cfg.Budget = budget
	cfg.PublishTimeout = s.WebhookPublishTimeout
	if s.Forge == forgeGitLab {
		h, err := hook.NewGitLab(cfg)
		return forgeGitLab, h, err
	}
	h, err := hook.NewGitHub(cfg)
	return forgeGitHub, h, err
}
