// Package sqlite is the embedded queue backend: tasks, events and inbox
// messages in one SQLite file (pure Go, modernc.org/sqlite), so that
// `turtles serve` needs no broker. Several processes may share the file;
// every state change is a write transaction, so a task is never held by
// two claimers at once, and what the queue emits with a change (a dead
// task's final event, a cancelled task's) is in the same transaction.
//
// Only the wiring in cmd/ (and bench/) should import it; everything else
// takes the queue.Queue interface.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

const (
	// eventLease is how long a received event stays invisible to other
	// receivers before it is received again.
	eventLease = 30 * time.Second
	// maxSkip bounds the dead-lettering one Claim does in one transaction,
	// so a flood of bad messages cannot hold the write lock for long.
	maxSkip = 64
)

// migrations[i] takes the schema from version i to i+1. Append only.
//
// avail_at (unix nanoseconds) is when a row may be handed out next: the
// publish or Nack time plus delay for a waiting task, the lease end for a
// leased one. A task is leased while token is set; an expired lease is
// simply available again, which is how a dead bot's task comes back.
var migrations = []string{
	`CREATE TABLE tasks (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		pool       TEXT    NOT NULL,
		key        TEXT    UNIQUE, -- NULL for bodies that do not decode
		priority   INTEGER NOT NULL,
		body       BLOB    NOT NULL,
		published  INTEGER NOT NULL,
		avail_at   INTEGER NOT NULL,
		token      TEXT,
		deliveries INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX tasks_claim ON tasks(pool, priority DESC, id);
	CREATE TABLE dead (
		id     INTEGER PRIMARY KEY AUTOINCREMENT,
		pool   TEXT    NOT NULL,
		body   BLOB    NOT NULL,
		reason TEXT    NOT NULL,
		time   INTEGER NOT NULL
	);
	CREATE TABLE events (
		seq      INTEGER PRIMARY KEY AUTOINCREMENT,
		task_key TEXT    NOT NULL,
		body     BLOB    NOT NULL,
		avail_at INTEGER NOT NULL DEFAULT 0,
		owner    TEXT -- the handle that received it, NULL when not leased
	);
	CREATE INDEX events_task ON events(task_key, seq);
	CREATE TABLE deliveries (
		id   TEXT    PRIMARY KEY,
		seen INTEGER NOT NULL
	);
	CREATE INDEX deliveries_seen ON deliveries(seen);`,
	// cancelled remembers the lease tokens of running tasks that Cancel
	// removed, so that their holders learn why their lease is gone.
	`CREATE TABLE cancelled (
		token  TEXT    PRIMARY KEY,
		reason TEXT    NOT NULL,
		time   INTEGER NOT NULL
	);
	CREATE TABLE inbox (
		seq      INTEGER PRIMARY KEY AUTOINCREMENT,
		body     BLOB    NOT NULL,
		avail_at INTEGER NOT NULL DEFAULT 0
	);`,
	// The webhook delivery log moved out of the queue (cmd/turtles keeps
	// it apart until package state holds it).
	`DROP TABLE deliveries;`,
	// Task keys are deduped in the state database now (queue.Dedupe):
	// the key column loses its uniqueness and stays for Cancel.
	`CREATE TABLE tasks_v4 (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		pool       TEXT    NOT NULL,
		key        TEXT, -- NULL for bodies that do not decode
		priority   INTEGER NOT NULL,
		body       BLOB    NOT NULL,
		published  INTEGER NOT NULL,
		avail_at   INTEGER NOT NULL,
		token      TEXT,
		deliveries INTEGER NOT NULL DEFAULT 0
	);
	INSERT INTO tasks_v4 (id, pool, key, priority, body, published, avail_at, token, deliveries)
		SELECT id, pool, key, priority, body, published, avail_at, token, deliveries FROM tasks;
	DROP TABLE tasks;
	ALTER TABLE tasks_v4 RENAME TO tasks;
	CREATE INDEX tasks_claim ON tasks(pool, priority DESC, id);
	CREATE INDEX tasks_key ON tasks(key);`,
}

// DB is a queue.Queue on one SQLite file.
type DB struct {
	sql   *sql.DB
	opts  queue.Options
	clock clockwork.Clock // opts.Clock
	log   *slog.Logger
	owner string // identifies this handle's event leases, released on Close

	eventLease time.Duration // eventLease; shorter in tests
	onWait     func()        // tests: called when Claim or Receive goes to sleep

	done      chan struct{} // closed by Close; wakes every waiter
	closeOnce sync.Once

	wal *walSync // makes what the queue accepts durable (durable.go)

	wakeups queue.Wakeups // keyed by pool, eventsKey and inboxKey
}

var _ queue.Queue = (*DB)(nil)

// Open opens or creates the queue file at path and brings its schema up to
// date. Every field of opts is required. A nil log discards.
func Open(path string, opts queue.Options, log *slog.Logger) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// synchronous=NORMAL in WAL mode survives a crash of the process (the
	// WAL is in the OS's hands at commit) and loses at most the last
	// transactions on power loss, which is fine for claims and acks; what
	// the queue accepts from outside is synced before it returns, as FULL
	// would (durable.go).
	// BEGIN IMMEDIATE takes the write lock up front, so that concurrent
	// transactions from other processes wait (busy_timeout) instead of
	// failing half way.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	sdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	// One connection: writers in this process queue up in database/sql
	// rather than spin on SQLite's lock; other processes use busy_timeout.
	sdb.SetMaxOpenConns(1)
	sdb.SetConnMaxIdleTime(0)
	sdb.SetConnMaxLifetime(0)
	db := &DB{
		sql:        sdb,
		opts:       opts,
		clock:      opts.Clock,
		log:        log,
		owner:      newToken(),
		eventLease: eventLease,
		done:       make(chan struct{}),
		wal:        newWALSync(path),
	}
	if err := db.migrate(context.Background()); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	// Durable writes sync the WAL file (durable.go); without WAL they
	// would have nothing to sync.
	var mode string
	if err := sdb.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		sdb.Close()
		return nil, fmt.Errorf("open queue %s: journal mode is %q, not wal (%v): the file system must support SQLite's WAL", path, mode, err)
	}
	return db, nil
}

func (db *DB) migrate(ctx context.Context) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("init schema_version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d)", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	return tx.Commit()
}

// Close releases the file. Tasks leased through this handle come back when
// their lease ends; events received and not acked come back at once, since
// no one can ack them any more.
func (db *DB) Close() error {
	err := queue.ErrClosed
	db.closeOnce.Do(func() {
		close(db.done)
		_, rerr := db.sql.Exec(`UPDATE events SET avail_at = 0, owner = NULL WHERE owner = ?`, db.owner)
		cerr := db.sql.Close()
		err = errors.Join(rerr, cerr)
		if err != nil {
			err = fmt.Errorf("close queue: %w", err)
		}
	})
	return err
}

func (db *DB) closed() bool {
	select {
	case <-db.done:
		return true
	default:
		return false
	}
}

// check classifies an error of the database: ErrClosed when a concurrent
// Close caused it, the queue's own errors as they are, any other
// (locked past busy_timeout, I/O, a full disk) ErrUnavailable.
func (db *DB) check(err error) error {
	switch {
	case err == nil:
		return nil
	case db.closed():
		return queue.ErrClosed
	case errors.Is(err, queue.ErrLeaseLost), errors.Is(err, queue.ErrCancelled), errors.Is(err, queue.ErrInvalid):
		return err
	}
	return queue.Unavailable(err)
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand docs)
	return hex.EncodeToString(b[:])
}

func nanos(t time.Time) int64 { return t.UnixNano() }

// eventsKey is the Wakeups key of the event log; pool names cannot
// contain a space.
const eventsKey = "events log"

func (db *DB) wakeChan(pool string) <-chan struct{} { return db.wakeups.Chan(pool) }
func (db *DB) wake(pool string)                     { db.wakeups.Wake(pool) }
func (db *DB) eventWakeChan() <-chan struct{}       { return db.wakeups.Chan(eventsKey) }
func (db *DB) wakeEvents()                          { db.wakeups.Wake(eventsKey) }

// Publish implements queue.Queue. It dedupes nothing: queue.Dedupe does,
// in the state database.
func (db *DB) Publish(ctx context.Context, t turtles.Task) error {
	if db.closed() {
		return queue.ErrClosed
	}
	body, err := queue.EncodeTask(t)
	if err != nil {
		return fmt.Errorf("publish %s: %w", t.Key(), err)
	}
	return db.insert(ctx, t.Pool, sql.NullString{String: t.Key(), Valid: true}, t.Priority, body)
}

// PublishRaw queues body as it is, for tools and for tests of malformed
// messages. A body that is not a valid task is dead-lettered by the Claim
// that meets it.
func (db *DB) PublishRaw(ctx context.Context, pool string, body []byte) error {
	if db.closed() {
		return queue.ErrClosed
	}
	var key sql.NullString
	prio := 0
	if t, err := turtles.DecodeTask(body); err == nil {
		key = sql.NullString{String: t.Key(), Valid: true}
		prio = t.Priority
	}
	return db.insert(ctx, pool, key, prio, body)
}

func (db *DB) insert(ctx context.Context, pool string, key sql.NullString, prio int, body []byte) error {
	err := db.durable(ctx, func(ctx context.Context) error {
		now := nanos(db.clock.Now())
		_, err := db.sql.ExecContext(ctx, `INSERT INTO tasks (pool, key, priority, body, published, avail_at)
			VALUES (?, ?, ?, ?, ?, ?)`, pool, key, prio, body, now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("publish to pool %s: %w", pool, db.check(err))
	}
	db.wake(pool)
	return nil
}

// Claim implements queue.Queue. It waits for an in-process wakeup, for the
// next known availability time (a delay or lease ending), or for opts.Poll
// to pass, whichever is first; the poll finds work published by other
// processes.
func (db *DB) Claim(ctx context.Context, pool string) (queue.Delivery, error) {
	d, err := waitFor(ctx, db, func() <-chan struct{} { return db.wakeChan(pool) }, func() (*delivery, int64, error) {
		d, next, err := db.tryClaim(ctx, pool)
		if err != nil {
			err = fmt.Errorf("claim from pool %s: %w", pool, db.check(err))
		}
		return d, next, err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// waitFor calls try until it finds something. Between tries it waits for
// an in-process wakeup (wakeChan is taken before trying, so no wakeup is
// missed), for the next availability time try returned (unix nanoseconds
// on the queue's clock; 0 for none known), or for opts.Poll of real time,
// which finds work written by other processes.
func waitFor[T any](ctx context.Context, db *DB, wakeChan func() <-chan struct{}, try func() (*T, int64, error)) (*T, error) {
	poll := time.NewTimer(db.opts.Poll)
	defer poll.Stop()
	for {
		if db.closed() {
			return nil, queue.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wake := wakeChan()
		found, next, err := try()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if found != nil {
			return found, nil
		}
		var due <-chan time.Time
		if next > 0 {
			until := time.Unix(0, next).Sub(db.clock.Now())
			if until <= 0 {
				continue // available since the try looked
			}
			timer := db.clock.NewTimer(until)
			defer timer.Stop()
			due = timer.Chan()
		}
		poll.Reset(db.opts.Poll)
		if db.onWait != nil {
			db.onWait()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-db.done:
			return nil, queue.ErrClosed
		case <-wake:
		case <-due:
		case <-poll.C:
		}
	}
}

type deadMsg struct {
	id     int64
	reason string
}

// tryClaim leases the first available task of pool, dead-lettering the
// undeliverable ones it meets on the way. With none, it returns when the
// next task of the pool becomes available (0 if none is known).
func (db *DB) tryClaim(ctx context.Context, pool string) (d *delivery, next int64, err error) {
	now := db.clock.Now()
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var dead []deadMsg
	emitted := false
	for range maxSkip {
		var (
			id, deliveries, availAt int64
			body                    []byte
			held                    sql.NullString
		)
		err := tx.QueryRowContext(ctx, `SELECT id, body, deliveries, token, avail_at FROM tasks
			WHERE pool = ? AND avail_at <= ? ORDER BY priority DESC, id LIMIT 1`,
			pool, nanos(now)).Scan(&id, &body, &deliveries, &held, &availAt)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		t, derr := turtles.DecodeTask(body)
		if derr != nil {
			if err := moveDead(ctx, tx, id, derr.Error(), nil, now); err != nil {
				return nil, 0, err
			}
			dead = append(dead, deadMsg{id, derr.Error()})
			continue
		}
		if held.Valid || db.opts.Exhausted(int(deliveries)) {
			// An expired lease: its holder stopped heart-beating and
			// reports nothing more, so its attempt ends here, once, with
			// the change that replaces it.
			lost := t
			lost.Attempt += int(deliveries) - 1
			beat := time.Unix(0, availAt).Add(-db.opts.Lease)
			end := db.opts.Lost(lost, int(deliveries), queue.StoppedBeating(beat))
			emitted = true
			if end.Dead {
				if err := moveDead(ctx, tx, id, end.Reason, end.Event, now); err != nil {
					return nil, 0, err
				}
				dead = append(dead, deadMsg{id, end.Reason})
				continue
			}
			if err := insertEvent(ctx, tx, *end.Event); err != nil {
				return nil, 0, fmt.Errorf("take back task %d: %w", id, err)
			}
		}
		token := newToken()
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET token = ?, avail_at = ?, deliveries = deliveries + 1
			WHERE id = ?`, token, nanos(now.Add(db.opts.Lease)), id); err != nil {
			return nil, 0, err
		}
		count := int(deliveries) + 1
		t.Attempt += count - 1
		d = &delivery{db: db, id: id, token: token, task: t, count: count}
		break
	}
	if d == nil {
		var n sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MIN(avail_at) FROM tasks WHERE pool = ?`, pool).Scan(&n); err != nil {
			return nil, 0, err
		}
		next = n.Int64
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, err
	}
	for _, m := range dead {
		db.log.Warn("dead-lettered queued message", "pool", pool, "id", m.id, "reason", m.reason)
	}
	if emitted {
		db.wakeEvents()
	}
	return d, next, nil
}

// moveDead moves task row id to the dead-letter table with reason, and
// emits final (the task's final event, nil for a body that is no task) in
// the same transaction.
func moveDead(ctx context.Context, tx *sql.Tx, id int64, reason string, final *turtles.Event, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO dead (pool, body, reason, time)
		SELECT pool, body, ?, ? FROM tasks WHERE id = ?`, reason, nanos(now), id); err != nil {
		return fmt.Errorf("dead-letter task %d: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE id = ?`, id); err != nil {
		return fmt.Errorf("dead-letter task %d: %w", id, err)
	}
	if final == nil {
		return nil
	}
	if err := insertEvent(ctx, tx, *final); err != nil {
		return fmt.Errorf("dead-letter task %d: its final event: %w", id, err)
	}
	return nil
}
