package sqlstate

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Per-test results: one row per test of each attempt, from the attempt's
// result.json. A test is flaky on a commit when one attempt of a task
// failed it and another (a retry, or a re-run of the same commit and
// context) passed it.

// RecordTests implements state.DB.
func (db *DB) RecordTests(ctx context.Context, res turtles.Result) error {
	t := res.Task
	op := fmt.Sprintf("record tests of %s attempt %d", t.Key(), t.Attempt)
	if err := db.check(op); err != nil {
		return err
	}
	fin := res.Finished
	if fin.IsZero() {
		fin = db.now()
	}
	err := db.d.InTx(ctx, func(tx Querier) error {
		// Two recorders of one attempt must not both delete and then
		// both insert.
		if err := db.d.Lock(ctx, tx, fmt.Sprintf("tests %s %d", t.ID(), t.Attempt)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM test_results WHERE task_id = $1 AND attempt = $2`, t.ID(), t.Attempt); err != nil {
			return err
		}
		for _, x := range res.Tests {
			if _, err := tx.Exec(ctx, `INSERT INTO test_results
				(task_id, attempt, repo, sha, context, name, outcome, duration, line, source, message, log_url, finished)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
				t.ID(), t.Attempt, t.Repo.Name, t.SHA, t.Context, x.Name, string(x.Outcome),
				x.Duration, x.Line, x.Source, x.Message, res.LogURL, ms(fin)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return db.fail(op, err)
	}
	return nil
}

// Tests implements state.DB.
func (db *DB) Tests(ctx context.Context, f state.TestFilter) ([]state.TestStats, error) {
	const op = "test stats"
	if err := db.check(op); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Repo != "" {
		add("repo = $%d", f.Repo)
	}
	if f.Context != "" {
		add("context = $%d", f.Context)
	}
	if !f.Since.IsZero() {
		add("finished >= $%d", ms(f.Since))
	}
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	having := ""
	if f.FlakyOnly {
		having = "HAVING COALESCE(MAX(fl.n), 0) > 0"
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
		SUM(CASE WHEN s.outcome IN ('passed', 'failed') THEN 1 ELSE 0 END) AS runs,
		SUM(CASE WHEN s.outcome = 'failed' THEN 1 ELSE 0 END) AS failures,
		SUM(CASE WHEN s.outcome = 'skipped' THEN 1 ELSE 0 END) AS skipped,
		COALESCE(MAX(fl.n), 0) AS flakes,
		COALESCE(AVG(CASE WHEN s.duration > 0 THEN s.duration END), 0) AS mean
	FROM sel s LEFT JOIN flaky fl ON fl.repo = s.repo AND fl.context = s.context AND fl.name = s.name
	GROUP BY s.repo, s.context, s.name
	%s
	ORDER BY flakes DESC, failures DESC, s.repo, s.context, s.name
	LIMIT %d`, cond, having, limit(f.Limit, 500, 5000))
	rows, err := db.d.Query(ctx, q, args...)
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.TestStats{}
	for rows.Next() {
		var s state.TestStats
		var runs, failures, skipped, flakes int64
		if err := rows.Scan(&s.Repo, &s.Context, &s.Name, &runs, &failures, &skipped, &flakes, &s.MeanDuration); err != nil {
			return nil, db.fail(op, err)
		}
		s.Runs, s.Failures, s.Skipped, s.RetriedThenPassed = int(runs), int(failures), int(skipped), int(flakes)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(op, err)
	}
	rows.Close()
	for i := range out {
		if out[i].Failures == 0 {
			continue
		}
		if out[i].LastFailure, err = db.lastFailure(ctx, out[i]); err != nil {
			return nil, db.fail(op, err)
		}
	}
	return out, nil
}

func (db *DB) lastFailure(ctx context.Context, s state.TestStats) (*state.Failure, error) {
	var f state.Failure
	var line int
	var at int64
	err := db.d.QueryRow(ctx, `SELECT sha, attempt, finished, message, log_url, line FROM test_results
		WHERE repo = $1 AND context = $2 AND name = $3 AND outcome = 'failed' ORDER BY finished DESC, attempt DESC LIMIT 1`,
		s.Repo, s.Context, s.Name).Scan(&f.SHA, &f.Attempt, &at, &f.Message, &f.LogURL, &line)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last failure of %s: %w", s.Name, err)
	}
	f.Time = fromMS(at)
	if f.LogURL != "" && line > 0 {
		f.LogURL += "#L" + strconv.Itoa(line)
	}
	return &f, nil
}
