package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/config"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with .turtles.yaml files",
	}
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a .turtles.yaml (default: the one in the current directory) as turtles will read it",
		Long: `check parses FILE (default .turtles.yaml, "-" for standard input) with the
same strict rules as the bots, and prints its contexts. A problem is printed
as FILE:LINE: PROBLEM and the exit status is 1.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := config.FileName
			if len(args) == 1 {
				file = args[0]
			}
			var (
				data []byte
				err  error
			)
			if file == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), config.MaxSize+1))
				file = "<stdin>"
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("config check: %w", err)
			}
			c, err := config.Parse(file, data)
			if err != nil {
				var ce *config.Error
				if errors.As(err, &ce) {
					return errors.New(ce.Error()) // already names the file and line
				}
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: %d context(s), OK\n", file, len(c.Contexts))
			for _, x := range c.Contexts {
				var notes []string
				if !x.IsAuto() {
					notes = append(notes, "on request only")
				}
				if x.Image != "" {
					notes = append(notes, "image "+x.Image)
				}
				if len(x.Secrets) > 0 {
					notes = append(notes, "secrets "+strings.Join(x.Secrets, ","))
				}
				if x.Branches.PullRequest != nil {
					notes = append(notes, "pull requests to ["+strings.Join(x.Branches.PullRequest, " ")+"]")
				}
				if x.Branches.Push != nil {
					notes = append(notes, "pushes to ["+strings.Join(x.Branches.Push, " ")+"]")
				}
				if len(x.RunIfChanged) > 0 {
					notes = append(notes, "if changed ["+strings.Join(x.RunIfChanged, " ")+"]")
				}
				if len(x.SkipIfOnlyChanged) > 0 {
					notes = append(notes, "skipped if only ["+strings.Join(x.SkipIfOnlyChanged, " ")+"] changed")
				}
				line := fmt.Sprintf("  %-30s pool %s, timeout %s", x.Name, x.Pool, x.Timeout)
				if len(notes) > 0 {
					line += "; " + strings.Join(notes, "; ")
				}
				fmt.Fprintln(w, line)
			}
			return nil
		},
	}
	cmd.AddCommand(check)
	return cmd
}
