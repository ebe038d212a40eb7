package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/hook"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/sqlite"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (deliveryLog)
)

// queues is the queue backend a process works on, chosen by --queue: a
// file path is the embedded SQLite queue, an amqp:// or amqps:// URL is
// RabbitMQ (docs/distributed.md).
type queues struct {
	queue queue.Queue
	// events is queue: the event log lives on the queue's storage.
	events queue.Events
	// deliveries remembers webhook deliveries, in a small SQLite file in
	// the data dir (opened only by processes that receive webhooks).
	deliveries func() (hook.DeliveryLog, error)
	closers    []func() error
}

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

func openQueues(s Settings, log *slog.Logger) (*queues, error) {
	opts := queue.Options{Lease: s.Lease, MaxDeliveries: s.MaxDeliveries, Poll: queuePoll, Clock: clockwork.NewRealClock()}
	qs := &queues{}
	// TEMPORARY (issue 14): the delivery log left the queue; package state
	// will hold it (issue 15), and the coordinator wires it in here.
	qs.deliveries = func() (hook.DeliveryLog, error) {
		l, err := openDeliveryLog(filepath.Join(s.DataDir, "deliveries.db"))
		if err != nil {
			return nil, err
		}
		qs.closers = append(qs.closers, l.Close)
		return l, nil
	}
	if !isAMQP(s.Queue) {
		db, err := sqlite.Open(s.Queue, opts, log.With("part", "queue"))
		if err != nil {
			return nil, err
		}
		qs.queue, qs.events, qs.closers = db, db, []func() error{db.Close}
		return qs, nil
	}
	q, err := amqp.Open(amqp.Config{URL: s.Queue, Prefix: brokerPrefix, Options: opts, ParkAfter: parkAfter,
		Pools: []string{s.Pool}, Name: "turtles " + s.BotName, StillDownEvery: brokerStillDownEvery, Log: log.With("part", "queue")})
	if err != nil {
		return nil, err
	}
	qs.queue, qs.events, qs.closers = q, q, []func() error{q.Close}
	return qs, nil
}

func (qs *queues) Close() error {
	var errs []error
	for _, c := range qs.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
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
