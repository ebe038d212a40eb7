package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/triage"
)

func triageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "triage", Short: "Work with known-issue patterns"}
	cmd.AddCommand(triageCheckCmd(), triageStatsCmd())
	return cmd
}

func triageCheckCmd() *cobra.Command {
	var passing int
	var defaults bool
	var repo string
	cmd := &cobra.Command{
		Use:   "check [DIR...]",
		Short: "Validate known-issue patterns: they parse, match their samples, match no passing log",
		Long: `check validates the known-issue patterns in each DIR (default ` + triage.Dir + `),
and with --defaults turtles' own infrastructure patterns: every file must
parse, every pattern must match each of its samples, and none may have
expired. When the state database exists (--database: DATA-DIR/state.db,
or PostgreSQL), each pattern must also match none of the logs of the last
--passing attempts that passed (of --repo, if given), read from the store
(--store or --store-dir): a pattern that matches a passing run is too
broad. It prints one line per problem, naming the file, and exits 1 if
there is any. A project runs it in its own CI for its own patterns.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(s, os.Stderr)
			if len(args) == 0 && !defaults {
				args = []string{triage.Dir}
			}
			set := &triage.Set{}
			var problems []string
			if defaults {
				d, errs := triage.Defaults()
				set.Add(d)
				problems = append(problems, errorLines(errs)...)
			}
			for _, dir := range args {
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					problems = append(problems, fmt.Sprintf("%s: not a directory of known-issue patterns", dir))
					continue
				}
				d, errs := loadPatterns(dir)
				set.Add(d)
				problems = append(problems, errorLines(errs)...)
			}
			for _, p := range triage.Check(cmd.Context(), set, time.Now()) {
				problems = append(problems, p.String())
			}
			logs := 0
			if passing > 0 {
				n, probs, err := checkPassing(cmd.Context(), s, log, set, repo, passing)
				if err != nil {
					return err
				}
				logs = n
				problems = append(problems, probs...)
			}
			w := cmd.OutOrStdout()
			for _, p := range problems {
				fmt.Fprintln(w, p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d problem(s) in known-issue patterns", len(problems))
			}
			fmt.Fprintf(w, "%d pattern(s) OK, checked against %d passing log(s)\n", len(set.Patterns), logs)
			return nil
		},
	}
	cmd.Flags().IntVar(&passing, "passing", 50, "how many of the last passing attempts' logs no pattern may match; 0 skips this")
	cmd.Flags().BoolVar(&defaults, "defaults", false, "check turtles' own embedded infrastructure patterns too")
	cmd.Flags().StringVar(&repo, "repo", "", "only passing logs of this repository (OWNER/NAME)")
	addFlags(cmd.Flags(), "data-dir", "database", "store", "store-dir", "s3-credentials-file", "log-level", "log-format")
	return cmd
}

// loadPatterns loads the patterns in dir, named by paths that start with
// dir as given.
func loadPatterns(dir string) (*triage.Set, []error) {
	if clean := filepath.ToSlash(filepath.Clean(dir)); fs.ValidPath(clean) {
		return triage.Load(os.DirFS("."), clean)
	}
	set, errs := triage.Load(os.DirFS(dir), ".")
	for _, p := range set.Patterns {
		p.Name = filepath.Join(dir, p.Name)
	}
	for _, err := range errs {
		var ce *config.Error
		if errors.As(err, &ce) {
			ce.File = filepath.Join(dir, ce.File)
		}
	}
	return set, errs
}

// addKnownIssues adds the server's pattern directories to set. A file
// that does not parse is left out and logged, naming the file and line,
// and the others apply; a directory that cannot be read is an error.
func addKnownIssues(set *triage.Set, dirs []string, log *slog.Logger) error {
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil {
			return fmt.Errorf("--known-issues: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("--known-issues: %s is not a directory", dir)
		}
		d, errs := loadPatterns(dir)
		for _, err := range errs {
			log.Error("a known-issue pattern of the server is left out", "err", err)
		}
		set.Add(d)
		log.Info("known-issue patterns of the server", "dir", dir, "patterns", len(d.Patterns), "left_out", len(errs))
	}
	return nil
}

func errorLines(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// checkPassing searches the logs of the last n passing attempts with set,
// if the state database exists: check never creates one. It returns how
// many logs it searched and the problems.
func checkPassing(ctx context.Context, s Settings, log *slog.Logger, set *triage.Set, repo string, n int) (int, []string, error) {
	if len(set.Patterns) == 0 {
		return 0, nil, nil
	}
	if !isPostgres(s.Database) {
		if _, err := os.Stat(s.Database); errors.Is(err, fs.ErrNotExist) {
			log.Info("no state database: passing logs not checked", "database", s.Database)
			return 0, nil, nil
		}
	}
	db, err := openStateDB(s, log)
	if err != nil {
		return 0, nil, err
	}
	defer db.Close()
	st, err := openStore(s, log)
	if err != nil {
		return 0, nil, err
	}
	tasks, err := db.List(ctx, state.Filter{State: state.Finished, Repo: repo, Limit: 1000})
	if err != nil {
		return 0, nil, err
	}
	var problems []string
	logs := 0
	for _, t := range tasks {
		if t.Kind != turtles.KindTest {
			continue
		}
		for _, a := range t.Attempts {
			if logs == n {
				return logs, problems, nil
			}
			if a.Outcome == nil || a.Outcome.Class != turtles.Success {
				continue
			}
			task := turtles.Task{Repo: turtles.Repo{Name: t.Repo}, SHA: t.SHA, Context: t.Context, Attempt: a.Number}
			key := store.AttemptPrefix(task) + store.LogName
			probs, err := checkLog(ctx, st, key, set, t, a.Number)
			if errors.Is(err, store.ErrNotExist) {
				continue // pruned
			}
			if err != nil {
				return logs, problems, err
			}
			logs++
			problems = append(problems, probs...)
		}
	}
	return logs, problems, nil
}

func checkLog(ctx context.Context, st store.Store, key string, set *triage.Set, t state.Task, attempt int) ([]string, error) {
	r, _, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// The attempt's image is in its result.json (the history does not
	// keep it); without one, image-scoped patterns are not searched.
	image := ""
	if rr, _, err := st.Get(ctx, strings.TrimSuffix(key, store.LogName)+store.ResultName); err == nil {
		var res turtles.Result
		if json.NewDecoder(io.LimitReader(rr, 16<<20)).Decode(&res) == nil {
			image = res.Task.Image
		}
		rr.Close()
	}
	where := fmt.Sprintf("of %s@%.12s %s attempt %d (%s)", t.Repo, t.SHA, t.Context, attempt, path.Clean(key))
	if image != "" {
		where = fmt.Sprintf("of %s@%.12s %s on %s attempt %d (%s)", t.Repo, t.SHA, t.Context, image, attempt, path.Clean(key))
	}
	probs, err := triage.CheckPassing(ctx, set, t.Context, image, where, io.Reader(r))
	var out []string
	for _, p := range probs {
		out = append(out, p.String())
	}
	return out, err
}
