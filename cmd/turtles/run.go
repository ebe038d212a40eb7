package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
)

func runCmd() *cobra.Command {
	var dir, rev string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run CONTEXT",
		Short: "Run one context of a local checkout exactly as a bot would",
		Long: `run checks out a commit of a local repository (HEAD by default) into a fresh
workspace, runs the context's command from that commit's .turtles.yaml with
the environment a bot gives it, and prints the log. This is how to
reproduce a CI failure on a laptop. Uncommitted changes are not included:
commit them (or use a throwaway commit) first.

A context whose image is pinned (NAME-SHA256 in the images section) is
fetched first if the images directory lacks it, from --image-mirrors and
--image-peers, as a bot does.

The exit status is 0 for success, 1 for a test failure and 2 when turtles
itself could not run the task (infrastructure).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := runLocal(cmd, args[0], dir, rev, timeout)
			if err != nil {
				// Not a verdict on the commit: turtles could not run it.
				fmt.Fprintln(cmd.ErrOrStderr(), "turtles:", err)
				os.Exit(2)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "turtles: %s: %s\n", args[0], describe(o))
			switch o.Class {
			case turtles.Success:
				return nil
			case turtles.Failure, turtles.Cancelled:
				os.Exit(1)
			}
			os.Exit(2)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "local git checkout")
	cmd.Flags().StringVar(&rev, "rev", "HEAD", "revision to run")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "override the context's timeout")
	addFlags(cmd.Flags(), append([]string{"data-dir", "images-dir", "secrets-dir", "s3-credentials-file", "log-level", "log-format"}, imageFlags...)...)
	addOptions(cmd.Flags(), vmFlags...)
	return cmd
}

// runLocal runs context of the checkout at dir with the command's
// settings; the error is for what kept it from running.
func runLocal(cmd *cobra.Command, context, dir, rev string, timeout time.Duration) (turtles.Outcome, error) {
	s, err := loadSettings(cmd.Flags())
	if err != nil {
		return turtles.Outcome{}, err
	}
	log := newLogger(s, cmd.ErrOrStderr())
	bar := newProgressBar(cmd.ErrOrStderr())
	images, err := newImageCache(s, log, nil, bar.update)
	if err != nil {
		return turtles.Outcome{}, err
	}
	ctx, _, stop := signals()
	defer stop()
	defer bar.done()
	return bot.RunLocal(ctx, bot.LocalOptions{Dir: dir, Rev: rev, Context: context, Out: cmd.OutOrStdout(), Timeout: timeout,
		WorkDir: os.TempDir(), KillGrace: killGrace, VM: s.taskVMs(taskVMDir(os.TempDir()), images), SecretsDir: s.SecretsDir})
}

func describe(o turtles.Outcome) string {
	if o.Reason != "" {
		return fmt.Sprintf("%s (%s)", o.Class, o.Reason)
	}
	return string(o.Class)
}
