package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/s3"
)

// openStore opens --store: an s3:// URL, or else the directory --store-dir.
//
//	s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:7070&region=us-east-1&path_style=true
//
// Credentials come from TURTLES_S3_ACCESS_KEY and TURTLES_S3_SECRET_KEY or
// from --s3-credentials-file (two lines: access key, secret key), never
// from the URL, so that they appear in no process list or log.
func openStore(s Settings, log *slog.Logger) (store.Store, error) {
	if !strings.HasPrefix(s.Store, "s3://") {
		return store.NewDir(s.StoreDir)
	}
	cfg, err := s3Config(s)
	if err != nil {
		return nil, err
	}
	cfg.Log = log.With("part", "store")
	st, err := s3.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Check(ctx); err != nil {
		return nil, fmt.Errorf("store %s: %w", st, err)
	}
	log.Info("store", "location", st.String())
	return st, nil
}

func s3Config(s Settings) (s3.Config, error) {
	u, err := url.Parse(s.Store)
	if err != nil || u.Host == "" || u.User != nil {
		return s3.Config{}, fmt.Errorf("store %q: want s3://BUCKET/PREFIX?endpoint=URL (credentials never in the URL)", redactURL(s.Store))
	}
	q := u.Query()
	cfg := s3.Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: q.Get("endpoint"), Region: q.Get("region")}
	if v := q.Get("path_style"); v != "" {
		if cfg.PathStyle, err = strconv.ParseBool(v); err != nil {
			return s3.Config{}, fmt.Errorf("store: path_style must be true or false")
		}
	}
	for k := range q {
		switch k {
		case "endpoint", "region", "path_style":
		default:
			return s3.Config{}, fmt.Errorf("store: unknown parameter %q (want endpoint, region, path_style)", k)
		}
	}
	cfg.AccessKey, cfg.SecretKey = os.Getenv("TURTLES_S3_ACCESS_KEY"), os.Getenv("TURTLES_S3_SECRET_KEY")
	if s.S3CredentialsFile != "" {
		b, err := os.ReadFile(s.S3CredentialsFile)
		if err != nil {
			return s3.Config{}, fmt.Errorf("s3 credentials: %w", err)
		}
		lines := strings.Fields(string(b))
		if len(lines) != 2 {
			return s3.Config{}, fmt.Errorf("s3 credentials file %s: want two lines, the access key and the secret key", s.S3CredentialsFile)
		}
		cfg.AccessKey, cfg.SecretKey = lines[0], lines[1]
	}
	return cfg, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

func storeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Manage the logs and artifacts in the store"}
	var olderThan, heldOlderThan string
	var dryRun bool
	prune := &cobra.Command{
		Use:   "prune --older-than 90d",
		Short: "Delete the logs, results and artifacts of attempts older than an age",
		Long: `prune deletes every file of each attempt (OWNER/REPO/SHA/CONTEXT/ATTEMPT/...)
whose newest file is older than --older-than, in the store of --store or
--store-dir. Attempts still being written are newer, so they stay.

When the state database exists (--database: DATA-DIR/state.db, the one of
serve, or the PostgreSQL database of hooks and reporters), prune also
deletes its per-test results of attempts that finished before the same
cutoff, so that no test result links to a deleted log. Tasks and attempts
stay: they are small, statuses link to them, and --retain-tasks of the
long-running processes decides how long.

Held VMs (a context's hold:, docs/vms.md) are large: prune deletes those
held before --held-older-than, while the rest of their attempt stays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			age, err := results.ParseAge(olderThan)
			if err != nil {
				return err
			}
			heldAge, err := results.ParseAge(heldOlderThan)
			if err != nil {
				return fmt.Errorf("held-older-than: %w", err)
			}
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(s, os.Stderr)
			sys, err := openSystem(s, log, pruneParts)
			if err != nil {
				return err
			}
			defer sys.Close()
			cutoff := time.Now().Add(-age)
			pruned, err := store.Prune(cmd.Context(), sys.Store.Get(), cutoff, dryRun)
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d files of %d attempts older than %s\n", verb, pruned.Files, pruned.Attempts, olderThan)
			if err != nil {
				return err
			}
			held, err := store.PruneHeld(cmd.Context(), sys.Store.Get(), time.Now().Add(-heldAge), dryRun)
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d held VMs older than %s\n", verb, held, heldOlderThan)
			if err != nil {
				return err
			}
			rows, ok, err := pruneTests(cmd.Context(), s, cutoff, dryRun, log)
			if ok && err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %d test results older than %s in %s\n", verb, rows, olderThan, describeDatabase(s.Database))
			}
			return err
		},
	}
	prune.Flags().StringVar(&olderThan, "older-than", "90d", "age of the attempts to delete, such as 90d or 720h")
	prune.Flags().StringVar(&heldOlderThan, "held-older-than", "7d", "age of the held VMs to delete (a context's hold:), such as 7d")
	prune.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be deleted")
	addFlags(prune.Flags(), "data-dir", "database", "store", "store-dir", "s3-credentials-file", "log-level", "log-format")
	cmd.AddCommand(prune)
	return cmd
}

// pruneParts: the store. The state database is opened only if it exists
// (pruneTests), so it is no part: the part creates one.
var pruneParts = spec{need: []partID{partStore}}

// pruneTests deletes the per-test results that finished before cutoff
// from the state database, if there is one: prune never creates an
// SQLite file. It returns the rows deleted and whether there was a
// database.
func pruneTests(ctx context.Context, s Settings, cutoff time.Time, dryRun bool, log *slog.Logger) (int64, bool, error) {
	if !isPostgres(s.Database) {
		if _, err := os.Stat(s.Database); errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil
		}
	}
	db, err := openStateDB(s, log)
	if err != nil {
		return 0, true, err
	}
	defer db.Close()
	n, err := db.Prune(ctx, state.Prune{Tests: cutoff, DryRun: dryRun})
	return n.Tests, true, err
}
