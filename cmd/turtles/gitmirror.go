package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/gitmirror"
	"github.com/turtles-ci/turtles/state"
)

// gitMirrorBotFlags are what a bot needs to fetch through the mirror.
var gitMirrorBotFlags = []string{"git-mirror", "git-mirror-token-file"}

func gitMirrorOptions() []option {
	return []option{
		opt("git-mirror", "URL of a turtles git-mirror (http://git-mirror:8080): bots fetch commits from it instead of the forge; default: from the task's clone URL", str(func(s *Settings) *string { return &s.GitMirror })),
		opt("git-mirror-token-file", "file holding the bearer token of the git mirror, shared by the mirror and its bots (or set TURTLES_GIT_MIRROR_TOKEN); hidden from tasks", str(func(s *Settings) *string { return &s.GitMirrorTokenFile })),
		opt("git-mirror-dir", "where turtles git-mirror keeps its bare mirrors (default DATA-DIR/git-mirror)", str(func(s *Settings) *string { return &s.GitMirrorDir })),
		opt("git-mirror-interval", "how long a mirrored repository is fresh: a request for an older copy fetches from the forge first", dur(func(s *Settings) *time.Duration { return &s.GitMirrorInterval })),
		opt("git-mirror-fetch-timeout", "the longest one fetch from the forge may take", dur(func(s *Settings) *time.Duration { return &s.GitMirrorFetchTimeout })),
		opt("git-mirror-max-size", "the most disk one mirrored repository may take, such as 4GiB; a fetch past it is stopped and the copy dropped", byteSize(func(s *Settings) *ByteSize { return &s.GitMirrorMaxSize })),
	}
}

// gitMirrorDefaults: fresh for 15 seconds (a plan's many test tasks share
// one fetch; a push is seen at once since its commit is missing), ten
// minutes to fetch and 4 GiB per repository.
func gitMirrorDefaults(s *Settings) {
	s.GitMirrorInterval = 15 * time.Second
	s.GitMirrorFetchTimeout = 10 * time.Minute
	s.GitMirrorMaxSize = 4 << 30
}

func (s *Settings) validateGitMirror() error {
	var errs []error
	if s.GitMirrorInterval < 0 || s.GitMirrorFetchTimeout <= 0 || s.GitMirrorMaxSize <= 0 {
		errs = append(errs, errors.New("git-mirror-interval must not be negative, git-mirror-fetch-timeout and git-mirror-max-size must be positive"))
	}
	if s.GitMirror != "" {
		if err := (gitmirror.Client{URL: s.GitMirror, Token: strings.Repeat("x", 16)}).Check(); err != nil {
			errs = append(errs, fmt.Errorf("git-mirror: %w", err))
		}
	}
	return errors.Join(errs...)
}

// gitMirrorToken is the mirror's bearer token, from the environment or
// --git-mirror-token-file.
func gitMirrorToken(s Settings) (string, error) {
	tok, err := secret("TURTLES_GIT_MIRROR_TOKEN", s.GitMirrorTokenFile)
	if err != nil {
		return "", fmt.Errorf("git mirror token: %w", err)
	}
	if tok == "" {
		return "", errors.New("git mirror token: set --git-mirror-token-file or TURTLES_GIT_MIRROR_TOKEN")
	}
	return tok, nil
}

// gitMirrorClient is the bot's way to the mirror, nil without
// --git-mirror.
func gitMirrorClient(s Settings) (*gitmirror.Client, error) {
	if s.GitMirror == "" {
		return nil, nil
	}
	tok, err := gitMirrorToken(s)
	if err != nil {
		return nil, err
	}
	c := &gitmirror.Client{URL: s.GitMirror, Token: tok}
	if err := c.Check(); err != nil {
		return nil, err
	}
	return c, nil
}

func gitMirrorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "git-mirror",
		Short: "Serve bots the repositories they test, read-only, so that they never reach the forge",
		Long: `git-mirror serves git's smart HTTP protocol, read-only, from bare mirrors
it keeps in --git-mirror-dir, fetching from the forge (--clone-base-url, with
the forge's credentials: --github-token-file, a GitHub App installation, or
--gitlab-token-file) when a repository is asked for and its copy is older
than --git-mirror-interval or lacks the task's commit.

Bots run with --git-mirror URL and the same --git-mirror-token-file. A
request is served only with that bearer token and the key of a task of the
repository that is live in the state database (--database, shared with the
hooks and reporters): the mirror is no way to read other repositories.
/healthz answers once it listens.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			ctx, _, stop := signals()
			defer stop()
			return runGitMirror(ctx, s, nil)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "github-api", "github-token-file", "log-level", "log-format")
	addForgeFlags(cmd.Flags())
	addHTTPFlags(cmd.Flags())
	addOptions(cmd.Flags(), "clone-base-url", "git-mirror-token-file", "git-mirror-dir", "git-mirror-interval", "git-mirror-fetch-timeout", "git-mirror-max-size")
	addOptions(cmd.Flags(), stateFlags...)
	return cmd
}

// gitMirrorParts: the state database, to know which tasks are live.
var gitMirrorParts = spec{need: []partID{partState}}

// maxUploadPackRequest bounds a bot's upload-pack request: a shallow
// fetch of one commit says little.
const maxUploadPackRequest = 16 << 20

// runGitMirror serves until ctx ends; ready, if set, gets the address it
// listens on.
func runGitMirror(ctx context.Context, s Settings, ready func(addr string)) error {
	log := newLogger(s, os.Stderr)
	tok, err := gitMirrorToken(s)
	if err != nil {
		return err
	}
	auth, err := forgeGitAuth(s, log)
	if err != nil {
		return err
	}
	sys, err := openSystem(s, log, gitMirrorParts)
	if err != nil {
		return err
	}
	defer sys.Close()
	dir := s.GitMirrorDir
	if dir == "" {
		dir = filepath.Join(s.DataDir, "git-mirror")
	}
	base := strings.TrimRight(s.cloneBase(), "/")
	m, err := gitmirror.New(gitmirror.Config{
		Dir: dir, Token: tok, Tasks: liveTasks{sys.State.Get()},
		Upstream: func(name string) string { return base + "/" + name + ".git" },
		Auth:     auth, Interval: s.GitMirrorInterval, FetchTimeout: s.GitMirrorFetchTimeout,
		MaxSize: int64(s.GitMirrorMaxSize), MaxRequest: maxUploadPackRequest, Log: log.With("part", "git-mirror"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("git mirror: %w", err)
	}
	srv := newHTTPServer(m, s)
	log.Info("turtles git-mirror serving", "version", buildVersion(), "listen", ln.Addr().String(), "dir", dir,
		"forge", base, "database", describeDatabase(s.Database))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("git mirror: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// liveTasks is the state database as the mirror asks it: a task is live
// while its key is reserved, from before it is queued to its final event.
type liveTasks struct{ db state.DB }

func (l liveTasks) Live(ctx context.Context, key string) (bool, error) {
	_, live, err := l.db.Live(ctx, key)
	return live, err
}

// forgeGitAuth returns the Authorization header of the mirror's fetches
// from --forge: HTTP basic with the token as the password, as GitHub
// (installation tokens and personal tokens) and GitLab take it over git's
// HTTP protocol; nil without credentials (public repositories only).
func forgeGitAuth(s Settings, log *slog.Logger) (func(context.Context, string) (string, error), error) {
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	if s.Forge == forgeGitLab {
		tok, err := secret("TURTLES_GITLAB_TOKEN", s.GitLabTokenFile)
		if err != nil || tok == "" {
			log.Warn("no GitLab token (--gitlab-token-file or TURTLES_GITLAB_TOKEN): the mirror fetches public repositories only")
			return nil, err
		}
		return func(context.Context, string) (string, error) { return basic("oauth2", tok), nil }, nil
	}
	if s.GitHubAppID > 0 {
		if s.GitHubInstallationID == 0 {
			return nil, errors.New("git-mirror with a GitHub App needs --github-installation-id: the installation whose repositories it fetches")
		}
		key, err := readAppKey(s.GitHubAppKeyFile)
		if err != nil {
			return nil, err
		}
		tr, err := ghinstallation.New(http.DefaultTransport, int64(s.GitHubAppID), int64(s.GitHubInstallationID), key)
		if err != nil {
			return nil, fmt.Errorf("github app: %w", err)
		}
		tr.BaseURL = strings.TrimRight(s.GitHubAPI, "/")
		return func(ctx context.Context, _ string) (string, error) {
			tok, err := tr.Token(ctx) // renewed a minute before it expires
			if err != nil {
				return "", fmt.Errorf("github app installation token: %w", err)
			}
			return basic("x-access-token", tok), nil
		}, nil
	}
	tok, err := secret("TURTLES_GITHUB_TOKEN", s.GitHubTokenFile)
	if err != nil || tok == "" {
		log.Warn("no GitHub token (--github-token-file or TURTLES_GITHUB_TOKEN) or App: the mirror fetches public repositories only")
		return nil, err
	}
	return func(context.Context, string) (string, error) { return basic("x-access-token", tok), nil }, nil
}
