package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/sqlite"
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

// brokerStillDownEvery is how often a process logs that the broker is
// still away, between the lines that say it was lost and that it is back:
// a 10-minute outage is a dozen lines, not one per reconnect try.
const brokerStillDownEvery = time.Minute

// openQueue opens the queue backend --queue names: a file path is the
// embedded SQLite queue, an amqp:// or amqps:// URL is RabbitMQ
// (docs/distributed.md). One backend is the queue, the event log and the
// inbox; the SQLite queue also remembers webhook deliveries.
func (sys *system) openQueue() error {
	s, log := sys.s, sys.log
	opts := queue.Options{Lease: s.Lease, MaxDeliveries: s.MaxDeliveries, Poll: queuePoll}
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
		sys.Events.Set(db)
		sys.Deliveries.Set(db)
	} else {
		cfg := amqp.Config{URL: s.Queue, Options: opts, Pools: []string{s.Pool}, Name: "turtles " + s.BotName,
			StillDownEvery: brokerStillDownEvery, Log: log.With("part", "queue")}
		aq, err := amqp.Open(cfg)
		if err != nil {
			return err
		}
		sys.onClose(aq.Close)
		e, err := amqp.OpenEvents(cfg)
		if err != nil {
			return err
		}
		sys.onClose(e.Close)
		q = aq
		sys.Events.Set(e)
	}
	sys.Queue.Set(q)
	if inbox, ok := q.(queue.Inbox); ok {
		sys.Inbox.Set(inbox)
	} else {
		sys.Inbox.absent("the queue backend has no inbox")
	}
	sys.reg.MustRegister(queueCollector{q})
	return nil
}

// openDeliveries opens the webhook delivery log: with RabbitMQ a small
// SQLite file in the data dir (the SQLite queue is its own).
func (sys *system) openDeliveries() error {
	if err := os.MkdirAll(sys.s.DataDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", sys.s.DataDir, err)
	}
	opts := queue.Options{Lease: sys.s.Lease, MaxDeliveries: sys.s.MaxDeliveries, Poll: queuePoll}
	db, err := sqlite.Open(filepath.Join(sys.s.DataDir, "deliveries.db"), opts, sys.log.With("part", "deliveries"))
	if err != nil {
		return fmt.Errorf("open webhook delivery log: %w", err)
	}
	sys.onClose(db.Close)
	sys.Deliveries.Set(db)
	return nil
}
