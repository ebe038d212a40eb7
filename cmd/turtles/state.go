package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/postgres"
	"github.com/turtles-ci/turtles/state/sqlite"
)

// The state database (package state): the embedded SQLite file
// DATA-DIR/state.db for `turtles serve`, or PostgreSQL, shared by every
// hook, reporter and web replica, with --database postgres://...

// stateOpenTimeout bounds connecting to the database and migrating its
// schema at start: a server that does not answer within it is an error
// at start, not a hang.
const stateOpenTimeout = 30 * time.Second

// pruneEvery is how often a long-running process forgets what the
// retention settings let go (Settings.prune). Several processes pruning
// one database is harmless: each deletes what is left.
const pruneEvery = time.Hour

// stateOptions are the options of the state database's settings.
func stateOptions() []option {
	return []option{
		opt("database", "state database: an SQLite file (default DATA-DIR/state.db), or postgres://USER:PASS@HOST:PORT/DB for PostgreSQL, shared by every hook, reporter and web replica", str(func(s *Settings) *string { return &s.Database })),
		opt("retain-deliveries", "how long webhook deliveries are remembered, so that a redelivery is not queued twice", dur(func(s *Settings) *time.Duration { return &s.RetainDeliveries })),
		opt("retain-events", "how long event IDs are remembered, so that an event delivered twice is recorded once", dur(func(s *Settings) *time.Duration { return &s.RetainEvents })),
		opt("retain-finals", "how long the final status of each task attempt is remembered, so that it is posted exactly once and never replaced by an older attempt's", dur(func(s *Settings) *time.Duration { return &s.RetainFinals })),
		opt("retain-tasks", "how long finished tasks and their attempts stay in the history (the JSON API and pages); 0 keeps them", dur(func(s *Settings) *time.Duration { return &s.RetainTasks })),
	}
}

// stateFlags are the options of every process that keeps state.
var stateFlags = []string{"database", "retain-deliveries", "retain-events", "retain-finals", "retain-tasks", "retain-bots"}

func stateDefaults(s *Settings) {
	// Forges redeliver within hours; a week is plenty.
	s.RetainDeliveries = 7 * 24 * time.Hour
	// Event IDs only guard against duplicates delivered close together.
	s.RetainEvents = 7 * 24 * time.Hour
	// A final not posted within a month never will be.
	s.RetainFinals = 30 * 24 * time.Hour
}

func (s *Settings) validateState() error {
	var errs []error
	if isPostgres(s.Database) {
		if _, err := postgres.ParseURL(s.Database); err != nil {
			errs = append(errs, fmt.Errorf("database: %w", err))
		}
	} else if strings.Contains(s.Database, "://") {
		errs = append(errs, fmt.Errorf("database: want a file or a postgres:// URL, got a %s URL", strings.SplitN(s.Database, "://", 2)[0]))
	}
	for _, r := range []struct {
		name string
		d    time.Duration
	}{{"retain-deliveries", s.RetainDeliveries}, {"retain-events", s.RetainEvents}, {"retain-finals", s.RetainFinals}, {"retain-tasks", s.RetainTasks}} {
		if r.d < 0 {
			errs = append(errs, fmt.Errorf("%s: negative", r.name))
		}
	}
	if s.RetainDeliveries > 0 && s.RetainDeliveries < time.Hour {
		errs = append(errs, fmt.Errorf("retain-deliveries: %s is shorter than the hour within which forges redeliver", s.RetainDeliveries))
	}
	return errors.Join(errs...)
}

func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// describeDatabase is --database for logs and errors: the file, or the
// server, database and user without the password.
func describeDatabase(db string) string {
	if !isPostgres(db) {
		return "SQLite file " + db
	}
	cfg, err := postgres.ParseURL(db)
	if err != nil {
		return "PostgreSQL (URL not shown: it does not parse)"
	}
	return postgres.Describe(cfg)
}

// openState opens the database --database names, creating the SQLite
// file's directory if needed.
func (sys *system) openState() error {
	db, err := openStateDB(sys.s, sys.log)
	if err != nil {
		return err
	}
	sys.onClose(db.Close)
	sys.State.Set(db)
	return nil
}

func openStateDB(s Settings, log *slog.Logger) (state.DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateOpenTimeout)
	defer cancel()
	opts := state.Options{Log: log.With("part", "state")}
	if isPostgres(s.Database) {
		db, err := postgres.Open(ctx, s.Database, opts)
		if err != nil {
			return nil, err // names the server, never the password
		}
		return db, nil
	}
	if err := os.MkdirAll(filepath.Dir(s.Database), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(s.Database), err)
	}
	db, err := sqlite.Open(ctx, s.Database, opts)
	if err != nil {
		return nil, err
	}
	return db, nil
}

// prune is what the retention settings let go, as of now.
func (s Settings) prune(now time.Time) state.Prune {
	var p state.Prune
	cut := func(d time.Duration) time.Time {
		if d <= 0 {
			return time.Time{}
		}
		return now.Add(-d)
	}
	p.Deliveries = cut(s.RetainDeliveries)
	p.Events = cut(s.RetainEvents)
	p.Finals = cut(s.RetainFinals)
	p.Tasks = cut(s.RetainTasks)
	p.Bots = cut(s.RetainBots)
	// What people did to a task is kept as long as its history.
	p.Actions = p.Tasks
	return p
}

// runPruner prunes db every pruneEvery, from now on, until ctx ends.
func (sys *system) runPruner(ctx context.Context, db state.DB) {
	log := sys.log.With("part", "state")
	for {
		n, err := db.Prune(ctx, sys.s.prune(time.Now()))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("prune the state database; trying again later", "in", pruneEvery, "err", err)
		case n != (state.Pruned{}):
			log.Info("pruned the state database", "deliveries", n.Deliveries, "events", n.Events, "finals", n.Finals,
				"tasks", n.Tasks, "attempts", n.Attempts, "bots", n.Bots, "actions", n.Actions)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pruneEvery):
		}
	}
}
