package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// delivery is a leased task. Every method checks the lease token, so a
// holder whose lease ran out and was taken over changes nothing.
type delivery struct {
	db    *DB
	id    int64
	token string
	task  turtles.Task
	count int
}

func (d *delivery) Task() turtles.Task { return d.task }
func (d *delivery) Count() int         { return d.count }

// exec runs a statement that must touch this delivery's row, mapping "no
// row" to ErrLeaseLost (or ErrCancelled).
func (d *delivery) exec(ctx context.Context, what, query string, args ...any) error {
	if d.db.closed() {
		return queue.ErrClosed
	}
	res, err := d.db.sql.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s task %s: %w", what, d.task.Key(), d.db.check(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s task %s: %w", what, d.task.Key(), d.db.check(err))
	}
	if n == 0 {
		return fmt.Errorf("%s task %s: %w", what, d.task.Key(), d.lost(ctx))
	}
	return nil
}

func (d *delivery) Heartbeat(ctx context.Context) error {
	return d.exec(ctx, "heartbeat", `UPDATE tasks SET avail_at = ? WHERE id = ? AND token = ?`,
		nanos(d.db.clock.Now().Add(d.db.opts.Lease)), d.id, d.token)
}

func (d *delivery) Release(ctx context.Context) error {
	err := d.exec(ctx, "release", `UPDATE tasks SET token = NULL, avail_at = ?, deliveries = deliveries - 1
		WHERE id = ? AND token = ?`, nanos(d.db.clock.Now()), d.id, d.token)
	if err == nil {
		d.db.wake(d.task.Pool)
	}
	return err
}

func (d *delivery) Nack(ctx context.Context, delay time.Duration, reason string) (dead bool, err error) {
	if d.db.closed() {
		return false, queue.ErrClosed
	}
	dead, err = d.nack(ctx, delay, reason)
	if err != nil {
		return false, fmt.Errorf("nack task %s: %w", d.task.Key(), d.db.check(err))
	}
	if dead {
		d.db.log.Warn("dead-lettered task", "key", d.task.Key(), "pool", d.task.Pool, "deliveries", d.count, "reason", reason)
		d.db.wakeEvents()
	} else {
		d.db.wake(d.task.Pool) // waiters recompute their sleep for the delay
	}
	return dead, nil
}

func (d *delivery) nack(ctx context.Context, delay time.Duration, reason string) (dead bool, err error) {
	now := d.db.clock.Now()
	tx, err := d.db.sql.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var deliveries int64
	err = tx.QueryRowContext(ctx, `SELECT deliveries FROM tasks WHERE id = ? AND token = ?`, d.id, d.token).Scan(&deliveries)
	if errors.Is(err, sql.ErrNoRows) {
		tx.Rollback()
		return false, d.lost(ctx)
	}
	if err != nil {
		return false, err
	}
	if end := d.db.opts.Nacked(d.task, int(deliveries), reason); end.Dead {
		if err := moveDead(ctx, tx, d.id, end.Reason, end.Event, now); err != nil {
			return false, err
		}
		dead = true
	} else if _, err := tx.ExecContext(ctx, `UPDATE tasks SET token = NULL, avail_at = ? WHERE id = ?`,
		nanos(now.Add(max(delay, 0))), d.id); err != nil {
		return false, err
	}
	return dead, tx.Commit()
}

// AckWithTasks implements queue.Delivery in one SQLite transaction. It
// dedupes nothing (queue.Dedupe does): dups is always empty.
func (d *delivery) AckWithTasks(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	if d.db.closed() {
		return nil, queue.ErrClosed
	}
	if err := queue.ValidateSpawns(spawns); err != nil {
		return nil, fmt.Errorf("ack task %s with its tasks: %w", d.task.Key(), err)
	}
	dups, err := d.ackWithTasks(ctx, spawns, events)
	if err != nil {
		return nil, fmt.Errorf("ack task %s with its tasks: %w", d.task.Key(), d.db.check(err))
	}
	for _, s := range spawns {
		d.db.wake(s.Task.Pool)
	}
	if len(spawns) > 0 || len(events) > 0 {
		d.db.wakeEvents()
	}
	return dups, nil
}

func (d *delivery) ackWithTasks(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	tx, err := d.db.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE id = ? AND token = ?`, d.id, d.token)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n == 0 {
		tx.Rollback()
		return nil, d.lost(ctx)
	}
	now := nanos(d.db.clock.Now())
	for _, s := range spawns {
		body, err := json.Marshal(s.Task)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", s.Task.Key(), err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tasks (pool, key, priority, body, published, avail_at)
			VALUES (?, ?, ?, ?, ?, ?)`, s.Task.Pool, s.Task.Key(), s.Task.Priority, body, now, now); err != nil {
			return nil, fmt.Errorf("queue %s: %w", s.Task.Key(), err)
		}
		if err := insertEvent(ctx, tx, s.Queued); err != nil {
			return nil, err
		}
	}
	for _, ev := range events {
		if err := insertEvent(ctx, tx, ev); err != nil {
			return nil, err
		}
	}
	return nil, tx.Commit()
}

// insertEvent appends ev to the event log in tx.
func insertEvent(ctx context.Context, tx *sql.Tx, ev turtles.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("emit event %s: encode: %w", ev.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (task_key, body) VALUES (?, ?)`, ev.Task.Key(), body); err != nil {
		return fmt.Errorf("emit event %s: %w", ev.ID, err)
	}
	return nil
}
