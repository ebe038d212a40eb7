package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

func statusCmd() *cobra.Command {
	var server, sha, repo, state string
	var wait time.Duration
	var expect int
	cmd := &cobra.Command{
		Use:   "status [--sha SHA] [--wait 10m]",
		Short: "Show tasks of a running turtles, optionally waiting until they finish",
		Long: `status asks the JSON API of a running turtles for tasks and prints them with
their outcome and log page. With --wait it polls until every task of the
selection has finished (and at least --expect tasks exist), then exits 0 if
all succeeded, 1 if any failed and 2 otherwise (some ended in an
infrastructure failure or were cancelled, they did not finish in time, or
the server could not be asked).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := showStatus(cmd, server, sha, repo, state, wait, expect)
			if err != nil && wait > 0 {
				// With --wait, 1 means a test failed; this is not that.
				fmt.Fprintln(cmd.ErrOrStderr(), "turtles:", err)
				os.Exit(2)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "http://localhost:8080", "URL of the turtles server")
	f.StringVar(&sha, "sha", "", "only tasks of this commit")
	f.StringVar(&repo, "repo", "", "only tasks of this repository (owner/name)")
	f.StringVar(&state, "state", "", "only tasks in this state: queued, running, retrying, finished")
	f.DurationVar(&wait, "wait", 0, "wait up to this long for the tasks to finish")
	f.IntVar(&expect, "expect", 1, "with --wait: how many tasks to wait for at least")
	return cmd
}

// showStatus prints the selected tasks, after waiting for them to finish
// if wait is set; then it exits with their verdict.
func showStatus(cmd *cobra.Command, server, sha, repo, taskState string, wait time.Duration, expect int) error {
	q := url.Values{}
	for k, v := range map[string]string{"sha": sha, "repo": repo, "state": taskState} {
		if v != "" {
			q.Set(k, v)
		}
	}
	u := server + "/api/v1/tasks?" + q.Encode()
	ctx, cancel := context.WithTimeout(cmd.Context(), max(wait, 30*time.Second))
	defer cancel()
	for {
		tasks, err := fetchTasks(ctx, u)
		if err != nil {
			return err
		}
		done := len(tasks) >= expect
		for _, t := range tasks {
			done = done && t.State == state.Finished
		}
		if wait == 0 || done {
			printTasks(cmd.OutOrStdout(), tasks)
			if wait > 0 {
				os.Exit(exitCode(tasks))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			printTasks(cmd.OutOrStdout(), tasks)
			return fmt.Errorf("tasks not finished after %s", wait)
		case <-time.After(time.Second):
		}
	}
}

func fetchTasks(ctx context.Context, u string) ([]state.Task, error) {
	var r struct{ Tasks []state.Task }
	if err := askTurtles(ctx, u, &r); err != nil {
		return nil, err
	}
	return r.Tasks, nil
}

// askTurtles GETs u from a running turtles' API and decodes its JSON
// answer into v. An answer other than 200 is an error that quotes the
// start of its body.
func askTurtles(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask turtles: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("ask turtles: %s: %s", resp.Status, b)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("ask turtles: %s: %w", u, err)
	}
	return nil
}

func printTasks(w io.Writer, tasks []state.Task) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTEXT\tSTATE\tOUTCOME\tATTEMPTS\tLOG")
	for _, t := range tasks {
		outcome := "-"
		if t.Outcome != nil {
			outcome = describe(*t.Outcome)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", t.Context, t.State, outcome, len(t.Attempts), t.LogURL)
	}
	tw.Flush()
}

// exitCode: 0 all succeeded, 1 a test failed, 2 anything else.
func exitCode(tasks []state.Task) int {
	code := 0
	for _, t := range tasks {
		switch {
		case t.Outcome == nil:
			return 2
		case t.Outcome.Class == turtles.Failure:
			code = max(code, 1)
		case t.Outcome.Class != turtles.Success:
			return 2
		}
	}
	return code
}
