// Package sqlstate is the state.DB that both SQL backends share: every
// query written once, over a small Driver that state/sqlite and
// state/postgres implement for their database drivers. Each backend
// keeps what truly differs: its schema, how it connects, how it locks,
// and which of its errors mean "unavailable".
//
// The SQL is the subset both databases speak: "$1" parameters (the
// SQLite driver rewrites them as "?1"), INSERT ... ON CONFLICT, RETURNING,
// CASE rather than MAX(a, b) or GREATEST. Times are unix milliseconds in
// BIGINT columns.
//
// Only state/sqlite and state/postgres import it.
package sqlstate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/turtles-ci/turtles/state"
)

// Querier runs statements, in a transaction or not.
type Querier interface {
	// Exec runs a statement and returns the rows it affected.
	Exec(ctx context.Context, q string, args ...any) (int64, error)
	// QueryRow runs a query for at most one row; its Scan returns an
	// error that errors.Is sql.ErrNoRows when there is none.
	QueryRow(ctx context.Context, q string, args ...any) Row
	Query(ctx context.Context, q string, args ...any) (Rows, error)
}

// Row is one row of QueryRow.
type Row interface{ Scan(dest ...any) error }

// Rows are the rows of Query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Driver is a database handle (a pool) of one backend.
type Driver interface {
	Querier
	// InTx runs fn in one transaction, committed if fn returns nil and
	// rolled back otherwise. The transaction may see other transactions'
	// commits between its statements (PostgreSQL's read committed); what
	// must not interleave takes Lock.
	InTx(ctx context.Context, fn func(tx Querier) error) error
	// Lock takes an exclusive lock on name, held until tx ends. SQLite
	// holds the database's write lock through every transaction already
	// and does nothing.
	Lock(ctx context.Context, tx Querier, name string) error
	// Unavailable reports whether err means the database could not be
	// reached or could not take the write (see state.ErrUnavailable).
	Unavailable(err error) bool
	Close() error
}

// DB implements state.DB, but Close, over a Driver.
type DB struct {
	d      Driver
	opts   state.Options
	closed atomic.Bool
}

// New returns the state on d, whose schema is up to date.
func New(d Driver, opts state.Options) *DB {
	return &DB{d: d, opts: opts.WithDefaults()}
}

// Close closes the driver.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	return db.d.Close()
}

// fail wraps err of operation op by its class.
func (db *DB) fail(op string, err error) error {
	switch {
	case db.closed.Load():
		return fmt.Errorf("%s: %w", op, state.ErrClosed)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	case db.d.Unavailable(err):
		return fmt.Errorf("%s: %w: %w", op, state.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (db *DB) check(op string) error {
	if db.closed.Load() {
		return fmt.Errorf("%s: %w", op, state.ErrClosed)
	}
	return nil
}

func invalid(op, what string) error {
	return fmt.Errorf("%s: %w: %s", op, state.ErrInvalid, what)
}

func (db *DB) now() time.Time { return db.opts.Now() }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// limit bounds a caller's limit: def when it is not positive.
func limit(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

// FirstDelivery implements state.DB.
func (db *DB) FirstDelivery(ctx context.Context, id string) (bool, error) {
	const op = "record webhook delivery"
	if err := db.check(op); err != nil {
		return false, err
	}
	if id == "" {
		return false, invalid(op, "empty delivery id")
	}
	n, err := db.d.Exec(ctx, `INSERT INTO deliveries (id, seen) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, ms(db.now()))
	if err != nil {
		return false, db.fail(op+" "+id, err)
	}
	return n == 1, nil
}

// Seen implements state.DB.
func (db *DB) Seen(ctx context.Context, id string) (bool, error) {
	const op = "look up webhook delivery"
	if err := db.check(op); err != nil {
		return false, err
	}
	var one int
	err := db.d.QueryRow(ctx, `SELECT 1 FROM deliveries WHERE id = $1`, id).Scan(&one)
	if noRows(err) {
		return false, nil
	}
	if err != nil {
		return false, db.fail(op+" "+id, err)
	}
	return true, nil
}

// maxReserveTries bounds the rounds of Reserve that find the key held
// and then free again before they read the holder.
const maxReserveTries = 20

// Reserve implements state.DB.
func (db *DB) Reserve(ctx context.Context, key, token string) (bool, state.Reservation, error) {
	const op = "reserve task key"
	if err := db.check(op); err != nil {
		return false, state.Reservation{}, err
	}
	if key == "" || token == "" {
		return false, state.Reservation{}, invalid(op, "empty key or token")
	}
	for range maxReserveTries {
		now := ms(db.now())
		var since int64
		err := db.d.QueryRow(ctx, `INSERT INTO reservations (key, token, since) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO NOTHING RETURNING since`, key, token, now).Scan(&since)
		if err == nil {
			return true, state.Reservation{Key: key, Token: token, Since: fromMS(since)}, nil
		}
		if !noRows(err) {
			return false, state.Reservation{}, db.fail(op+" "+key, err)
		}
		r, live, err := db.live(ctx, key)
		if err != nil {
			return false, state.Reservation{}, db.fail(op+" "+key, err)
		}
		if live {
			return r.Token == token, r, nil
		}
		// Freed between the two statements: try again.
	}
	return false, state.Reservation{}, fmt.Errorf("%s %s: held and freed %d times in a row", op, key, maxReserveTries)
}

// Settle implements state.DB.
func (db *DB) Settle(ctx context.Context, key, token string) error {
	const op = "settle task key"
	if err := db.check(op); err != nil {
		return err
	}
	if key == "" || token == "" {
		return invalid(op, "empty key or token")
	}
	if _, err := db.d.Exec(ctx, `UPDATE reservations SET settled = 1 WHERE key = $1 AND token = $2`, key, token); err != nil {
		return db.fail(op+" "+key, err)
	}
	return nil
}

// Free implements state.DB.
func (db *DB) Free(ctx context.Context, key, token string) (bool, error) {
	const op = "free task key"
	if err := db.check(op); err != nil {
		return false, err
	}
	if key == "" || token == "" {
		return false, invalid(op, "empty key or token")
	}
	n, err := db.d.Exec(ctx, `DELETE FROM reservations WHERE key = $1 AND token = $2`, key, token)
	if err != nil {
		return false, db.fail(op+" "+key, err)
	}
	return n == 1, nil
}

// Live implements state.DB.
func (db *DB) Live(ctx context.Context, key string) (state.Reservation, bool, error) {
	const op = "look up task key"
	if err := db.check(op); err != nil {
		return state.Reservation{}, false, err
	}
	r, live, err := db.live(ctx, key)
	if err != nil {
		return state.Reservation{}, false, db.fail(op+" "+key, err)
	}
	return r, live, nil
}

func (db *DB) live(ctx context.Context, key string) (state.Reservation, bool, error) {
	r := state.Reservation{Key: key}
	var since int64
	var settled int
	err := db.d.QueryRow(ctx, `SELECT token, since, settled FROM reservations WHERE key = $1`, key).Scan(&r.Token, &since, &settled)
	if noRows(err) {
		return state.Reservation{}, false, nil
	}
	if err != nil {
		return state.Reservation{}, false, err
	}
	r.Since, r.Settled = fromMS(since), settled == 1
	return r, true, nil
}

// Reservations implements state.DB.
func (db *DB) Reservations(ctx context.Context, before time.Time, n int) ([]state.Reservation, error) {
	return db.reservations(ctx, "list reservations", "", before, n)
}

// Unsettled implements state.DB.
func (db *DB) Unsettled(ctx context.Context, before time.Time, n int) ([]state.Reservation, error) {
	return db.reservations(ctx, "list unsettled reservations", "AND settled = 0", before, n)
}

func (db *DB) reservations(ctx context.Context, op, and string, before time.Time, n int) ([]state.Reservation, error) {
	if err := db.check(op); err != nil {
		return nil, err
	}
	rows, err := db.d.Query(ctx, `SELECT key, token, since, settled FROM reservations WHERE since < $1 `+and+`
		ORDER BY since, key LIMIT $2`, ms(before), limit(n, 100, 1000))
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.Reservation{}
	for rows.Next() {
		var r state.Reservation
		var since int64
		var settled int
		if err := rows.Scan(&r.Key, &r.Token, &since, &settled); err != nil {
			return nil, db.fail(op, err)
		}
		r.Since, r.Settled = fromMS(since), settled == 1
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(op, err)
	}
	return out, nil
}
