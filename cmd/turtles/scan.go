package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/scan"
)

// trustFlags are the options of the gate and the scanner.
var trustFlags = []string{"trusted-orgs", "trusted-users", "scan-repos", "scan-branches", "scan-interval", "clone-base-url", "default-config"}

func trustOptions() []option {
	return []option{
		opt("trusted-orgs", "comma-separated GitHub organizations (GitLab: groups) whose members' pull requests run without /ok-to-test", strs(func(s *Settings) *[]string { return &s.TrustedOrgs })),
		opt("trusted-users", "comma-separated logins whose pull requests and commands are trusted without asking GitHub", strs(func(s *Settings) *[]string { return &s.TrustedUsers })),
		opt("scan-repos", "comma-separated OWNER/NAME repositories the scanner checks for work that webhooks lost", strs(func(s *Settings) *[]string { return &s.ScanRepos })),
		opt("scan-branches", "comma-separated branches whose heads the scanner tests", strs(func(s *Settings) *[]string { return &s.ScanBranches })),
		opt("scan-interval", "how often serve scans --scan-repos (0: only at start)", dur(func(s *Settings) *time.Duration { return &s.ScanInterval })),
		opt("clone-base-url", "URL under which OWNER/NAME.git is cloned, for scanned repositories", str(func(s *Settings) *string { return &s.CloneBaseURL })),
		opt("default-config", ".turtles.yaml used for repositories that carry none (default: they run nothing)", str(func(s *Settings) *string { return &s.DefaultConfig })),
	}
}

// newGate returns the gate, or nil when the forge answers no lookups (no
// token): then the webhook receiver gets no inbox and ignores what needs
// the gate, rather than queue requests no one takes.
func newGate(s Settings, f forge.Forge, q gate.Publisher, ev gate.Emitter, log *slog.Logger) (*gate.Gate, error) {
	lookup, ok := f.(forge.Lookup)
	if !ok {
		log.Warn("no forge lookups: pull requests by untrusted authors and comment commands are ignored")
		return nil, nil
	}
	def, err := loadDefaultConfig(s)
	if err != nil {
		return nil, err
	}
	return gate.New(gate.Config{Lookup: lookup, Forge: f, Queue: q, Events: ev, Orgs: s.TrustedOrgs, Allow: s.TrustedUsers,
		Policy: s.policy(), Default: def, Log: log.With("part", "gate")})
}

// loadDefaultConfig parses --default-config; nil without one.
func loadDefaultConfig(s Settings) (*config.Config, error) {
	if s.DefaultConfig == "" {
		return nil, nil
	}
	data, err := os.ReadFile(s.DefaultConfig)
	if err != nil {
		return nil, fmt.Errorf("default config: %w", err)
	}
	return config.Parse(s.DefaultConfig, data)
}

func newScanner(s Settings, g *gate.Gate, f forge.Forge, q gate.Publisher, ev gate.Emitter, log *slog.Logger) (*scan.Scanner, error) {
	lookup, ok := f.(forge.Lookup)
	if !ok || g == nil {
		return nil, errors.New("scan: needs forge credentials (GitHub: --github-token-file, TURTLES_GITHUB_TOKEN or --github-app-id; GitLab: --gitlab-token-file or TURTLES_GITLAB_TOKEN)")
	}
	cloneBase := s.CloneBaseURL
	if s.Forge == forgeGitLab && cloneBase == defaults().CloneBaseURL {
		cloneBase = s.GitLabURL // GitLab's default, as github.com is GitHub's
	}
	var repos []scan.Repo
	for _, r := range s.ScanRepos {
		repos = append(repos, scan.Repo{Name: r, CloneURL: strings.TrimRight(cloneBase, "/") + "/" + r + ".git", Branches: s.ScanBranches})
	}
	return scan.New(scan.Config{Lookup: lookup, Gate: g, Queue: q, Events: ev, Repos: repos, Pool: s.Pool, Policy: s.policy(), Log: log.With("part", "scan")})
}

// runTrust runs the gate on inbox (when both exist) and, with
// --scan-repos, the scanner loop, until ctx ends.
func runTrust(ctx context.Context, wg *sync.WaitGroup, s Settings, g *gate.Gate, inbox queue.Inbox, f forge.Forge,
	q gate.Publisher, ev gate.Emitter, log *slog.Logger) error {
	if g != nil && inbox != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Run(ctx, inbox); err != nil {
				log.Error("gate stopped", "err", err)
			}
		}()
	}
	if len(s.ScanRepos) == 0 {
		return nil
	}
	sc, err := newScanner(s, g, f, q, ev, log)
	if err != nil {
		return err
	}
	interval := s.ScanInterval
	if interval <= 0 {
		interval = 100 * 365 * 24 * time.Hour // at start only
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc.Run(ctx, interval)
	}()
	return nil
}

func scanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Queue the work webhooks lost, once: open pull requests and branch heads without statuses",
		Long: `scan asks GitHub for the open pull requests and the --scan-branches heads of
each --scan-repos repository, and queues every context of their head commits
that has no status and no queued or running task. Pull requests of untrusted
authors get "waiting for a maintainer's /ok-to-test" instead. Run it after an
outage; serve runs it at start and every --scan-interval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			if len(s.ScanRepos) == 0 {
				return errors.New("scan: no repositories: set --scan-repos OWNER/NAME,...")
			}
			log := newLogger(s, os.Stderr)
			sys, err := openSystem(s, log)
			if err != nil {
				return err
			}
			defer sys.Close()
			f, err := newForge(s, log)
			if err != nil {
				return err
			}
			g, err := newGate(s, f, sys.queue, sys.qs.events, log)
			if err != nil {
				return err
			}
			sc, err := newScanner(s, g, f, sys.queue, sys.qs.events, log)
			if err != nil {
				return err
			}
			st, err := sc.Scan(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "scanned %d commits: %d tasks queued, %d already queued or running, %d waiting for /ok-to-test, %d errors\n",
				st.Commits, st.Queued, st.Live, st.Waiting, st.Errors)
			return err
		},
	}
	addFlags(cmd.Flags(), "data-dir", "queue", "pool", "github-api", "github-token-file", "log-level", "log-format")
	addTrustFlags(cmd.Flags())
	addIsolationFlags(cmd.Flags(), false)
	addForgeFlags(cmd.Flags())
	return cmd
}

// addTrustFlags registers the gate's and scanner's options on a command
// that addFlags already gave --config.
func addTrustFlags(fs *pflag.FlagSet) {
	addOptions(fs, trustFlags...)
}
