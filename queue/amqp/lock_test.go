package amqp_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// openLock opens a queue on cfg's URL (the test broker if unset) with
// cfg's prefix (a fresh one if unset) and lock settings.
func openLock(t *testing.T, cfg amqp.Config) *amqp.Queue {
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

// rawChannel opens a plain amqp091 connection to the test broker and a
// channel on it, for tests that go around turtles; both close with t.
func rawChannel(t *testing.T) (*amqp091.Connection, *amqp091.Channel) {
	t.Helper()
	conn, err := amqp091.Dial(broker.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return conn, ch
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
// that must not run (a withdrawn duplicate, a nacked task queued twice)
// would be met first, and run.
func claimBarrier(t *testing.T, q queue.Queue, why string) {
	t.Helper()
	b := barrierTask()
	if err := q.Publish(t.Context(), b); err != nil {
		t.Fatalf("Publish of the barrier: %v", err)
	}
	d := claimKey(t, q, b.Key(), why)
	ack(t, d)
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

// TestDuplicateDroppedAfterOriginalFinished: the copy that a refused
// duplicate Publish already queued is dropped by its claimer even when
// the original has finished by then (the slot no longer says so).
func TestDuplicateDroppedAfterOriginalFinished(t *testing.T) {
	t.Parallel()
	q := openLock(t, amqp.Config{})
	task := queuetest.Task(1, "public")
	if err := q.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d, err := q.Claim(ctxFor(t, 10*time.Second), "public")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := q.Publish(t.Context(), task); !errors.Is(err, queue.ErrDuplicate) {
		t.Fatalf("Publish while running = %v, want ErrDuplicate", err)
	}
	ack(t, d)
	claimBarrier(t, q, "the withdrawn duplicate ran")
	if err := q.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish after the ack: %v", err)
	}
}

// TestTaskWithoutMarker is what a publisher killed between the task and
// its marker leaves: the claimer takes the lock, so the key is refused
// while the task runs, and free after.
func TestTaskWithoutMarker(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix(t)
	q := openLock(t, amqp.Config{Prefix: prefix})
	task := queuetest.Task(1, "public")
	// Declare the topology through the queue, then publish the task alone.
	if err := q.Publish(t.Context(), queuetest.Task(2, "public")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d, err := q.Claim(ctxFor(t, 10*time.Second), "public")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	ack(t, d)
	_, ch := rawChannel(t)
	body, _ := json.Marshal(task)
	err = ch.PublishWithContext(t.Context(), prefix+".work", "public", false, false, amqp091.Publishing{
		DeliveryMode: amqp091.Persistent, Body: body,
		Headers: amqp091.Table{"x-turtles-deliveries": int32(0), "x-turtles-token": "lost-publisher"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err = q.Claim(ctxFor(t, 10*time.Second), "public")
	if err != nil {
		t.Fatalf("Claim of the task without a marker: %v", err)
	}
	if err := q.Publish(t.Context(), task); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("Publish while it runs = %v, want ErrDuplicate", err)
	}
	ack(t, d)
	// The refused Publish's copy is dropped; a new one is accepted.
	claimBarrier(t, q, "the withdrawn duplicate ran")
	if err := q.Publish(t.Context(), task); err != nil {
		t.Errorf("Publish after the ack: %v", err)
	}
}

// TestDuplicateRefusedRightAfterClaim: a claimer looks into the lock slot
// by taking the marker and putting it back. A Publish of the same key
// right after the claim returns must still find the marker there, so the
// claim may return only once the broker has put it back. The race is
// narrow, so it is run many times.
func TestDuplicateRefusedRightAfterClaim(t *testing.T) {
	t.Parallel()
	q := openLock(t, amqp.Config{})
	for i := range 150 {
		task := queuetest.Task(i, "public")
		if err := q.Publish(t.Context(), task); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		d, err := q.Claim(ctxFor(t, 10*time.Second), "public")
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		again := task
		again.Attempt = 2
		if err := q.Publish(t.Context(), again); !errors.Is(err, queue.ErrDuplicate) {
			t.Fatalf("round %d: Publish right after the claim = %v, want ErrDuplicate", i, err)
		}
		ack(t, d)
	}
}

// TestContractLockSlots runs the queue contract with the locks in shared
// slots (Config.LockSlots): the protocol must keep every promise of the
// default, given keys that do not collide (the contract's keys do not
// share a slot among 4096).
func TestContractLockSlots(t *testing.T) {
	queuetest.RunQueue(t, queuetest.Backend[*amqp.Queue]{
		Storage: func(t *testing.T) func(t *testing.T, opts queue.Options) *amqp.Queue {
			prefix := freshPrefix(t)
			return func(t *testing.T, opts queue.Options) *amqp.Queue {
				q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix, Options: opts, ParkAfter: parkAfter, LockSlots: 4096})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Cleanup(func() { q.Close() })
				return q
			}
		},
		PublishRaw: (*amqp.Queue).PublishRaw,
	})
}

// TestLockSlotCollision: with one slot every key collides. A key whose
// slot another key holds is queued without a lock and waits until the
// slot is free; then it runs, and holds the lock against its duplicates.
func TestLockSlotCollision(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix(t)
	q := openLock(t, amqp.Config{Prefix: prefix, LockSlots: 1})
	a, b := queuetest.Task(1, "public"), queuetest.Task(2, "public")
	for _, task := range []turtles.Task{a, b} {
		if err := q.Publish(t.Context(), task); err != nil {
			t.Fatalf("Publish %s: %v", task.Key(), err)
		}
	}
	if err := q.Publish(t.Context(), a); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("Publish of the slot's holder again = %v, want ErrDuplicate", err)
	}
	da := claimKey(t, q, a.Key())
	// A barrier that takes no lock (a message without a token, as a
	// publisher older than the locks sent): the claim meets b first, which
	// must wait for the slot.
	_, ch := rawChannel(t)
	free := barrierTask()
	body, _ := json.Marshal(free)
	if err := ch.PublishWithContext(t.Context(), prefix+".work", "public", false, false, amqp091.Publishing{
		DeliveryMode: amqp091.Persistent, Body: body, Headers: amqp091.Table{"x-turtles-deliveries": int32(0)}}); err != nil {
		t.Fatal(err)
	}
	ack(t, claimKey(t, q, free.Key(), "while the other key holds the only slot"))
	ack(t, da)
	db := claimKey(t, q, b.Key()) // once the slot is free
	if db.Count() != 1 {
		t.Errorf("Count() = %d after waiting for the slot, want 1 (waiting is not a delivery)", db.Count())
	}
	if err := q.Publish(t.Context(), b); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("Publish of the running key = %v, want ErrDuplicate", err)
	}
	ack(t, db)
	claimBarrier(t, q, "a withdrawn duplicate ran")
	if err := q.Publish(t.Context(), b); err != nil {
		t.Errorf("Publish after the ack: %v", err)
	}
}
