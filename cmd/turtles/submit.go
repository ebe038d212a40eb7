package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/web"
)

func submitCmd() *cobra.Command {
	var repoURL, repoName, sha, context_, command string
	var priority int
	cmd := &cobra.Command{
		Use:   "submit --repo-url URL --sha SHA [--context NAME]",
		Short: "Queue a task by hand",
		Long: `submit puts a task on the queue of a running turtles, as a webhook would:
the embedded queue in --data-dir, or RabbitMQ when --queue is an amqp:// URL.
Without --context it queues the plan task: the bot reads the commit's
.turtles.yaml and queues every context. With --context it queues that one
context; its command comes from .turtles.yaml unless --command is given.

A local path works as --repo-url; --sha may be any revision of a local
repository (HEAD, a branch), resolved here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			t, err := submitTask(repoURL, repoName, sha, context_, command, priority, s.Pool)
			if err != nil {
				return err
			}
			if !isAMQP(s.Queue) {
				if _, err := os.Stat(s.Queue); err != nil {
					return fmt.Errorf("no queue at %s (start 'turtles serve' there first, or pass --data-dir/--queue): %w", s.Queue, err)
				}
			}
			// Quiet: a submit is one publish; the queue's own chatter
			// (reconnects) would only hide the result line.
			// What submit did goes to stdout; its log only warns.
			quiet := s
			quiet.LogLevel = "warn"
			sys, err := openSystem(s, newLogger(quiet, cmd.ErrOrStderr()), submitParts)
			if err != nil {
				return err
			}
			defer sys.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			err = sys.Queue.Get().Publish(ctx, t)
			if errors.Is(err, queue.ErrDuplicate) {
				fmt.Fprintf(cmd.OutOrStdout(), "already queued or running: %s\n", t.Key())
				return nil
			}
			if err != nil {
				return err
			}
			if t.Kind == turtles.KindTest {
				ev := turtles.Event{ID: newID(), Type: turtles.EventQueued, Task: t, Time: time.Now()}
				if err := sys.Events.Get().Emit(ctx, ev); err != nil {
					return fmt.Errorf("task queued, but its queued event was not: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "queued %s\n", t.Key())
			if base, ok := serverURL(s); ok {
				fmt.Fprintf(cmd.OutOrStdout(), "task %s: %s\n", t.ID(), web.LogURL(base, t))
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "task %s: its page is /tasks/%s on the reporter (--public-url URL or TURTLES_PUBLIC_URL prints a link)\n", t.ID(), t.ID())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&repoURL, "repo-url", "", "where to clone from: https://, file:// or a local path (required)")
	f.StringVar(&repoName, "repo", "", "repository name owner/name (default: derived from the URL)")
	f.StringVar(&sha, "sha", "", "commit to test; for a local repository any revision such as HEAD (required)")
	f.StringVar(&context_, "context", "", "one context to run (default: all, from .turtles.yaml)")
	f.StringVar(&command, "command", "", "command to run for --context instead of the one in .turtles.yaml")
	f.IntVar(&priority, "priority", 5, "0..9, higher runs first")
	cmd.MarkFlagRequired("repo-url")
	cmd.MarkFlagRequired("sha")
	addFlags(f, "data-dir", "queue", "public-url", "pool", "lease", "max-deliveries", "log-format")
	addOptions(f, "database") // task keys are deduped there
	return cmd
}

// submitParts: a publish and its queued event.
var submitParts = spec{need: []partID{partQueue, partEvents}}

// serverURL is the public URL of the server whose pages show the task: the
// one given, or the one a serve or reporter recorded in the data dir. A
// URL made from submit's own (unused) listen address would be a guess.
func serverURL(s Settings) (string, bool) {
	if !s.PublicURLDerived {
		return s.PublicURL, true
	}
	b, err := os.ReadFile(filepath.Join(s.DataDir, publicURLFile))
	if u := strings.TrimSpace(string(b)); err == nil && u != "" {
		return u, true
	}
	return "", false
}

func submitTask(repoURL, repoName, sha, contextName, command string, priority int, pool string) (turtles.Task, error) {
	if command != "" && contextName == "" {
		return turtles.Task{}, errors.New("--command needs --context")
	}
	if dir, ok := localRepo(repoURL); ok {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return turtles.Task{}, err
		}
		repoURL = "file://" + abs
		out, err := exec.Command("git", "-C", abs, "rev-parse", "--verify", sha+"^{commit}").Output()
		if err != nil {
			return turtles.Task{}, fmt.Errorf("resolve %s in %s: not a commit", sha, abs)
		}
		sha = strings.TrimSpace(string(out))
	}
	if repoName == "" {
		repoName = nameFromURL(repoURL)
	}
	t := turtles.Task{
		Version:  turtles.TaskVersion,
		Kind:     turtles.KindPlan,
		Repo:     turtles.Repo{Name: repoName, CloneURL: repoURL},
		SHA:      sha,
		Context:  turtles.PlanContext,
		Pool:     pool,
		Priority: priority,
		Attempt:  1,
		Trusted:  true,
		Created:  time.Now().UTC(),
	}
	if contextName != "" {
		t.Kind, t.Context, t.Command = turtles.KindTest, contextName, command
	}
	return t, t.Validate()
}

// localRepo reports whether u names a local directory.
func localRepo(u string) (string, bool) {
	if strings.HasPrefix(u, "file://") {
		return strings.TrimPrefix(u, "file://"), true
	}
	if strings.Contains(u, "://") {
		return "", false
	}
	if fi, err := os.Stat(u); err == nil && fi.IsDir() {
		return u, true
	}
	return "", false
}

// nameFromURL makes "owner/name" from the last two segments of a URL or
// path, the way forges name repositories.
func nameFromURL(u string) string {
	u = strings.TrimSuffix(strings.TrimRight(u, "/"), ".git")
	parts := strings.FieldsFunc(u, func(r rune) bool { return r == '/' || r == ':' })
	switch {
	case len(parts) >= 2:
		return parts[len(parts)-2] + "/" + parts[len(parts)-1]
	case len(parts) == 1:
		return "local/" + parts[0]
	}
	return "local/repo"
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
