package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/hook"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/sqlite"
)

// queues is the queue backend a process works on, chosen by --queue: a
// file path is the embedded SQLite queue, an amqp:// or amqps:// URL is
// RabbitMQ (docs/distributed.md).
type queues struct {
	queue  queue.Queue
	events queue.Events
	// deliveries remembers webhook deliveries: the SQLite queue itself,
	// or with RabbitMQ a small SQLite file in the data dir (opened only
	// by processes that receive webhooks).
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

// brokerStillDownEvery is how often a process logs that the broker is
// still away, between the lines that say it was lost and that it is back:
// a 10-minute outage is a dozen lines, not one per reconnect try.
const brokerStillDownEvery = time.Minute

func openQueues(s Settings, log *slog.Logger) (*queues, error) {
	opts := queue.Options{Lease: s.Lease, MaxDeliveries: s.MaxDeliveries, Poll: queuePoll}
	if !isAMQP(s.Queue) {
		db, err := sqlite.Open(s.Queue, opts, log.With("part", "queue"))
		if err != nil {
			return nil, err
		}
		return &queues{queue: db, events: db, closers: []func() error{db.Close},
			deliveries: func() (hook.DeliveryLog, error) { return db, nil }}, nil
	}
	cfg := amqp.Config{URL: s.Queue, Options: opts, Pools: []string{s.Pool}, Name: "turtles " + s.BotName,
		StillDownEvery: brokerStillDownEvery, Log: log.With("part", "queue")}
	q, err := amqp.Open(cfg)
	if err != nil {
		return nil, err
	}
	e, err := amqp.OpenEvents(cfg)
	if err != nil {
		q.Close()
		return nil, err
	}
	qs := &queues{queue: q, events: e, closers: []func() error{q.Close, e.Close}}
	qs.deliveries = func() (hook.DeliveryLog, error) {
		path := filepath.Join(s.DataDir, "deliveries.db")
		db, err := sqlite.Open(path, opts, log.With("part", "deliveries"))
		if err != nil {
			return nil, fmt.Errorf("open webhook delivery log: %w", err)
		}
		qs.closers = append(qs.closers, db.Close)
		return db, nil
	}
	return qs, nil
}

func (qs *queues) Close() error {
	var errs []error
	for _, c := range qs.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}
