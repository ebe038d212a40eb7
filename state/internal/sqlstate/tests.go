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
		return flakes(ctx, tx, t.ID())
	})
	if err != nil {
		return db.fail(op, err)
	}
	return nil
}

// flakes records again the flakes of task id, from all its attempts'
// results: a row in test_flakes per test that an attempt failed and a
// later attempt passed, timed by the first such pass. The flakiest tests
// are then a small aggregate over rare rows, not a self-join of every
// result (the retried attempts' results may arrive in any order, hence
// the whole task each time: a handful of rows).
func flakes(ctx context.Context, tx Querier, id string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM test_flakes WHERE task_id = $1`, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, flakesInsert+` AND p.task_id = $1 GROUP BY p.task_id, p.repo, p.sha, p.context, p.name`, id)
	return err
}

// flakesInsert fills test_flakes from test_results; the caller adds the
// rest of the WHERE clause and the GROUP BY. (The migrations that made
// the table ran the same over every task.)
const flakesInsert = `INSERT INTO test_flakes (task_id, repo, sha, context, name, finished)
	SELECT p.task_id, p.repo, p.sha, p.context, p.name, MIN(p.finished)
	FROM test_results p
	WHERE p.outcome = 'passed' AND p.attempt > 1 AND EXISTS (SELECT 1 FROM test_results f
		WHERE f.task_id = p.task_id AND f.name = p.name AND f.attempt < p.attempt AND f.outcome = 'failed')`

// Tests implements state.DB. Flakes come from test_flakes. With FlakyOnly
// the query starts there, and reads the results of those tests alone
// (by the index on repo, context, name and time), so that the flakiest
// tests take time in proportion to the flaky tests' runs, not to every
// result kept.
func (db *DB) Tests(ctx context.Context, f state.TestFilter) ([]state.TestStats, error) {
	const op = "test stats"
	if err := db.check(op); err != nil {
		return nil, err
	}
	var args []any
	// cond is the filter on table alias a, for the results and the flakes
	// alike.
	cond := func(a string) string {
		var where []string
		add := func(col string, v any) {
			args = append(args, v)
			where = append(where, fmt.Sprintf("%s.%s $%d", a, col, len(args)))
		}
		if f.Repo != "" {
			add("repo =", f.Repo)
		}
		if f.Context != "" {
			add("context =", f.Context)
		}
		if f.Name != "" {
			add("name =", f.Name)
		}
		if !f.Since.IsZero() {
			add("finished >=", ms(f.Since))
		}
		if len(where) == 0 {
			return "1 = 1"
		}
		return strings.Join(where, " AND ")
	}
	flaky := fmt.Sprintf(`SELECT fl.repo, fl.context, fl.name, COUNT(*) AS n FROM test_flakes fl WHERE %s
		GROUP BY fl.repo, fl.context, fl.name`, cond("fl"))
	var q string
	if f.FlakyOnly {
		q = fmt.Sprintf(`
		WITH flaky AS (%s)
		SELECT fl.repo, fl.context, fl.name,
			SUM(CASE WHEN s.outcome IN ('passed', 'failed') THEN 1 ELSE 0 END) AS runs,
			SUM(CASE WHEN s.outcome = 'failed' THEN 1 ELSE 0 END) AS failures,
			SUM(CASE WHEN s.outcome = 'skipped' THEN 1 ELSE 0 END) AS skipped,
			COUNT(DISTINCT s.task_id) AS tasks,
			MAX(fl.n) AS flakes,
			COALESCE(AVG(CASE WHEN s.duration > 0 THEN s.duration END), 0) AS mean
		FROM flaky fl JOIN test_results s ON s.repo = fl.repo AND s.context = fl.context AND s.name = fl.name AND %s
		GROUP BY fl.repo, fl.context, fl.name
		ORDER BY flakes DESC, failures DESC, fl.repo, fl.context, fl.name
		LIMIT %d`, flaky, cond("s"), limit(f.Limit, 500, 5000))
	} else {
		q = fmt.Sprintf(`
		WITH flaky AS (%s)
		SELECT s.repo, s.context, s.name,
			SUM(CASE WHEN s.outcome IN ('passed', 'failed') THEN 1 ELSE 0 END) AS runs,
			SUM(CASE WHEN s.outcome = 'failed' THEN 1 ELSE 0 END) AS failures,
			SUM(CASE WHEN s.outcome = 'skipped' THEN 1 ELSE 0 END) AS skipped,
			COUNT(DISTINCT s.task_id) AS tasks,
			COALESCE(MAX(fl.n), 0) AS flakes,
			COALESCE(AVG(CASE WHEN s.duration > 0 THEN s.duration END), 0) AS mean
		FROM test_results s LEFT JOIN flaky fl ON fl.repo = s.repo AND fl.context = s.context AND fl.name = s.name
		WHERE %s
		GROUP BY s.repo, s.context, s.name
		ORDER BY flakes DESC, failures DESC, s.repo, s.context, s.name
		LIMIT %d`, flaky, cond("s"), limit(f.Limit, 500, 5000))
	}
	rows, err := db.d.Query(ctx, q, args...)
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.TestStats{}
	for rows.Next() {
		var s state.TestStats
		var runs, failures, skipped, tasks, flakes int64
		if err := rows.Scan(&s.Repo, &s.Context, &s.Name, &runs, &failures, &skipped, &tasks, &flakes, &s.MeanDuration); err != nil {
			return nil, db.fail(op, err)
		}
		s.Runs, s.Failures, s.Skipped, s.Tasks, s.RetriedThenPassed = int(runs), int(failures), int(skipped), int(tasks), int(flakes)
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

// TestRuns implements state.DB.
func (db *DB) TestRuns(ctx context.Context, f state.TestFilter) ([]state.TestRun, error) {
	op := fmt.Sprintf("runs of test %q of %s", f.Name, f.Repo)
	if err := db.check(op); err != nil {
		return nil, err
	}
	if f.Repo == "" || f.Name == "" {
		return nil, invalid(op, "a test's runs need its repository and name")
	}
	args := []any{f.Repo, f.Name}
	where := "repo = $1 AND name = $2"
	if f.Context != "" {
		args = append(args, f.Context)
		where += fmt.Sprintf(" AND context = $%d", len(args))
	}
	if !f.Since.IsZero() {
		args = append(args, ms(f.Since))
		where += fmt.Sprintf(" AND finished >= $%d", len(args))
	}
	rows, err := db.d.Query(ctx, `SELECT task_id, sha, context, attempt, outcome, duration, message, log_url, line, finished
		FROM test_results WHERE `+where+fmt.Sprintf(` ORDER BY finished DESC, context, attempt DESC LIMIT %d`, limit(f.Limit, 1000, 10000)), args...)
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.TestRun{}
	for rows.Next() {
		var r state.TestRun
		var outcome string
		var line int
		var at int64
		if err := rows.Scan(&r.TaskID, &r.SHA, &r.Context, &r.Attempt, &outcome, &r.Duration, &r.Message, &r.LogURL, &line, &at); err != nil {
			return nil, db.fail(op, err)
		}
		r.Outcome, r.Finished = turtles.TestOutcome(outcome), fromMS(at)
		if r.LogURL != "" && line > 0 {
			r.LogURL += "#L" + strconv.Itoa(line)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(op, err)
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
