package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// Emit implements queue.Queue.
func (db *DB) Emit(ctx context.Context, ev turtles.Event) error {
	if db.closed() {
		return queue.ErrClosed
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("emit event %s: encode: %w", ev.ID, err)
	}
	if _, err := db.sql.ExecContext(ctx, `INSERT INTO events (task_key, body) VALUES (?, ?)`, ev.Task.Key(), body); err != nil {
		return fmt.Errorf("emit event %s: %w", ev.ID, db.check(err))
	}
	db.wakeEvents()
	return nil
}

// Receive implements queue.Queue. Only the oldest unacked event of each
// task is receivable, so a task's events are handled in order even when
// one is received and not acked.
func (db *DB) Receive(ctx context.Context) (queue.EventDelivery, error) {
	ed, err := waitFor(ctx, db, db.eventWakeChan, func() (*eventDelivery, int64, error) {
		ed, next, err := db.tryReceive(ctx)
		if err != nil {
			err = fmt.Errorf("receive event: %w", db.check(err))
		}
		return ed, next, err
	})
	if err != nil {
		return nil, err
	}
	return ed, nil
}

func (db *DB) tryReceive(ctx context.Context) (ed *eventDelivery, next int64, err error) {
	now := db.clock.Now()
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	const heads = `FROM events e WHERE NOT EXISTS (
		SELECT 1 FROM events p WHERE p.task_key = e.task_key AND p.seq < e.seq)`
	for range maxSkip {
		var (
			seq  int64
			body []byte
		)
		err := tx.QueryRowContext(ctx, `SELECT seq, body `+heads+` AND e.avail_at <= ? ORDER BY seq LIMIT 1`,
			nanos(now)).Scan(&seq, &body)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		var ev turtles.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			// Only Emit writes events, so this is a corrupt file; drop
			// the event rather than block its task's later ones forever.
			db.log.Error("dropping undecodable event", "seq", seq, "err", err)
			if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq = ?`, seq); err != nil {
				return nil, 0, err
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE events SET avail_at = ?, owner = ? WHERE seq = ?`,
			nanos(now.Add(db.eventLease)), db.owner, seq); err != nil {
			return nil, 0, err
		}
		ed = &eventDelivery{db: db, seq: seq, ev: ev}
		break
	}
	if ed == nil {
		var n sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MIN(e.avail_at) `+heads).Scan(&n); err != nil {
			return nil, 0, err
		}
		next = n.Int64
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, err
	}
	return ed, next, nil
}

// eventDelivery is a received event. Ack deletes it whoever holds it now:
// the event was handled, and consumers drop duplicates by Event.ID.
type eventDelivery struct {
	db  *DB
	seq int64
	ev  turtles.Event
}

func (e *eventDelivery) Event() turtles.Event { return e.ev }

func (e *eventDelivery) Ack(ctx context.Context) error {
	if e.db.closed() {
		return queue.ErrClosed
	}
	if _, err := e.db.sql.ExecContext(ctx, `DELETE FROM events WHERE seq = ?`, e.seq); err != nil {
		return fmt.Errorf("ack event %s: %w", e.ev.ID, e.db.check(err))
	}
	e.db.wakeEvents() // the task's next event may be receivable now
	return nil
}
