package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// RemoveDead implements queue.Queue.
func (db *DB) RemoveDead(ctx context.Context, dl queue.DeadLetter) (bool, error) {
	if db.closed() {
		return false, queue.ErrClosed
	}
	res, err := db.sql.ExecContext(ctx, `DELETE FROM dead WHERE id = (SELECT id FROM dead WHERE body = ? AND time = ? LIMIT 1)`, []byte(dl.Body), nanos(dl.Time))
	if err != nil {
		return false, fmt.Errorf("remove a dead letter: %w", db.check(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("remove a dead letter: %w", db.check(err))
	}
	return n == 1, nil
}

// DeadLetters implements queue.Queue.
func (db *DB) DeadLetters(ctx context.Context) ([]queue.DeadLetter, error) {
	if db.closed() {
		return nil, queue.ErrClosed
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT pool, body, reason, time FROM dead ORDER BY id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", db.check(err))
	}
	defer rows.Close()
	var out []queue.DeadLetter
	for rows.Next() {
		var (
			dl   queue.DeadLetter
			body []byte
			at   int64
		)
		if err := rows.Scan(&dl.Pool, &body, &dl.Reason, &at); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", db.check(err))
		}
		dl.Body = string(body)
		dl.Time = time.Unix(0, at)
		dl.Task, _ = turtles.DecodeTask(body) // zero when undecodable, as documented
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", db.check(err))
	}
	return out, nil
}

// Stats implements queue.Queue. A task whose lease ran out counts as ready:
// the next Claim takes it.
func (db *DB) Stats(ctx context.Context) ([]queue.Stat, error) {
	if db.closed() {
		return nil, queue.ErrClosed
	}
	rows, err := db.sql.QueryContext(ctx, `
		SELECT pool, CASE
			WHEN avail_at <= ?1 THEN 'ready'
			WHEN token IS NOT NULL THEN 'leased'
			ELSE 'delayed' END AS state, COUNT(*)
		FROM tasks GROUP BY 1, 2
		UNION ALL
		SELECT pool, 'dead', COUNT(*) FROM dead GROUP BY 1
		ORDER BY 1, 2`, nanos(db.clock.Now()))
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", db.check(err))
	}
	defer rows.Close()
	var out []queue.Stat
	for rows.Next() {
		var s queue.Stat
		if err := rows.Scan(&s.Pool, &s.State, &s.Count); err != nil {
			return nil, fmt.Errorf("queue stats: %w", db.check(err))
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue stats: %w", db.check(err))
	}
	return out, nil
}
