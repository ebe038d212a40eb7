// Package results keeps the record of every task and attempt in a SQLite
// database, fed by the events bots and hooks emit. It answers the JSON API
// ("what ran for this commit, how did it end, where is its log").
//
// The recorder is a report.Handler: serve and the reporter run it beside
// the status reporter on the same event stream. Events are applied
// idempotently (by event ID), so at-least-once delivery is harmless.
package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// ErrNotFound is returned by Get for an unknown task ID.
var ErrNotFound = errors.New("task not found")

// State is where a task is in its life.
type State string

const (
	Queued   State = "queued"
	Running  State = "running"
	Retrying State = "retrying"
	Finished State = "finished"
)

// Task is the record of one task key across its attempts.
type Task struct {
	ID       string           `json:"id"`
	Key      string           `json:"key"`
	Kind     turtles.Kind     `json:"kind"`
	Repo     string           `json:"repo"`
	SHA      string           `json:"sha"`
	Ref      string           `json:"ref,omitempty"`
	PR       int              `json:"pr,omitempty"`
	Context  string           `json:"context"`
	Pool     string           `json:"pool"`
	State    State            `json:"state"`
	Outcome  *turtles.Outcome `json:"outcome,omitempty"`
	LogURL   string           `json:"log_url,omitempty"`
	Created  time.Time        `json:"created"`
	Updated  time.Time        `json:"updated"`
	Attempts []Attempt        `json:"attempts"`
}

// Attempt is one run of a task by a bot.
type Attempt struct {
	Number   int              `json:"number"`
	Bot      string           `json:"bot,omitempty"`
	State    State            `json:"state"`
	Outcome  *turtles.Outcome `json:"outcome,omitempty"`
	LogURL   string           `json:"log_url,omitempty"`
	Started  *time.Time       `json:"started,omitempty"`
	Finished *time.Time       `json:"finished,omitempty"`
}

// Filter selects tasks for List; empty fields match everything.
type Filter struct {
	State State
	Repo  string
	SHA   string
	Limit int // default 100, at most 1000
}

// DB is the results database.
type DB struct {
	db    *sql.DB
	log   *slog.Logger
	store store.Store // nil: no per-test results
	// endLog appends a line to a lost attempt's log; nil: logs are left.
	endLog func(ctx context.Context, res turtles.Result) error
}

const schema = `
CREATE TABLE IF NOT EXISTS tasks (
	id TEXT PRIMARY KEY,
	key TEXT NOT NULL,
	kind TEXT NOT NULL,
	repo TEXT NOT NULL,
	sha TEXT NOT NULL,
	ref TEXT NOT NULL DEFAULT '',
	pr INTEGER NOT NULL DEFAULT 0,
	context TEXT NOT NULL,
	pool TEXT NOT NULL,
	state TEXT NOT NULL,
	class TEXT NOT NULL DEFAULT '',
	exit_code INTEGER NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '',
	log_url TEXT NOT NULL DEFAULT '',
	attempt INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_repo_sha ON tasks(repo, sha);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, updated);
CREATE TABLE IF NOT EXISTS attempts (
	task_id TEXT NOT NULL REFERENCES tasks(id),
	number INTEGER NOT NULL,
	bot TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	class TEXT NOT NULL DEFAULT '',
	exit_code INTEGER NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '',
	log_url TEXT NOT NULL DEFAULT '',
	started INTEGER,
	finished INTEGER,
	PRIMARY KEY (task_id, number)
);
CREATE TABLE IF NOT EXISTS events_seen (
	id TEXT PRIMARY KEY,
	at INTEGER NOT NULL
);
`

// Open opens or creates the database at path.
func Open(path string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open results db %s: %w", path, err)
	}
	// One writer at a time avoids SQLITE_BUSY between our own goroutines.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + testsSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create results schema in %s: %w", path, err)
	}
	if err := migrateBeat(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("add heartbeats to results schema in %s: %w", path, err)
	}
	return &DB{db: db, log: log}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Handle records ev. It implements report.Handler.
func (d *DB) Handle(ctx context.Context, ev turtles.Event) error {
	if ev.Type == turtles.EventHeartbeat {
		return d.heartbeat(ctx, ev) // idempotent; not worth remembering
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record event %s: %w", ev.ID, err)
	}
	defer tx.Rollback()
	if ev.ID != "" {
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO events_seen (id, at) VALUES (?, ?)`, ev.ID, ev.Time.Unix())
		if err != nil {
			return fmt.Errorf("record event %s: %w", ev.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // seen before
		}
	}
	if ev.Type == turtles.EventLost {
		res, err := d.lost(ctx, tx, ev)
		if err != nil {
			return fmt.Errorf("record %s event for %s: %w", ev.Type, ev.Task.Key(), err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("record event %s: %w", ev.ID, err)
		}
		if res != nil && d.endLog != nil {
			if err := d.endLog(ctx, *res); err != nil {
				d.log.Warn("end the files of a lost attempt", "task", res.Task.Key(), "attempt", res.Task.Attempt, "err", err)
			}
		}
		return nil
	}
	if err := apply(ctx, tx, ev); err != nil {
		return fmt.Errorf("record %s event for %s: %w", ev.Type, ev.Task.Key(), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record event %s: %w", ev.ID, err)
	}
	if ev.Type == turtles.EventFinished || ev.Type == turtles.EventRetrying {
		d.recordFromStore(ctx, ev)
	}
	return nil
}

func apply(ctx context.Context, tx *sql.Tx, ev turtles.Event) error {
	t := ev.Task
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	state := stateOf(ev.Type)
	var cur struct {
		attempt int
		state   string
	}
	err := tx.QueryRowContext(ctx, `SELECT attempt, state FROM tasks WHERE id = ?`, t.ID()).Scan(&cur.attempt, &cur.state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO tasks (id, key, kind, repo, sha, ref, pr, context, pool, state, created, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID(), t.Key(), t.Kind, t.Repo.Name, t.SHA, t.Ref, t.PR, t.Context, t.Pool, Queued, at.UnixMilli(), at.UnixMilli())
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	// Events of an older attempt than the one recorded change only that
	// attempt's row, never the task's state: a bot that lost its lease
	// must not turn a finished task back to running.
	stale := t.Attempt < cur.attempt || (t.Attempt == cur.attempt && cur.state == string(Finished) && state != Finished)
	// A task is queued before it starts, but the two events come from
	// different processes (the planner and the bot), so "queued" can
	// arrive after "started": it must not turn a running task back.
	if ev.Type == turtles.EventQueued && err == nil && cur.attempt >= t.Attempt {
		stale = true
	}
	if ev.Type != turtles.EventQueued {
		if err := upsertAttempt(ctx, tx, ev, state, at); err != nil {
			return err
		}
	}
	if stale {
		return nil
	}
	o := turtles.Outcome{}
	if ev.Outcome != nil {
		o = *ev.Outcome
	}
	attempt := t.Attempt
	if ev.Type == turtles.EventQueued {
		attempt = cur.attempt // a queued task has not started an attempt yet
		if attempt >= t.Attempt {
			attempt = t.Attempt - 1
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE tasks SET state = ?, class = ?, exit_code = ?, reason = ?,
		log_url = CASE WHEN ? != '' THEN ? ELSE log_url END, attempt = ?, updated = ?, pool = ?
		WHERE id = ?`,
		state, o.Class, o.ExitCode, o.Reason, ev.LogURL, ev.LogURL, attempt, at.UnixMilli(), t.Pool, t.ID())
	return err
}

func upsertAttempt(ctx context.Context, tx *sql.Tx, ev turtles.Event, state State, at time.Time) error {
	o := turtles.Outcome{}
	if ev.Outcome != nil {
		o = *ev.Outcome
	}
	var started, finished any
	if ev.Type == turtles.EventStarted {
		started = at.UnixMilli()
	} else {
		finished = at.UnixMilli()
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO attempts (task_id, number, bot, state, class, exit_code, reason, log_url, started, finished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (task_id, number) DO UPDATE SET
			bot = CASE WHEN excluded.bot != '' THEN excluded.bot ELSE bot END,
			state = CASE WHEN state = 'finished' OR state = 'retrying' THEN state ELSE excluded.state END,
			class = CASE WHEN excluded.class != '' THEN excluded.class ELSE class END,
			exit_code = CASE WHEN excluded.class != '' THEN excluded.exit_code ELSE exit_code END,
			reason = CASE WHEN excluded.reason != '' THEN excluded.reason ELSE reason END,
			log_url = CASE WHEN excluded.log_url != '' THEN excluded.log_url ELSE log_url END,
			started = COALESCE(started, excluded.started),
			finished = COALESCE(excluded.finished, finished)`,
		ev.Task.ID(), ev.Task.Attempt, ev.Bot, state, o.Class, o.ExitCode, o.Reason, ev.LogURL, started, finished)
	return err
}

func stateOf(t turtles.EventType) State {
	switch t {
	case turtles.EventStarted:
		return Running
	case turtles.EventRetrying:
		return Retrying
	case turtles.EventFinished:
		return Finished
	default:
		return Queued
	}
}

const taskColumns = `id, key, kind, repo, sha, ref, pr, context, pool, state, class, exit_code, reason, log_url, created, updated`

// List returns tasks matching f, most recently updated first.
func (d *DB) List(ctx context.Context, f Filter) ([]Task, error) {
	var where []string
	var args []any
	for _, c := range []struct {
		col, val string
	}{{"state", string(f.State)}, {"repo", f.Repo}, {"sha", f.SHA}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	q := `SELECT ` + taskColumns + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q += fmt.Sprintf(` ORDER BY updated DESC, id LIMIT %d`, limit)
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	out := []Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	for i := range out {
		if out[i].Attempts, err = d.attempts(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Get returns one task with its attempts; ErrNotFound if unknown.
func (d *DB) Get(ctx context.Context, id string) (Task, error) {
	row := d.db.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id)
	t, err := scanTask(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Task{}, fmt.Errorf("get task %s: %w", id, err)
	}
	t.Attempts, err = d.attempts(ctx, id)
	return t, err
}

type scanner interface{ Scan(...any) error }

func scanTask(s scanner) (Task, error) {
	var t Task
	var class, reason string
	var exit int
	var created, updated int64
	err := s.Scan(&t.ID, &t.Key, &t.Kind, &t.Repo, &t.SHA, &t.Ref, &t.PR, &t.Context, &t.Pool, &t.State,
		&class, &exit, &reason, &t.LogURL, &created, &updated)
	if err != nil {
		return Task{}, err
	}
	if class != "" {
		t.Outcome = &turtles.Outcome{Class: turtles.Class(class), ExitCode: exit, Reason: reason}
	}
	t.Created = time.UnixMilli(created).UTC()
	t.Updated = time.UnixMilli(updated).UTC()
	return t, nil
}

func (d *DB) attempts(ctx context.Context, id string) ([]Attempt, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT number, bot, state, class, exit_code, reason, log_url, started, finished
		FROM attempts WHERE task_id = ? ORDER BY number`, id)
	if err != nil {
		return nil, fmt.Errorf("attempts of %s: %w", id, err)
	}
	defer rows.Close()
	out := []Attempt{}
	for rows.Next() {
		var a Attempt
		var class, reason string
		var exit int
		var started, finished sql.NullInt64
		if err := rows.Scan(&a.Number, &a.Bot, &a.State, &class, &exit, &reason, &a.LogURL, &started, &finished); err != nil {
			return nil, fmt.Errorf("attempts of %s: %w", id, err)
		}
		if class != "" {
			a.Outcome = &turtles.Outcome{Class: turtles.Class(class), ExitCode: exit, Reason: reason}
		}
		if started.Valid {
			ts := time.UnixMilli(started.Int64).UTC()
			a.Started = &ts
		}
		if finished.Valid {
			ts := time.UnixMilli(finished.Int64).UTC()
			a.Finished = &ts
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Prune forgets event IDs older than age; they only guard against
// duplicates delivered close together.
func (d *DB) Prune(ctx context.Context, age time.Duration) error {
	_, err := d.db.ExecContext(ctx, `DELETE FROM events_seen WHERE at < ?`, time.Now().Add(-age).Unix())
	if err != nil {
		return fmt.Errorf("prune seen events: %w", err)
	}
	return nil
}
