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

// RecordTests implements state.DB. What the results imply for the
// whole task (its flakes, its share of each test's days) is taken out and
// computed again around the change: the attempts' results may arrive in
// any order and again, and a task has a handful of rows.
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
		// Two recorders of one task must not both take its share out and
		// then both put it back.
		if err := db.d.Lock(ctx, tx, "tests "+t.ID()); err != nil {
			return err
		}
		// Most tasks have one attempt: nothing of theirs to take out, and
		// no flakes.
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM test_results WHERE task_id = $1 LIMIT 1`, t.ID()).Scan(&one)
		had := err == nil
		if err != nil && !noRows(err) {
			return err
		}
		if had {
			if err := days(ctx, tx, -1, "", `r.task_id = $2`, t.ID()); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM test_results WHERE task_id = $1 AND attempt = $2`, t.ID(), t.Attempt); err != nil {
			return err
		}
		// Many rows a statement: a round trip each would cost a remote
		// database more than the rows.
		const per = 500
		for i := 0; i < len(res.Tests); i += per {
			var values []string
			var args []any
			for _, x := range res.Tests[i:min(i+per, len(res.Tests))] {
				n := len(args)
				values = append(values, fmt.Sprintf("($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)",
					n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10, n+11, n+12, n+13))
				args = append(args, t.ID(), t.Attempt, t.Repo.Name, t.SHA, t.Context, x.Name, string(x.Outcome),
					x.Duration, x.Line, x.Source, x.Message, res.LogURL, ms(fin))
			}
			if _, err := tx.Exec(ctx, `INSERT INTO test_results
				(task_id, attempt, repo, sha, context, name, outcome, duration, line, source, message, log_url, finished)
				VALUES `+strings.Join(values, ", "), args...); err != nil {
				return err
			}
		}
		if err := days(ctx, tx, 1, "", `r.task_id = $2`, t.ID()); err != nil {
			return err
		}
		if !had {
			return nil
		}
		return flakes(ctx, tx, t.ID())
	})
	if err != nil {
		return db.fail(op, err)
	}
	return nil
}

// dayMS is the length of the days of test_days (UTC).
const dayMS = 24 * 60 * 60 * 1000

// firstRun is true for a result r that is its task's first pass or
// failure of its test, in attempt order, among the earlier results e that
// match the extra condition (%s). Each task counts once, on the day of
// that result.
const firstRun = `r.outcome IN ('passed', 'failed') AND NOT EXISTS (SELECT 1 FROM test_results e
	WHERE e.task_id = r.task_id AND e.name = r.name AND e.attempt < r.attempt AND e.outcome IN ('passed', 'failed') %s)`

// rowSums are what one result r adds to its test's day (the columns of
// test_days), firstExtra the extra condition of firstRun.
func rowSums(firstExtra string) []string {
	return []string{
		`CASE WHEN r.outcome IN ('passed', 'failed') THEN 1 ELSE 0 END`,
		`CASE WHEN r.outcome = 'failed' THEN 1 ELSE 0 END`,
		`CASE WHEN r.outcome = 'skipped' THEN 1 ELSE 0 END`,
		`CASE WHEN ` + fmt.Sprintf(firstRun, firstExtra) + ` THEN 1 ELSE 0 END`,
		`CASE WHEN r.duration > 0 THEN r.duration ELSE 0 END`,
		`CASE WHEN r.duration > 0 THEN 1 ELSE 0 END`,
	}
}

var dayNames = []string{"runs", "failures", "skipped", "tasks", "dur_sum", "dur_n"}

// days adds sign times the share of the results r that match where to
// their tests' days; where's arguments start at $2, and firstExtra is the
// extra condition of firstRun.
func days(ctx context.Context, tx Querier, sign int, firstExtra, where string, args ...any) error {
	day := `r.finished / ` + strconv.Itoa(dayMS)
	var sums, scaled, set []string
	for i, e := range rowSums(firstExtra) {
		n := dayNames[i]
		sums = append(sums, "SUM("+e+") AS "+n)
		scaled = append(scaled, "s * "+n)
		set = append(set, n+" = test_days."+n+" + excluded."+n)
	}
	_, err := tx.Exec(ctx, `INSERT INTO test_days (repo, name, context, day, `+strings.Join(dayNames, ", ")+`)
		SELECT repo, name, context, day, `+strings.Join(scaled, ", ")+` FROM (
			SELECT r.repo, r.name, r.context, `+day+` AS day, CAST($1 AS BIGINT) AS s, `+strings.Join(sums, ", ")+`
			FROM test_results r WHERE `+where+`
			GROUP BY r.repo, r.name, r.context, `+day+`) AS sums
		WHERE true
		ON CONFLICT (repo, name, context, day) DO UPDATE SET `+strings.Join(set, ", "),
		append([]any{sign}, args...)...)
	return err
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

// Tests implements state.DB. Flakes come from test_flakes (a row per
// flake). The other counts come from test_days for the whole days from
// Since on and from the results for the rest of Since's day, so that a
// test's stats over weeks read a row a day. With FlakyOnly the query
// starts from the flakiest tests and reads theirs alone.
func (db *DB) Tests(ctx context.Context, f state.TestFilter) ([]state.TestStats, error) {
	const op = "test stats"
	if err := db.check(op); err != nil {
		return nil, err
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	// match is the filter on the test of alias a.
	match := func(a string) string {
		where := []string{"1 = 1"}
		for _, c := range []struct{ col, val string }{{"repo", f.Repo}, {"context", f.Context}, {"name", f.Name}} {
			if c.val != "" {
				where = append(where, a+"."+c.col+" = "+arg(c.val))
			}
		}
		return strings.Join(where, " AND ")
	}
	n := limit(f.Limit, 500, 5000)
	flaky := `SELECT fl.repo, fl.context, fl.name, COUNT(*) AS n FROM test_flakes fl WHERE ` + match("fl")
	if !f.Since.IsZero() {
		flaky += ` AND fl.finished >= ` + arg(ms(f.Since))
	}
	flaky += ` GROUP BY fl.repo, fl.context, fl.name`
	if f.FlakyOnly {
		flaky += fmt.Sprintf(` ORDER BY n DESC, fl.repo, fl.context, fl.name LIMIT %d`, n)
	}
	// The whole days from firstDay on, and the results from since to
	// the start of firstDay (none when since is a day's start).
	firstDay, since := int64(0), int64(0)
	if !f.Since.IsZero() {
		since = ms(f.Since)
		firstDay = (since + dayMS - 1) / dayMS
	}
	join := func(a string) string {
		return `flaky fl JOIN ` + map[string]string{"d": "test_days", "r": "test_results"}[a] + ` ` + a + ` ON ` + a + `.repo = fl.repo AND ` +
			a + `.name = fl.name AND ` + a + `.context = fl.context`
	}
	var stats string
	if f.FlakyOnly {
		stats = `SELECT d.repo, d.context, d.name, d.` + strings.Join(dayNames, ", d.") + ` FROM ` + join("d") + ` AND d.day >= ` + arg(firstDay)
	} else {
		stats = `SELECT d.repo, d.context, d.name, d.` + strings.Join(dayNames, ", d.") + ` FROM test_days d WHERE ` + match("d") + ` AND d.day >= ` + arg(firstDay)
	}
	if since < firstDay*dayMS {
		window := `r.finished >= ` + arg(since) + ` AND r.finished < ` + arg(firstDay*dayMS)
		stats += ` UNION ALL SELECT r.repo, r.context, r.name, ` + strings.Join(rowSums(""), ", ")
		if f.FlakyOnly {
			stats += ` FROM ` + join("r") + ` AND ` + window
		} else {
			stats += ` FROM test_results r WHERE ` + match("r") + ` AND ` + window
		}
	}
	order, having := "flakes DESC, failures DESC, s.repo, s.context, s.name", "HAVING SUM(s.runs) > 0 OR SUM(s.skipped) > 0"
	if f.FlakyOnly {
		order, having = "flakes DESC, s.repo, s.context, s.name", ""
	}
	q := fmt.Sprintf(`
	WITH flaky AS (%s), stats (repo, context, name, %s) AS (%s)
	SELECT s.repo, s.context, s.name, SUM(s.runs) AS runs, SUM(s.failures) AS failures, SUM(s.skipped) AS skipped,
		SUM(s.tasks) AS tasks, COALESCE(MAX(fl.n), 0) AS flakes, SUM(s.dur_sum) AS dur_sum, SUM(s.dur_n) AS dur_n
	FROM stats s LEFT JOIN flaky fl ON fl.repo = s.repo AND fl.context = s.context AND fl.name = s.name
	GROUP BY s.repo, s.context, s.name
	%s
	ORDER BY %s
	LIMIT %d`, flaky, strings.Join(dayNames, ", "), stats, having, order, n)
	rows, err := db.d.Query(ctx, q, args...)
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.TestStats{}
	for rows.Next() {
		var s state.TestStats
		var runs, failures, skipped, tasks, flakes, durN int64
		var durSum float64
		if err := rows.Scan(&s.Repo, &s.Context, &s.Name, &runs, &failures, &skipped, &tasks, &flakes, &durSum, &durN); err != nil {
			return nil, db.fail(op, err)
		}
		s.Runs, s.Failures, s.Skipped, s.Tasks, s.RetriedThenPassed = int(runs), int(failures), int(skipped), int(tasks), int(flakes)
		if durN > 0 {
			s.MeanDuration = durSum / float64(durN)
		}
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
	// test_results_failed: the failures alone, by test and time.
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
