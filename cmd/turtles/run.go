package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
)

func runCmd() *cobra.Command {
	var dir, rev, images, secrets string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run CONTEXT",
		Short: "Run one context of a local checkout exactly as a bot would",
		Long: `run checks out a commit of a local repository (HEAD by default) into a fresh
workspace, runs the context's command from that commit's .turtles.yaml with
the environment a bot gives it, and prints the log. This is how to
reproduce a CI failure on a laptop. Uncommitted changes are not included:
commit them (or use a throwaway commit) first.

The exit status is 0 for success, 1 for a test failure and 2 when turtles
itself could not run the task (infrastructure).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, _, stop := signals()
			defer stop()
			o, err := bot.RunLocal(ctx, bot.LocalOptions{Dir: dir, Rev: rev, Context: args[0], Out: cmd.OutOrStdout(), Timeout: timeout,
				VM: bot.VMConfig{ImagesDir: images}, SecretsDir: secrets})
			if err != nil {
				return err
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
	cmd.Flags().StringVar(&secrets, "secrets-dir", "", "directory with one file per secret the context names (default: run without them)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "override the context's timeout")
	cmd.Flags().StringVar(&images, "images-dir", filepath.Join(defaults().DataDir, "images"), "where the VM images of contexts that name one are")
	return cmd
}

func describe(o turtles.Outcome) string {
	if o.Reason != "" {
		return fmt.Sprintf("%s (%s)", o.Class, o.Reason)
	}
	return string(o.Class)
}
