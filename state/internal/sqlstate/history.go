package sqlstate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// The history of tasks and attempts, fed by task events.

func stateOf(t turtles.EventType) state.TaskState {
	switch t {
	case turtles.EventStarted:
		return state.Running
	case turtles.EventRetrying:
		return state.Retrying
	case turtles.EventFinished:
		return state.Finished
	default:
		return state.Queued
	}
}

// Record implements state.DB.
func (db *DB) Record(ctx context.Context, ev turtles.Event) (state.Recorded, error) {
	op := fmt.Sprintf("record %s event %s of %s", ev.Type, ev.ID, ev.Task.Key())
	if err := db.check(op); err != nil {
		return state.Recorded{}, err
	}
	if ev.Time.IsZero() {
		ev.Time = db.now()
	}
	if ev.Type == turtles.EventHeartbeat {
		if err := db.heartbeat(ctx, ev); err != nil {
			return state.Recorded{}, db.fail(op, err)
		}
		return state.Recorded{New: true}, nil
	}
	var rec state.Recorded
	err := db.d.InTx(ctx, func(tx Querier) error {
		rec = state.Recorded{}
		// Every event of a task takes the task's lock first: the events
		// of one task apply one at a time, in any order, from any number
		// of recorders.
		if err := db.d.Lock(ctx, tx, "task "+ev.Task.ID()); err != nil {
			return err
		}
		if ev.ID != "" {
			n, err := tx.Exec(ctx, `INSERT INTO events_seen (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, ev.ID, ms(db.now()))
			if err != nil {
				return err
			}
			if n == 0 {
				return nil // seen before
			}
		}
		rec.New = true
		if ev.Type == turtles.EventLost {
			var err error
			rec.Lost, err = db.lost(ctx, tx, ev)
			return err
		}
		return apply(ctx, tx, ev)
	})
	if err != nil {
		return state.Recorded{}, db.fail(op, err)
	}
	return rec, nil
}

func apply(ctx context.Context, tx Querier, ev turtles.Event) error {
	t := ev.Task
	at := ms(ev.Time)
	st := stateOf(ev.Type)
	n, err := tx.Exec(ctx, `INSERT INTO tasks (id, key, kind, repo, sha, ref, pr, context, pool, state, created, updated)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT (id) DO NOTHING`,
		t.ID(), t.Key(), string(t.Kind), t.Repo.Name, t.SHA, t.Ref, t.PR, t.Context, t.Pool, string(state.Queued), at)
	if err != nil {
		return err
	}
	created := n == 1
	var cur struct {
		attempt int
		state   string
	}
	if err := tx.QueryRow(ctx, `SELECT attempt, state FROM tasks WHERE id = $1`, t.ID()).Scan(&cur.attempt, &cur.state); err != nil {
		return err
	}
	// Events of an older attempt than the one recorded change only that
	// attempt's row, never the task's state: a bot that lost its lease
	// must not turn a finished task back to running.
	stale := t.Attempt < cur.attempt || (t.Attempt == cur.attempt && cur.state == string(state.Finished) && st != state.Finished)
	// A task is queued before it starts, but the two events come from
	// different processes (the planner and the bot), so "queued" can
	// arrive after "started": it must not turn a running task back.
	if ev.Type == turtles.EventQueued && !created && cur.attempt >= t.Attempt {
		stale = true
	}
	if ev.Type != turtles.EventQueued {
		if err := upsertAttempt(ctx, tx, ev, st, at); err != nil {
			return err
		}
		if err := recordIssue(ctx, tx, ev, at); err != nil {
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
	_, err = tx.Exec(ctx, `UPDATE tasks SET state = $1, class = $2, exit_code = $3, reason = $4,
		log_url = CASE WHEN CAST($5 AS TEXT) = '' THEN log_url ELSE CAST($5 AS TEXT) END,
		attempt = $6, updated = $7, pool = $8, verdict = $10
		WHERE id = $9`,
		string(st), string(o.Class), o.ExitCode, o.Reason, ev.LogURL, attempt, at, t.Pool, t.ID(), string(turtles.VerdictOf(o)))
	return err
}

func upsertAttempt(ctx context.Context, tx Querier, ev turtles.Event, st state.TaskState, at int64) error {
	o := turtles.Outcome{}
	if ev.Outcome != nil {
		o = *ev.Outcome
	}
	var started, finished sql.NullInt64
	if ev.Type == turtles.EventStarted {
		started = sql.NullInt64{Int64: at, Valid: true}
	} else {
		finished = sql.NullInt64{Int64: at, Valid: true}
	}
	_, err := tx.Exec(ctx, `INSERT INTO attempts (task_id, number, bot, state, class, exit_code, reason, log_url, started, finished, verdict)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (task_id, number) DO UPDATE SET
			bot = CASE WHEN excluded.bot <> '' THEN excluded.bot ELSE attempts.bot END,
			state = CASE WHEN attempts.state = 'finished' OR attempts.state = 'retrying' THEN attempts.state ELSE excluded.state END,
			class = CASE WHEN excluded.class <> '' THEN excluded.class ELSE attempts.class END,
			exit_code = CASE WHEN excluded.class <> '' THEN excluded.exit_code ELSE attempts.exit_code END,
			reason = CASE WHEN excluded.reason <> '' THEN excluded.reason ELSE attempts.reason END,
			verdict = CASE WHEN excluded.class <> '' THEN excluded.verdict ELSE attempts.verdict END,
			log_url = CASE WHEN excluded.log_url <> '' THEN excluded.log_url ELSE attempts.log_url END,
			started = COALESCE(attempts.started, excluded.started),
			finished = COALESCE(excluded.finished, attempts.finished)`,
		ev.Task.ID(), ev.Task.Attempt, ev.Bot, string(st), string(o.Class), o.ExitCode, o.Reason, ev.LogURL, started, finished,
		string(turtles.VerdictOf(o)))
	return err
}

// heartbeat keeps the time of ev, a heartbeat, on the attempt still
// running that it is about. A heartbeat creates nothing: one that arrives
// before its attempt's "started" event is of no use.
func (db *DB) heartbeat(ctx context.Context, ev turtles.Event) error {
	_, err := db.d.Exec(ctx, `UPDATE attempts SET beat = CASE WHEN COALESCE(beat, 0) > CAST($1 AS BIGINT) THEN beat ELSE CAST($1 AS BIGINT) END
		WHERE task_id = $2 AND number >= $3 AND state = $4`,
		ms(ev.Time), ev.Task.ID(), ev.Task.Attempt, string(state.Running))
	return err
}

// lost ends, as infra, the attempt that ev (an EventLost from the queue)
// took back: the one of ev's task still running, numbered from ev's
// attempt on (a bot may have run it as a later attempt, see
// store.ClaimAttempt). The reason names the bot and its last heartbeat.
// The task's next delivery has not started yet (the queue emits the event
// with it), so at most one attempt matches; none when the bot died before
// it started. The reporter ignores the event: the task runs again.
func (db *DB) lost(ctx context.Context, tx Querier, ev turtles.Event) (*turtles.Result, error) {
	t := ev.Task
	var (
		number  int
		bot     string
		beat    sql.NullInt64
		started sql.NullInt64
	)
	err := tx.QueryRow(ctx, `SELECT number, bot, COALESCE(beat, started), started FROM attempts
		WHERE task_id = $1 AND number >= $2 AND state = $3 ORDER BY number DESC LIMIT 1`,
		t.ID(), t.Attempt, string(state.Running)).Scan(&number, &bot, &beat, &started)
	if noRows(err) {
		db.opts.Log.Info("a lost delivery had not started an attempt", "task", t.Key(), "attempt", t.Attempt)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	at := ev.Time
	if beat.Valid {
		at = time.UnixMilli(beat.Int64)
	}
	reason := state.LostReason(bot, at)
	if ev.Outcome != nil && ev.Outcome.Reason != "" {
		db.opts.Log.Warn("attempt lost", "task", t.Key(), "attempt", number, "bot", bot, "queue", ev.Outcome.Reason)
	}
	fin := ev.Time
	if _, err := tx.Exec(ctx, `UPDATE attempts SET state = $1, class = $2, exit_code = -1, reason = $3, finished = $4, verdict = $7
		WHERE task_id = $5 AND number = $6`, string(state.Retrying), string(turtles.Infra), reason, ms(fin), t.ID(), number,
		string(turtles.VerdictInfra)); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE tasks SET state = $1, class = $2, exit_code = -1, reason = $3, updated = $4, verdict = $8
		WHERE id = $5 AND attempt = $6 AND state = $7`,
		string(state.Retrying), string(turtles.Infra), reason, ms(fin), t.ID(), number, string(state.Running),
		string(turtles.VerdictInfra)); err != nil {
		return nil, err
	}
	t.Attempt = number
	res := &turtles.Result{Task: t, Bot: bot, Finished: fin,
		Outcome: turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: reason, Verdict: turtles.VerdictInfra}}
	if started.Valid {
		res.Started = time.UnixMilli(started.Int64)
		res.Duration = res.Finished.Sub(res.Started).Seconds()
	}
	return res, nil
}

const taskColumns = `id, key, kind, repo, sha, ref, pr, context, pool, state, class, exit_code, reason, log_url, created, updated, verdict`

// List implements state.DB. Each filter has an index that leads with
// its column and ends with (updated, id), so that a page is a range scan
// in the order it is shown, however deep: the cursor is a row value, not
// an OFFSET. The attempts of a page come in one more query.
func (db *DB) List(ctx context.Context, f state.Filter) ([]state.Task, error) {
	const op = "list tasks"
	if err := db.check(op); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	add := func(cond string, vals ...any) {
		for i := range vals {
			args = append(args, vals[i])
			cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(args)), 1)
		}
		where = append(where, cond)
	}
	for _, c := range []struct {
		col, val string
	}{{"state", string(f.State)}, {"repo", f.Repo}, {"ref", f.Ref}, {"context", f.Context},
		{"class", string(f.Class)}, {"verdict", string(f.Verdict)}} {
		if c.val != "" {
			add(c.col+" = ?", c.val)
		}
	}
	if f.SHA != "" {
		// A prefix as a range, which an index serves ("~" sorts after
		// every hex digit).
		add("sha >= ? AND sha < ?", f.SHA, f.SHA+"~")
	}
	if f.PR != 0 {
		add("pr = ?", f.PR)
	}
	if !f.Since.IsZero() {
		add("updated >= ?", ms(f.Since))
	}
	if !f.Until.IsZero() {
		add("updated < ?", ms(f.Until))
	}
	if f.After != nil {
		add("(updated, id) < (?, ?)", ms(f.After.Updated), f.After.ID)
	}
	q := `SELECT ` + taskColumns + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(` ORDER BY updated DESC, id DESC LIMIT %d`, limit(f.Limit, 100, 1000))
	out, err := db.tasks(ctx, q, args...)
	if err != nil {
		return nil, db.fail(op, err)
	}
	return out, nil
}

func (db *DB) tasks(ctx context.Context, q string, args ...any) ([]state.Task, error) {
	rows, err := db.d.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []state.Task{}
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]string, len(out))
	for i := range out {
		ids[i] = out[i].ID
	}
	attempts, err := db.attempts(ctx, ids...)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Attempts = attempts[out[i].ID]
		if out[i].Attempts == nil {
			out[i].Attempts = []state.Attempt{}
		}
	}
	return out, nil
}

// Get implements state.DB.
func (db *DB) Get(ctx context.Context, id string) (state.Task, error) {
	op := "get task " + id
	if err := db.check(op); err != nil {
		return state.Task{}, err
	}
	t, err := scanTask(db.d.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`, id))
	if noRows(err) {
		return state.Task{}, fmt.Errorf("%s: %w", op, state.ErrNotFound)
	}
	if err != nil {
		return state.Task{}, db.fail(op, err)
	}
	attempts, err := db.attempts(ctx, id)
	if err != nil {
		return state.Task{}, db.fail(op, err)
	}
	t.Attempts = attempts[id]
	if t.Attempts == nil {
		t.Attempts = []state.Attempt{}
	}
	return t, nil
}

func scanTask(s Row) (state.Task, error) {
	var t state.Task
	var kind, st, class, reason, verdict string
	var exit int
	var created, updated int64
	err := s.Scan(&t.ID, &t.Key, &kind, &t.Repo, &t.SHA, &t.Ref, &t.PR, &t.Context, &t.Pool, &st,
		&class, &exit, &reason, &t.LogURL, &created, &updated, &verdict)
	if err != nil {
		return state.Task{}, err
	}
	t.Kind, t.State = turtles.Kind(kind), state.TaskState(st)
	if class != "" {
		t.Outcome = &turtles.Outcome{Class: turtles.Class(class), ExitCode: exit, Reason: reason, Verdict: turtles.Verdict(verdict)}
	}
	t.Created = fromMS(created)
	t.Updated = fromMS(updated)
	return t, nil
}

// attempts returns the attempts of the tasks ids, by task, in order.
func (db *DB) attempts(ctx context.Context, ids ...string) (map[string][]state.Attempt, error) {
	in := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		in[i] = fmt.Sprintf("$%d", i+1)
		args[i] = id
	}
	rows, err := db.d.Query(ctx, `SELECT task_id, number, bot, state, class, exit_code, reason, log_url, started, finished, verdict
		FROM attempts WHERE task_id IN (`+strings.Join(in, ", ")+`) ORDER BY task_id, number`, args...)
	if err != nil {
		return nil, fmt.Errorf("attempts of %d tasks: %w", len(ids), err)
	}
	defer rows.Close()
	out := map[string][]state.Attempt{}
	for rows.Next() {
		var a state.Attempt
		var id, st, class, reason, verdict string
		var exit int
		var started, finished sql.NullInt64
		if err := rows.Scan(&id, &a.Number, &a.Bot, &st, &class, &exit, &reason, &a.LogURL, &started, &finished, &verdict); err != nil {
			return nil, fmt.Errorf("attempts of %d tasks: %w", len(ids), err)
		}
		a.State = state.TaskState(st)
		if class != "" {
			a.Outcome = &turtles.Outcome{Class: turtles.Class(class), ExitCode: exit, Reason: reason, Verdict: turtles.Verdict(verdict)}
		}
		if started.Valid {
			ts := fromMS(started.Int64)
			a.Started = &ts
		}
		if finished.Valid {
			ts := fromMS(finished.Int64)
			a.Finished = &ts
		}
		out[id] = append(out[id], a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("attempts of %d tasks: %w", len(ids), err)
	}
	return out, nil
}
