package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// EndLostLogs sets how the recorder ends the stored files of an attempt
// whose bot stopped heart-beating: endLog appends res.Outcome.Reason to
// the log of res.Task's attempt, so that the raw log ends with it, and
// stores res as its result, so that pages read from the store see the
// attempt ended. Nil (the default) leaves the store alone.
func (d *DB) EndLostLogs(endLog func(ctx context.Context, res turtles.Result) error) {
	d.endLog = endLog
}

// migrateBeat adds the column of the last heartbeat to a database made
// before it existed.
func migrateBeat(db *sql.DB) error {
	_, err := db.Exec(`ALTER TABLE attempts ADD COLUMN beat INTEGER`)
	if err != nil && strings.Contains(err.Error(), "duplicate column") {
		return nil
	}
	return err
}

// heartbeat keeps the time of ev, a heartbeat, on the attempt still
// running that it is about. A heartbeat creates nothing: one that arrives
// before its attempt's "started" event is of no use.
func (d *DB) heartbeat(ctx context.Context, ev turtles.Event) error {
	_, err := d.db.ExecContext(ctx, `UPDATE attempts SET beat = MAX(COALESCE(beat, 0), ?)
		WHERE task_id = ? AND number >= ? AND state = ?`,
		ev.Time.UnixMilli(), ev.Task.ID(), ev.Task.Attempt, Running)
	if err != nil {
		return fmt.Errorf("record heartbeat of %s: %w", ev.Task.Key(), err)
	}
	return nil
}

// lost ends, as infra, the attempt that ev (an EventLost from the queue)
// took back: the one of ev's task still running, numbered from ev's
// attempt on (a bot may have run it as a later attempt, see
// store.ClaimAttempt). The reason names the bot and its last heartbeat.
// The task's next delivery has not started yet (the queue emits the event
// with it), so at most one attempt matches; none when the bot died before
// it started. The reporter ignores the event: the task runs again.
func (d *DB) lost(ctx context.Context, tx *sql.Tx, ev turtles.Event) (*turtles.Result, error) {
	t := ev.Task
	var (
		number  int
		bot     string
		beat    sql.NullInt64
		started sql.NullInt64
	)
	err := tx.QueryRowContext(ctx, `SELECT number, bot, COALESCE(beat, started), started FROM attempts
		WHERE task_id = ? AND number >= ? AND state = ? ORDER BY number DESC LIMIT 1`,
		t.ID(), t.Attempt, Running).Scan(&number, &bot, &beat, &started)
	if errors.Is(err, sql.ErrNoRows) {
		d.log.Info("a lost delivery had not started an attempt", "task", t.Key(), "attempt", t.Attempt)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	at := ev.Time
	if beat.Valid {
		at = time.UnixMilli(beat.Int64)
	}
	reason := LostReason(bot, at)
	if ev.Outcome != nil && ev.Outcome.Reason != "" {
		d.log.Warn("attempt lost", "task", t.Key(), "attempt", number, "bot", bot, "queue", ev.Outcome.Reason)
	}
	fin := ev.Time
	if fin.IsZero() {
		fin = time.Now()
	}
	if _, err := tx.ExecContext(ctx, `UPDATE attempts SET state = ?, class = ?, exit_code = -1, reason = ?, finished = ?
		WHERE task_id = ? AND number = ?`, Retrying, turtles.Infra, reason, fin.UnixMilli(), t.ID(), number); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tasks SET state = ?, class = ?, exit_code = -1, reason = ?, updated = ?
		WHERE id = ? AND attempt = ? AND state = ?`, Retrying, turtles.Infra, reason, fin.UnixMilli(), t.ID(), number, Running); err != nil {
		return nil, err
	}
	t.Attempt = number
	res := &turtles.Result{Task: t, Bot: bot, Finished: fin,
		Outcome: turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: reason}}
	if started.Valid {
		res.Started = time.UnixMilli(started.Int64)
		res.Duration = res.Finished.Sub(res.Started).Seconds()
	}
	return res, nil
}

// LostReason is the sentence for people that ends an attempt whose bot
// stopped heart-beating, last heard of at beat.
func LostReason(bot string, beat time.Time) string {
	who := "the bot"
	if bot != "" {
		who = "bot " + bot
	}
	return fmt.Sprintf("%s stopped heart-beating at %s", who, beat.UTC().Format("15:04:05 UTC"))
}
