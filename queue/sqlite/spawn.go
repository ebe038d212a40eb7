package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// AckWithTasks implements queue.Delivery in one SQLite transaction; the
// tasks table's unique key finds the live ones.
func (d *delivery) AckWithTasks(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	if d.db.closed() {
		return nil, queue.ErrClosed
	}
	for _, s := range spawns {
		if err := s.Task.Validate(); err != nil {
			return nil, fmt.Errorf("ack task %s with its tasks: %s: %w", d.task.Key(), s.Task.Key(), err)
		}
	}
	dups, err := d.ackWithTasks(ctx, spawns, events)
	if err != nil {
		return nil, fmt.Errorf("ack task %s with its tasks: %w", d.task.Key(), d.db.check(err))
	}
	for _, s := range spawns {
		d.db.wake(s.Task.Pool)
	}
	d.db.wakeEvents()
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
	now := nanos(time.Now())
	var dups []string
	for _, s := range spawns {
		body, err := json.Marshal(s.Task)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", s.Task.Key(), err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO tasks (pool, key, priority, body, published, avail_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`, s.Task.Pool, s.Task.Key(), s.Task.Priority, body, now, now)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", s.Task.Key(), err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 {
			dups = append(dups, s.Task.Key())
			continue
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
	return dups, tx.Commit()
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
