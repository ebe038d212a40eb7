package amqp_test

import (
	"cmp"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// openWith opens a queue on cfg's URL (the test broker if unset) with
// cfg's prefix (a fresh one if unset).
func openWith(t *testing.T, cfg amqp.Config) *amqp.Queue {
	t.Helper()
	cfg.URL, cfg.Prefix = cmp.Or(cfg.URL, broker.URL), cmp.Or(cfg.Prefix, freshPrefix(t))
	cfg.Options, cfg.ParkAfter = realOpts(), parkAfter
	q, err := amqp.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// claimKey claims from pool public and fails unless it gets key; why,
// if given, says what another task would mean.
func claimKey(t *testing.T, q queue.Queue, key string, why ...string) queue.Delivery {
	t.Helper()
	d, err := q.Claim(ctxFor(t, 10*time.Second), "public")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if d.Task().Key() != key {
		t.Fatalf("claimed %s (count %d), want %s %v", d.Task().Key(), d.Count(), key, why)
	}
	return d
}

var barriers atomic.Int64

// barrierTask is a fresh task of pool public.
func barrierTask() turtles.Task {
	b := queuetest.Task(int(1_000_000+barriers.Add(1)), "public")
	b.Context = "barrier"
	return b
}

// claimBarrier fails with why if anything claimable from pool public is
// ahead of a task published now: it publishes one and claims it. A copy
// that must not run (a nacked task queued twice) would be met first.
func claimBarrier(t *testing.T, q queue.Queue, why string) {
	t.Helper()
	b := barrierTask()
	if err := q.Publish(t.Context(), b); err != nil {
		t.Fatalf("Publish of the barrier: %v", err)
	}
	d := claimKey(t, q, b.Key(), why)
	ack(t, d)
}

// copiesOf claims (and acks) everything claimable from pool public up
// to a barrier published now, and returns how many were of key; it
// fails on a task of another key.
func copiesOf(t *testing.T, q queue.Queue, key string) int {
	t.Helper()
	b := barrierTask()
	if err := q.Publish(t.Context(), b); err != nil {
		t.Fatalf("Publish of the barrier: %v", err)
	}
	n := 0
	for {
		d, err := q.Claim(ctxFor(t, 10*time.Second), "public")
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		ack(t, d)
		switch d.Task().Key() {
		case b.Key():
			return n
		case key:
			n++
		default:
			t.Fatalf("claimed %s, want %s or the barrier", d.Task().Key(), key)
		}
	}
}

// ack acks d.
func ack(t *testing.T, d queue.Delivery) {
	t.Helper()
	if err := queuetest.Ack(t.Context(), d); err != nil {
		t.Fatalf("ack of %s: %v", d.Task().Key(), err)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
