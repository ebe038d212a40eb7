// Package sqlite is the embedded state backend: the whole state.DB in one
// SQLite file (pure Go, modernc.org/sqlite), so that `turtles serve` needs
// nothing installed. Several processes may share the file: every write
// transaction takes the database's write lock at BEGIN (BEGIN IMMEDIATE)
// and waits for it up to busy_timeout, so "exactly one" holds across
// them as within one.
//
// Commits use synchronous=NORMAL in WAL mode, as the results database
// always did: safe from a crash of any process, while a power loss may
// drop the last transactions (a delivery or a final then counts as new
// again, which costs a duplicate, never a loss of work).
//
// Only the wiring in cmd/ imports it; everything else takes a state.DB.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/internal/sqlstate"
)

// DB is a state.DB on one SQLite file.
type DB struct {
	*sqlstate.DB
}

var _ state.DB = (*DB)(nil)

// Open opens or creates the state file at path and brings its schema up
// to date. An error that wraps state.ErrUnavailable means the file could
// not be opened or locked (a missing directory, a full disk).
func Open(ctx context.Context, path string, opts state.Options) (*DB, error) {
	opts = opts.WithDefaults()
	// busy_timeout comes first: switching a new file to WAL takes a lock
	// that another process opening it at the same time may hold.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// 64 MiB of pages (SQLite's default is 2 MiB): the dashboard reads
	// indexes of a history of hundreds of MiB, and a page read from the
	// file is a system call.
	q.Add("_pragma", "cache_size(-65536)")
	q.Set("_txlock", "immediate")
	sdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	// One connection: writers in this process queue up in database/sql
	// rather than spin on SQLite's lock; other processes use busy_timeout.
	sdb.SetMaxOpenConns(1)
	sdb.SetConnMaxIdleTime(0)
	sdb.SetConnMaxLifetime(0)
	d := &driver{db: sdb, querier: querier{sdb}}
	if err := migrate(ctx, d, opts); err != nil {
		sdb.Close()
		if d.Unavailable(err) {
			err = fmt.Errorf("%w: %w", state.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return &DB{DB: sqlstate.New(d, opts)}, nil
}

// openBusyFor bounds how long Open retries a database another process is
// opening or closing at the same moment, as busy_timeout bounds a lock.
const openBusyFor = 10 * time.Second

// migrate runs the migrations, again while SQLite answers SQLITE_BUSY
// without waiting: it does so, busy_timeout or not, to a connection that
// opens a WAL file while another process's last connection checkpoints
// and removes the WAL on close (seen by TestConcurrentMigrations about
// once in 300 runs).
func migrate(ctx context.Context, d *driver, opts state.Options) error {
	deadline := time.Now().Add(openBusyFor)
	wait := 5 * time.Millisecond
	for {
		err := sqlstate.Migrate(ctx, d, migrations, opts.Now)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// driver is the sqlstate.Driver of database/sql over modernc.org/sqlite.
type driver struct {
	db *sql.DB
	querier
}

// querier runs statements on a *sql.DB or a *sql.Tx.
type querier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.q.ExecContext(ctx, rebind(query), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) sqlstate.Row {
	return q.q.QueryRowContext(ctx, rebind(query), args...)
}

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlstate.Rows, error) {
	rows, err := q.q.QueryContext(ctx, rebind(query), args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// InTx implements sqlstate.Driver. BEGIN IMMEDIATE (the _txlock of the
// DSN) takes the write lock up front, so that a transaction never fails
// half way for a lock another process holds.
func (d *driver) InTx(ctx context.Context, fn func(tx sqlstate.Querier) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(querier{tx}); err != nil {
		return err
	}
	return tx.Commit()
}

// Lock implements sqlstate.Driver: the transaction holds the database's
// write lock already.
func (d *driver) Lock(ctx context.Context, tx sqlstate.Querier, name string) error { return nil }

// SQLite's primary result codes that mean the database could not be
// reached or written, rather than a bad statement.
const (
	codeBusy     = 5
	codeLocked   = 6
	codeReadOnly = 8
	codeIOErr    = 10
	codeFull     = 13
	codeCantOpen = 14
)

// Unavailable implements sqlstate.Driver.
func (d *driver) Unavailable(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case codeBusy, codeLocked, codeReadOnly, codeIOErr, codeFull, codeCantOpen:
		return true
	}
	return false
}

func (d *driver) Close() error { return d.db.Close() }

// rebind rewrites the $N parameters of sqlstate's queries as SQLite's ?N
// (SQLite reads "$1" as a named parameter, numbered by first use). The
// queries have no "$" anywhere else.
func rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	for i := 0; i < len(q); i++ {
		if q[i] == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' {
			b.WriteByte('?')
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
