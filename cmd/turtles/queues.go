package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/state"
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
		if !isPostgres(s.Database) {
			log.Warn("task keys are deduped in an SQLite file: every hook, bot and reporter on this broker must use the same file (one machine), or the same --database postgres://...",
				"database", s.Database)
		}
	}
	// One path for every process that publishes or ends tasks: the
	// task's key is reserved in the state database before the backend
	// sees it, and freed by its final event (results.Recorder).
	sys.Queue.Set(queue.Dedupe(q, state.Reserver{DB: sys.State.Get()}, s.WebhookPublishTimeout))
	sys.Events.Set(q)
	sys.Inbox.Set(q)
	sys.reg.MustRegister(queueCollector{q})
	return nil
}

// openDeliveries makes the state database the webhook delivery log: with
// PostgreSQL, shared by every hook replica.
func (sys *system) openDeliveries() error {
	sys.Deliveries.Set(sys.State.Get())
	return nil
}
