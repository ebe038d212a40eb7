package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/sqlite"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (deliveryLog)
)

func isAMQP(q string) bool {
	return strings.HasPrefix(q, "amqp://") || strings.HasPrefix(q, "amqps://")
}

// redactQueue is --queue for logs: a URL without its password.
func redactQueue(q string) string {
	if isAMQP(q) {
		return amqp.Redact(q)
	}
	return q
}

// Queue settings that are not flags; the queue packages decide none.
const (
	// brokerStillDownEvery is how often a process logs that the broker is
	// still away, between the lines that say it was lost and that it is
	// back: a 10-minute outage is a dozen lines, not one per reconnect
	// try.
	brokerStillDownEvery = time.Minute
	// queuePoll is how often a waiting claim looks for work that another
	// process queued (a publish in the same process wakes it at once).
	queuePoll = 200 * time.Millisecond
	// brokerPrefix starts the names of everything turtles declares on
	// RabbitMQ.
	brokerPrefix = "turtles"
	// parkAfter is how long a bot holds a task as an unacked delivery
	// before parking it, well below RabbitMQ's consumer_timeout (30
	// minutes by default).
	parkAfter = 5 * time.Minute
)

// openQueue opens the queue backend --queue names: a file path is the
// embedded SQLite queue, an amqp:// or amqps:// URL is RabbitMQ
// (docs/distributed.md). One backend is the queue, the event log and the
// inbox.
func (sys *system) openQueue() error {
	s, log := sys.s, sys.log
	opts := queue.Options{Lease: s.Lease, MaxDeliveries: s.MaxDeliveries, Poll: queuePoll, Clock: clockwork.NewRealClock()}
	var q queue.Queue
	if !isAMQP(s.Queue) {
		if err := os.MkdirAll(filepath.Dir(s.Queue), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(s.Queue), err)
		}
		db, err := sqlite.Open(s.Queue, opts, log.With("part", "queue"))
		if err != nil {
			return err
		}
		sys.onClose(db.Close)
		q = db
	} else {
		aq, err := amqp.Open(amqp.Config{URL: s.Queue, Prefix: brokerPrefix, Options: opts, ParkAfter: parkAfter,
			Pools: []string{s.Pool}, Name: "turtles " + s.BotName, StillDownEvery: brokerStillDownEvery, Log: log.With("part", "queue")})
		if err != nil {
			return err
		}
		sys.onClose(aq.Close)
		q = aq
	}
	sys.Queue.Set(q)
	sys.Events.Set(q)
	sys.Inbox.Set(q)
	sys.reg.MustRegister(queueCollector{q})
	return nil
}

// openDeliveries opens the webhook delivery log, a small SQLite file in
// the data dir.
func (sys *system) openDeliveries() error {
	if err := os.MkdirAll(sys.s.DataDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", sys.s.DataDir, err)
	}
	l, err := openDeliveryLog(filepath.Join(sys.s.DataDir, "deliveries.db"))
	if err != nil {
		return err
	}
	sys.onClose(l.Close)
	sys.Deliveries.Set(l)
	return nil
}

// deliveryLog is a hook.DeliveryLog in a SQLite file of its own.
//
// TEMPORARY (issue 14): it stands in for package state's delivery log
// until the coordinator wires that in; it is what queue/sqlite kept in
// its deliveries table before, minus the group commit.
type deliveryLog struct {
	db *sql.DB

	mu         sync.Mutex
	lastPruned time.Time
}

// deliveryTTL is how long a webhook delivery is remembered. Forges
// redeliver within hours; a week is plenty.
const deliveryTTL = 7 * 24 * time.Hour

func openDeliveryLog(path string) (*deliveryLog, error) {
	// synchronous=FULL: a delivery recorded is answered 2xx, and a forge
	// does not redeliver by itself.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open webhook delivery log %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, seen INTEGER NOT NULL);
		CREATE INDEX IF NOT EXISTS deliveries_seen ON deliveries(seen)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("open webhook delivery log %s: %w", path, err)
	}
	return &deliveryLog{db: db}, nil
}

// Seen implements hook.DeliveryLog.
func (l *deliveryLog) Seen(ctx context.Context, id string) (bool, error) {
	var one int
	err := l.db.QueryRowContext(ctx, `SELECT 1 FROM deliveries WHERE id = ? AND seen >= ?`, id, time.Now().Add(-deliveryTTL).UnixNano()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up webhook delivery %q: %w", id, err)
	}
	return true, nil
}

// FirstDelivery implements hook.DeliveryLog.
func (l *deliveryLog) FirstDelivery(ctx context.Context, id string) (bool, error) {
	now := time.Now()
	l.mu.Lock()
	prune := now.Sub(l.lastPruned) > time.Hour
	if prune {
		l.lastPruned = now
	}
	l.mu.Unlock()
	if prune {
		if _, err := l.db.ExecContext(ctx, `DELETE FROM deliveries WHERE seen < ?`, now.Add(-deliveryTTL).UnixNano()); err != nil {
			return false, fmt.Errorf("prune webhook deliveries: %w", err)
		}
	}
	res, err := l.db.ExecContext(ctx, `INSERT INTO deliveries (id, seen) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, id, now.UnixNano())
	if err != nil {
		return false, fmt.Errorf("record webhook delivery %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record webhook delivery %q: %w", id, err)
	}
	return n == 1, nil
}

func (l *deliveryLog) Close() error { return l.db.Close() }
