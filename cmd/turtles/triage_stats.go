package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
)

func triageStatsCmd() *cobra.Command {
	var server, since, repo string
	var limit int
	cmd := &cobra.Command{
		Use:   "stats [--since 28d] [--repo OWNER/NAME]",
		Short: "List known issues by how many attempts they decided, per week",
		Long: `stats asks the JSON API of a running turtles (GET /api/v1/known-issues) how
many test attempts each known issue's pattern decided (a known-issue
verdict, or infra for a retry pattern), per week from Monday (UTC), most
first: the issues that cost the team most are on top. The weeks are the
ones --since reaches into, newest first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := results.ParseAge(since); err != nil {
				return err
			}
			q := url.Values{"since": {since}, "limit": {strconv.Itoa(limit)}}
			if repo != "" {
				q.Set("repo", repo)
			}
			var body struct {
				Since  time.Time          `json:"since"`
				Issues []state.IssueStats `json:"issues"`
			}
			if err := askTurtles(cmd.Context(), server+"/api/v1/known-issues?"+q.Encode(), &body); err != nil {
				return err
			}
			printIssues(cmd.OutOrStdout(), body.Since, time.Now(), body.Issues)
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "http://localhost:8080", "URL of the turtles server")
	cmd.Flags().StringVar(&since, "since", "28d", "how far back to count, such as 28d or 72h (whole weeks)")
	cmd.Flags().StringVar(&repo, "repo", "", "only this repository")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many issues")
	return cmd
}

// printIssues prints one line per issue: its total, a column per week
// from now back to since, newest first, and its latest occurrence.
func printIssues(w io.Writer, since, now time.Time, issues []state.IssueStats) {
	if len(issues) == 0 {
		fmt.Fprintf(w, "no known issue decided a verdict since %s\n", since.Format("2006-01-02"))
		return
	}
	var weeks []time.Time
	for wk := state.WeekOf(now); !wk.Before(since) && len(weeks) < 52; wk = wk.AddDate(0, 0, -7) {
		weeks = append(weeks, wk)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "ISSUE\tTOTAL\t")
	for _, wk := range weeks {
		fmt.Fprintf(tw, "%s\t", wk.Format("Jan 02"))
	}
	fmt.Fprintln(tw, "LAST\t")
	for _, is := range issues {
		fmt.Fprintf(tw, "%s\t%d\t", is.Issue, is.Total)
		for _, wk := range weeks {
			n := 0
			for _, c := range is.Weeks {
				if c.Week.Equal(wk) {
					n = c.Count
				}
			}
			fmt.Fprintf(tw, "%d\t", n)
		}
		fmt.Fprintf(tw, "%s\t\n", is.Last.Local().Format("2006-01-02 15:04"))
	}
	tw.Flush()
}
