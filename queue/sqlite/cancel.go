package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// cancelledTTL is how long a cancelled lease token is remembered: long
// past the lease of the bot that held it.
const cancelledTTL = 24 * time.Hour

// lost is the error for a delivery whose row is gone or leased by someone
// else: ErrCancelled when Cancel took it, else ErrLeaseLost.
func (d *delivery) lost(ctx context.Context) error {
	var reason string
	err := d.db.sql.QueryRowContext(ctx, `SELECT reason FROM cancelled WHERE token = ?`, d.token).Scan(&reason)
	if err == nil {
		return fmt.Errorf("%w: %s", queue.ErrCancelled, reason)
	}
	return queue.ErrLeaseLost
}

// Cancel implements queue.Queue. Queued and running tasks are removed
// alike, each with its final event in the same transaction; the lease
// tokens of running ones are kept so that their Heartbeat says why.
func (db *DB) Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error) {
	if db.closed() {
		return 0, queue.ErrClosed
	}
	prefix := repo + "@" + sha + ":"
	// substr, not LIKE: repository names may contain LIKE's wildcards.
	n, err := db.cancel(ctx, `substr(key, 1, ?) = ?`, []any{len(prefix), prefix}, func(t turtles.Task) bool { return t.PR == pr }, reason)
	if err != nil {
		return 0, fmt.Errorf("cancel tasks of %s@%s: %w", repo, sha, db.check(err))
	}
	if n > 0 {
		db.wakeEvents()
	}
	return n, nil
}

// CancelTask implements queue.Queue, as Cancel does.
func (db *DB) CancelTask(ctx context.Context, key, reason string) (int, error) {
	if db.closed() {
		return 0, queue.ErrClosed
	}
	n, err := db.cancel(ctx, `key = ?`, []any{key}, func(turtles.Task) bool { return true }, reason)
	if err != nil {
		return 0, fmt.Errorf("cancel task %s: %w", key, db.check(err))
	}
	if n > 0 {
		db.wakeEvents()
	}
	return n, nil
}

// cancel removes the tasks whose rows where selects (with args) and
// that pick keeps, each with its final event.
func (db *DB) cancel(ctx context.Context, where string, args []any, pick func(turtles.Task) bool, reason string) (int, error) {
	now := db.clock.Now()
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM cancelled WHERE time < ?`, nanos(now.Add(-cancelledTTL))); err != nil {
		return 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, body, token, avail_at, deliveries FROM tasks
		WHERE `+where, args...)
	if err != nil {
		return 0, err
	}
	type victim struct {
		id    int64
		task  turtles.Task
		token sql.NullString
	}
	var victims []victim
	for rows.Next() {
		var (
			v          victim
			body       []byte
			availAt    int64
			deliveries int64
		)
		if err := rows.Scan(&v.id, &body, &v.token, &availAt, &deliveries); err != nil {
			rows.Close()
			return 0, err
		}
		t, err := turtles.DecodeTask(body)
		if err != nil || !pick(t) {
			continue
		}
		leased := v.token.Valid && availAt > nanos(now)
		if leased {
			// The attempt running now, as its holder's events name it.
			t.Attempt += int(deliveries) - 1
		} else {
			// The attempt that would have come next.
			t.Attempt += int(deliveries)
			v.token.Valid = false
		}
		v.task = t
		victims = append(victims, v)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	for _, v := range victims {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE id = ?`, v.id); err != nil {
			return 0, err
		}
		if v.token.Valid {
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO cancelled (token, reason, time) VALUES (?, ?, ?)`,
				v.token.String, reason, nanos(now)); err != nil {
				return 0, err
			}
		}
		if err := insertEvent(ctx, tx, queue.CancelledEvent(v.task, reason, now)); err != nil {
			return 0, err
		}
	}
	return len(victims), tx.Commit()
}
