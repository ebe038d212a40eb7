package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles/queue"
)

// inboxLease is how long a taken inbox message stays invisible.
const inboxLease = time.Minute

// Put implements queue.Queue.
func (db *DB) Put(ctx context.Context, body []byte) error {
	if db.closed() {
		return queue.ErrClosed
	}
	err := db.durable(ctx, func(ctx context.Context) error {
		_, err := db.sql.ExecContext(ctx, `INSERT INTO inbox (body) VALUES (?)`, body)
		return err
	})
	if err != nil {
		return fmt.Errorf("put inbox message: %w", db.check(err))
	}
	db.wakeInbox()
	return nil
}

// Take implements queue.Queue.
func (db *DB) Take(ctx context.Context) (queue.InboxMessage, error) {
	m, err := waitFor(ctx, db, db.inboxWakeChan, func() (*inboxMessage, int64, error) {
		m, next, err := db.tryTake(ctx)
		if err != nil {
			err = fmt.Errorf("take inbox message: %w", db.check(err))
		}
		return m, next, err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (db *DB) tryTake(ctx context.Context) (*inboxMessage, int64, error) {
	now := nanos(db.clock.Now())
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var (
		seq  int64
		body []byte
	)
	err = tx.QueryRowContext(ctx, `SELECT seq, body FROM inbox WHERE avail_at <= ? ORDER BY seq LIMIT 1`, now).Scan(&seq, &body)
	if errors.Is(err, sql.ErrNoRows) {
		var n sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MIN(avail_at) FROM inbox`).Scan(&n); err != nil {
			return nil, 0, err
		}
		return nil, n.Int64, tx.Commit()
	}
	if err != nil {
		return nil, 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE inbox SET avail_at = ? WHERE seq = ?`, now+int64(inboxLease), seq); err != nil {
		return nil, 0, err
	}
	return &inboxMessage{db: db, seq: seq, body: body}, 0, tx.Commit()
}

// inboxKey is the Wakeups key of the inbox (see eventsKey).
const inboxKey = "inbox messages"

func (db *DB) inboxWakeChan() <-chan struct{} { return db.wakeups.Chan(inboxKey) }
func (db *DB) wakeInbox()                     { db.wakeups.Wake(inboxKey) }

type inboxMessage struct {
	db   *DB
	seq  int64
	body []byte
}

func (m *inboxMessage) Body() []byte { return m.body }

func (m *inboxMessage) Ack(ctx context.Context) error {
	if m.db.closed() {
		return queue.ErrClosed
	}
	if _, err := m.db.sql.ExecContext(ctx, `DELETE FROM inbox WHERE seq = ?`, m.seq); err != nil {
		return fmt.Errorf("ack inbox message %d: %w", m.seq, m.db.check(err))
	}
	return nil
}
