package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
)

func resultsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "results", Short: "Ask the results database of a running turtles"}
	var server, since, repo, context_ string
	flakes := &cobra.Command{
		Use:   "flakes [--since 14d] [--repo OWNER/NAME] [--context NAME]",
		Short: "List tests that failed and then passed on a retry of the same commit",
		Long: `flakes asks the JSON API of a running turtles (GET /api/v1/tests?flaky=true)
for tests that, on one commit and context, failed in an attempt and passed
in a later one, and prints them worst first with their last failure's log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := results.ParseAge(since); err != nil {
				return err
			}
			q := url.Values{"flaky": {"true"}, "since": {since}}
			if repo != "" {
				q.Set("repo", repo)
			}
			if context_ != "" {
				q.Set("context", context_)
			}
			tests, err := fetchTests(cmd.Context(), server+"/api/v1/tests?"+q.Encode())
			if err != nil {
				return err
			}
			printFlakes(cmd.OutOrStdout(), tests)
			return nil
		},
	}
	flakes.Flags().StringVar(&server, "server", "http://localhost:8080", "URL of the turtles server")
	flakes.Flags().StringVar(&since, "since", "14d", "how far back to look, such as 14d or 48h")
	flakes.Flags().StringVar(&repo, "repo", "", "only this repository")
	flakes.Flags().StringVar(&context_, "context", "", "only this context")
	cmd.AddCommand(flakes, resultsPruneCmd())
	return cmd
}

func resultsPruneCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune [--dry-run]",
		Short: "Forget what the retention settings let go from the state database, now",
		Long: `prune does once what serve, hook and reporter do every hour: it deletes
from the state database (--database) the webhook deliveries, event IDs,
final statuses, finished tasks and bots gone quiet older than
--retain-deliveries, --retain-events, --retain-finals, --retain-tasks and
--retain-bots, and says how many rows
it deleted (with --dry-run, would delete). Per-test results go with their
logs: see turtles store prune.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(s, os.Stderr)
			sys, err := openSystem(s, log, spec{need: []partID{partState}})
			if err != nil {
				return err
			}
			defer sys.Close()
			p := s.prune(time.Now())
			p.DryRun = dryRun
			n, err := sys.State.Get().Prune(cmd.Context(), p)
			if err != nil {
				return err
			}
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d deliveries, %d event IDs, %d finals, %d tasks with %d attempts, %d bots in %s\n",
				verb, n.Deliveries, n.Events, n.Finals, n.Tasks, n.Attempts, n.Bots, describeDatabase(s.Database))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be deleted")
	addFlags(cmd.Flags(), "data-dir", "log-level", "log-format")
	addOptions(cmd.Flags(), stateFlags...)
	return cmd
}

func fetchTests(ctx context.Context, u string) ([]state.TestStats, error) {
	var body struct {
		Tests []state.TestStats `json:"tests"`
	}
	if err := askTurtles(ctx, u, &body); err != nil {
		return nil, err
	}
	return body.Tests, nil
}

func printFlakes(w io.Writer, tests []state.TestStats) {
	if len(tests) == 0 {
		fmt.Fprintln(w, "no flaky tests")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPO\tCONTEXT\tTEST\tRUNS\tFAILURES\tRETRIED-THEN-PASSED\tLAST FAILURE")
	for _, t := range tests {
		last := ""
		if t.LastFailure != nil {
			last = t.LastFailure.Time.Local().Format("2006-01-02 15:04") + " " + t.LastFailure.LogURL
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", t.Repo, t.Context, t.Name, t.Runs, t.Failures, t.RetriedThenPassed, last)
	}
	tw.Flush()
}
