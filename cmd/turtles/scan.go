package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// trustFlags are the options of the gate and the scanner.
var trustFlags = []string{"trusted-orgs", "trusted-users", "scan-repos", "scan-branches", "scan-interval", "clone-base-url", "default-config"}

func trustOptions() []option {
	return []option{
		opt("trusted-orgs", "comma-separated GitHub organizations (GitLab: groups) whose members' pull requests run without /ok-to-test", strs(func(s *Settings) *[]string { return &s.TrustedOrgs })),
		opt("trusted-users", "comma-separated logins whose pull requests and commands are trusted without asking GitHub", strs(func(s *Settings) *[]string { return &s.TrustedUsers })),
		opt("scan-repos", "comma-separated OWNER/NAME repositories the scanner checks for work that webhooks lost", strs(func(s *Settings) *[]string { return &s.ScanRepos })),
		opt("scan-branches", "comma-separated branches whose heads the scanner tests", strs(func(s *Settings) *[]string { return &s.ScanBranches })),
		opt("scan-interval", "how often serve and reporter scan --scan-repos; 0 scans once, at start", dur(func(s *Settings) *time.Duration { return &s.ScanInterval })),
		opt("clone-base-url", "URL under which OWNER/NAME.git is cloned, for scanned repositories", str(func(s *Settings) *string { return &s.CloneBaseURL })),
		opt("default-config", ".turtles.yaml used for repositories that carry none (default: they run nothing)", str(func(s *Settings) *string { return &s.DefaultConfig })),
	}
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
			log := newLogger(s, os.Stderr)
			sys, err := openSystem(s, log, scanParts)
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			defer sys.Close()
			st, err := sys.Scanner.Get().Scan(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "scanned %d commits: %d tasks queued, %d already queued or running, %d waiting for /ok-to-test, %d errors\n",
				st.Commits, st.Queued, st.Live, st.Waiting, st.Errors)
			return err
		},
	}
	addFlags(cmd.Flags(), "data-dir", "queue", "pool", "github-api", "github-token-file", "log-level", "log-format")
	addTrustFlags(cmd.Flags())
	addOptions(cmd.Flags(), "database") // task keys are deduped there
	addIsolationFlags(cmd.Flags(), false)
	addForgeFlags(cmd.Flags())
	return cmd
}

// addTrustFlags registers the gate's and scanner's options on a command
// that addFlags already gave --config.
func addTrustFlags(fs *pflag.FlagSet) {
	addOptions(fs, trustFlags...)
}

// scanParts: one scan, which needs forge lookups (the gate) and
// --scan-repos.
var scanParts = spec{need: []partID{partQueue, partEvents, partForge, partGate, partScanner}}
