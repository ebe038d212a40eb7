package amqp_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

func openLock(t *testing.T, prefix string) *amqp.Queue {
	t.Helper()
	q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix,
		Options: queue.Options{Lease: time.Minute, Poll: 20 * time.Millisecond}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
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
	q := openLock(t, freshPrefix(t))
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
	if err := d.Ack(t.Context()); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if got, err := q.Claim(ctxFor(t, time.Second), "public"); err == nil {
		t.Fatalf("claimed %s (count %d): the withdrawn duplicate ran", got.Task().Key(), got.Count())
	}
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
	q := openLock(t, prefix)
	task := queuetest.Task(1, "public")
	// Declare the topology through the queue, then publish the task alone.
	if err := q.Publish(t.Context(), queuetest.Task(2, "public")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d, err := q.Claim(ctxFor(t, 10*time.Second), "public")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	d.Ack(t.Context())
	conn, err := amqp091.Dial(broker.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
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
	if err := d.Ack(t.Context()); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	// The refused Publish's copy is dropped; a new one is accepted.
	if got, err := q.Claim(ctxFor(t, time.Second), "public"); err == nil {
		t.Fatalf("claimed %s: the withdrawn duplicate ran", got.Task().Key())
	}
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
	q := openLock(t, freshPrefix(t))
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
		if err := d.Ack(t.Context()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}
