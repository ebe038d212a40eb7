package results

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// Per-test results: one row per test of each attempt, from the attempt's
// result.json. A test is flaky on a commit when one attempt of a task
// failed it and another (a retry, or a re-run of the same commit and
// context) passed it.

const testsSchema = `
CREATE TABLE IF NOT EXISTS test_results (
	task_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	repo TEXT NOT NULL,
	sha TEXT NOT NULL,
	context TEXT NOT NULL,
	name TEXT NOT NULL,
	outcome TEXT NOT NULL,
	duration REAL NOT NULL DEFAULT 0,
	line INTEGER NOT NULL DEFAULT 0,
	source TEXT NOT NULL DEFAULT '',
	message TEXT NOT NULL DEFAULT '',
	log_url TEXT NOT NULL DEFAULT '',
	finished INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS test_results_attempt ON test_results(task_id, attempt);
CREATE INDEX IF NOT EXISTS test_results_name ON test_results(repo, context, name, finished);
CREATE INDEX IF NOT EXISTS test_results_finished ON test_results(finished);
`

// maxResultSize bounds the result.json the recorder reads.
const maxResultSize = 64 << 20

// ReadResultsFrom makes the recorder read each finished attempt's
// result.json from st and record its per-test results. Without it only
// tasks and attempts are recorded.
func (d *DB) ReadResultsFrom(st store.Store) { d.store = st }

// recordFromStore is called after an event that ends an attempt.
func (d *DB) recordFromStore(ctx context.Context, ev turtles.Event) {
	if d.store == nil || ev.Task.Kind != turtles.KindTest || ev.Task.Attempt < 1 {
		return
	}
	key := store.AttemptPrefix(ev.Task) + store.ResultName
	rc, _, err := d.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotExist) {
		return // the attempt died before writing one
	}
	if err != nil {
		d.log.Warn("read result for per-test results", "key", key, "err", err)
		return
	}
	defer rc.Close()
	var res turtles.Result
	if err := json.NewDecoder(io.LimitReader(rc, maxResultSize)).Decode(&res); err != nil {
		d.log.Warn("decode result for per-test results", "key", key, "err", err)
		return
	}
	res.Task = ev.Task // the event's identity, not the file's say
	if ev.LogURL != "" {
		// The serving process linked the event; an older bot's link in
		// result.json pointed at its own default URL.
		res.LogURL = ev.LogURL
	}
	if err := d.RecordTests(ctx, res); err != nil {
		d.log.Warn("record per-test results", "task", ev.Task.Key(), "err", err)
	}
}

// RecordTests stores the per-test results of one attempt, replacing what
// was recorded for it before.
func (d *DB) RecordTests(ctx context.Context, res turtles.Result) error {
	t := res.Task
	fin := res.Finished
	if fin.IsZero() {
		fin = time.Now()
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record tests of %s: %w", t.Key(), err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM test_results WHERE task_id = ? AND attempt = ?`, t.ID(), t.Attempt); err != nil {
		return fmt.Errorf("record tests of %s: %w", t.Key(), err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO test_results
		(task_id, attempt, repo, sha, context, name, outcome, duration, line, source, message, log_url, finished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("record tests of %s: %w", t.Key(), err)
	}
	defer stmt.Close()
	for _, x := range res.Tests {
		if _, err := stmt.ExecContext(ctx, t.ID(), t.Attempt, t.Repo.Name, t.SHA, t.Context, x.Name, string(x.Outcome),
			x.Duration, x.Line, x.Source, x.Message, res.LogURL, fin.UnixMilli()); err != nil {
			return fmt.Errorf("record tests of %s: %w", t.Key(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record tests of %s: %w", t.Key(), err)
	}
	return nil
}

// TestFilter selects tests for Tests; empty fields match everything.
type TestFilter struct {
	Repo    string
	Context string
	Since   time.Time
	// FlakyOnly keeps tests that were retried-then-passed at least once.
	FlakyOnly bool
	Limit     int // default 500, at most 5000
}

// TestStats is the history of one test in one context.
type TestStats struct {
	Repo    string `json:"repo"`
	Context string `json:"context"`
	Name    string `json:"name"`
	// Runs counts attempts that passed or failed the test.
	Runs     int `json:"runs"`
	Failures int `json:"failures"`
	Skipped  int `json:"skipped"`
	// RetriedThenPassed counts commits on which the test failed in one
	// attempt and passed in a later one: flakes.
	RetriedThenPassed int      `json:"retried_then_passed"`
	MeanDuration      float64  `json:"mean_duration_seconds,omitempty"`
	LastFailure       *Failure `json:"last_failure,omitempty"`
}

// Failure points at one failed run of a test.
type Failure struct {
	SHA     string    `json:"sha"`
	Attempt int       `json:"attempt"`
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
	// LogURL links the attempt's log, at the line that reported the
	// failure when it came from the log.
	LogURL string `json:"log_url,omitempty"`
}

// Tests summarises per-test results, worst first: most flakes, then most
// failures.
func (d *DB) Tests(ctx context.Context, f TestFilter) ([]TestStats, error) {
	var where []string
	var args []any
	if f.Repo != "" {
		where, args = append(where, "repo = ?"), append(args, f.Repo)
	}
	if f.Context != "" {
		where, args = append(where, "context = ?"), append(args, f.Context)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "finished >= ?"), append(args, f.Since.UnixMilli())
	}
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	limit = min(limit, 5000)
	having := ""
	if f.FlakyOnly {
		having = "HAVING flakes > 0"
	}
	// A flake: on one task (repo, commit, context), an attempt failed the
	// test and a later attempt passed it.
	q := fmt.Sprintf(`
	WITH sel AS (SELECT * FROM test_results %s),
	flaky AS (
		SELECT f.repo, f.context, f.name, COUNT(DISTINCT f.task_id) AS n
		FROM sel f JOIN sel p ON p.task_id = f.task_id AND p.name = f.name AND p.attempt > f.attempt
		WHERE f.outcome = 'failed' AND p.outcome = 'passed'
		GROUP BY f.repo, f.context, f.name
	)
	SELECT s.repo, s.context, s.name,
		SUM(s.outcome IN ('passed', 'failed')) AS runs,
		SUM(s.outcome = 'failed') AS failures,
		SUM(s.outcome = 'skipped') AS skipped,
		COALESCE(MAX(fl.n), 0) AS flakes,
		COALESCE(AVG(CASE WHEN s.duration > 0 THEN s.duration END), 0) AS mean
	FROM sel s LEFT JOIN flaky fl ON fl.repo = s.repo AND fl.context = s.context AND fl.name = s.name
	GROUP BY s.repo, s.context, s.name
	%s
	ORDER BY flakes DESC, failures DESC, s.repo, s.context, s.name
	LIMIT %d`, cond, having, limit)
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("test stats: %w", err)
	}
	defer rows.Close()
	out := []TestStats{}
	for rows.Next() {
		var s TestStats
		if err := rows.Scan(&s.Repo, &s.Context, &s.Name, &s.Runs, &s.Failures, &s.Skipped, &s.RetriedThenPassed, &s.MeanDuration); err != nil {
			return nil, fmt.Errorf("test stats: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("test stats: %w", err)
	}
	rows.Close()
	for i := range out {
		if out[i].Failures == 0 {
			continue
		}
		if out[i].LastFailure, err = d.lastFailure(ctx, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (d *DB) lastFailure(ctx context.Context, s TestStats) (*Failure, error) {
	var f Failure
	var line int
	var at int64
	err := d.db.QueryRowContext(ctx, `SELECT sha, attempt, finished, message, log_url, line FROM test_results
		WHERE repo = ? AND context = ? AND name = ? AND outcome = 'failed' ORDER BY finished DESC LIMIT 1`,
		s.Repo, s.Context, s.Name).Scan(&f.SHA, &f.Attempt, &at, &f.Message, &f.LogURL, &line)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last failure of %s: %w", s.Name, err)
	}
	f.Time = time.UnixMilli(at).UTC()
	if f.LogURL != "" && line > 0 {
		f.LogURL += "#L" + strconv.Itoa(line)
	}
	return &f, nil
}

// ParseAge reads an age such as "14d", "36h" or "90m": time.ParseDuration
// plus days, which people use for retention and history.
func ParseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("bad age %q: want e.g. 14d or 36h", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad age %q: want e.g. 14d or 36h", s)
	}
	return d, nil
}

// PruneTests forgets the per-test results of attempts that finished
// before cutoff and returns how many rows it deleted (with dryRun, how
// many it would delete). `turtles store prune` calls it with the cutoff of
// the logs it deletes, so that no test result outlives its log.
func (d *DB) PruneTests(ctx context.Context, cutoff time.Time, dryRun bool) (int64, error) {
	if dryRun {
		var n int64
		err := d.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM test_results WHERE finished < ?`, cutoff.UnixMilli()).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("count old test results: %w", err)
		}
		return n, nil
	}
	r, err := d.db.ExecContext(ctx, `DELETE FROM test_results WHERE finished < ?`, cutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune test results: %w", err)
	}
	n, _ := r.RowsAffected()
	return n, nil
}
