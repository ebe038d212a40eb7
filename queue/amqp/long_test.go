package amqp_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// The shared broker runs with consumer_timeout = 60s (TestMain). These
// tests hold tasks past it; they run in parallel with each other and with
// the contract suite, and take about 150s.
const (
	longLease     = 5 * time.Second
	longParkAfter = 20 * time.Second
	longTask      = 150 * time.Second
)

func openLong(t *testing.T, prefix string, parkAfter time.Duration) *amqp.Queue {
	t.Helper()
	q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix, ParkAfter: parkAfter,
		Options: queue.Options{Lease: longLease, MaxDeliveries: 3, Poll: 100 * time.Millisecond, Clock: clockwork.NewRealClock()}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// beat heartbeats d every second until ctx ends; it returns the first
// error.
func beat(ctx context.Context, d queue.Delivery) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := d.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// TestLongTask holds a task for 150s, past the broker's 60s consumer
// timeout, while a rival handle claims the whole time: the rival must get
// nothing, the holder's ack must work, and nothing may be left behind.
func TestLongTask(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix(t)
	holder, rival := openLong(t, prefix, longParkAfter), openLong(t, prefix, longParkAfter)
	task := queuetest.Task(1, "long")
	if err := holder.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d, err := holder.Claim(t.Context(), "long")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), longTask)
	defer cancel()
	var wg sync.WaitGroup
	var rivalGot queue.Delivery
	wg.Go(func() {
		if got, err := rival.Claim(ctx, "long"); err == nil {
			rivalGot = got
			cancel()
		}
	})
	if err := beat(ctx, d); err != nil {
		t.Fatalf("Heartbeat during the long task: %v", err)
	}
	wg.Wait()
	if rivalGot != nil {
		t.Fatalf("rival claimed %s (count %d) while the holder was running it", rivalGot.Task().Key(), rivalGot.Count())
	}
	if err := queuetest.Ack(t.Context(), d); err != nil {
		t.Fatalf("Ack after %s: %v", longTask, err)
	}
	// The parked copy comes back to a reaper and must be dropped, not run:
	// a task parked after it, whose holder dies, comes back first. Only
	// the rival reaps from now on, in the order the copies were parked.
	holder.Close()
	parkedBarrier(t, rival, prefix, "long", "after the ack, the parked copy came back")
	if dls, err := rival.DeadLetters(t.Context()); err != nil || len(dls) != 0 {
		t.Fatalf("DeadLetters = %v, %v; want none", dls, err)
	}
	if err := rival.Publish(t.Context(), task); err != nil {
		t.Errorf("Publish after the ack (the key must be free): %v", err)
	}
}

// TestLongTaskHolderDies: a parked task whose holder disappears comes back
// to another bot, counted, within a few leases.
func TestLongTaskHolderDies(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix(t)
	holder, rival := openLong(t, prefix, longParkAfter), openLong(t, prefix, longParkAfter)
	task := queuetest.Task(1, "long")
	if err := holder.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d, err := holder.Claim(t.Context(), "long")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), longParkAfter+5*time.Second)
	defer cancel()
	if err := beat(ctx, d); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	holder.Close() // dies after parking
	died := time.Now()
	cctx, ccancel := context.WithTimeout(t.Context(), 6*longLease)
	defer ccancel()
	got, err := rival.Claim(cctx, "long")
	if err != nil {
		t.Fatalf("the parked task did not come back within %s of its holder's death: %v", 6*longLease, err)
	}
	t.Logf("came back %s after the holder died", time.Since(died).Round(time.Millisecond))
	if got.Count() != 2 || got.Task().Attempt != 2 {
		t.Errorf("Count, Attempt = %d, %d; want 2, 2", got.Count(), got.Task().Attempt)
	}
	if err := queuetest.Ack(t.Context(), got); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

// TestConsumerTimeoutAppliesToGet checks the broker behaviour the parking
// exists for: an unacked basic.get delivery held past consumer_timeout is
// taken back (RabbitMQ 3.10 closes the channel), so the holder loses it.
func TestConsumerTimeoutAppliesToGet(t *testing.T) {
	t.Parallel()
	q := openLong(t, freshPrefix(t), time.Hour) // never parks
	if err := q.Publish(t.Context(), queuetest.Task(1, "long")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d, err := q.Claim(t.Context(), "long")
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), longTask)
	defer cancel()
	err = beat(ctx, d)
	if !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("held past consumer_timeout for %s: Heartbeat = %v, want ErrLeaseLost", longTask, err)
	}
	t.Logf("lost the unparked delivery after %s", time.Since(start).Round(time.Second))
}

// parkedBarrier fails with why if a parked copy comes back ahead of a
// task parked now: it parks a fresh task of pool through a handle of its
// own (parking after 1s, with the lease of openLong), closes that handle
// as if its bot died, and claims through q until the task comes back. The
// reaper handles parked copies in the order they were parked, so with a
// single reaping handle (q) a copy parked earlier that was to come back
// too is queued ahead of it.
func parkedBarrier(t *testing.T, q queue.Queue, prefix, pool, why string) {
	t.Helper()
	h := openLong(t, prefix, time.Second)
	b := queuetest.Task(999_999, pool)
	b.Context = "parked-barrier"
	if err := h.Publish(t.Context(), b); err != nil {
		t.Fatalf("Publish of the parked barrier: %v", err)
	}
	d, err := h.Claim(ctxFor(t, 10*time.Second), pool)
	if err != nil {
		t.Fatalf("Claim of the parked barrier: %v", err)
	}
	if d.Task().Key() != b.Key() {
		t.Fatalf("claimed %s, want the parked barrier", d.Task().Key())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // parked after 1s
	defer cancel()
	if err := beat(ctx, d); err != nil {
		t.Fatalf("heartbeat of the parked barrier: %v", err)
	}
	h.Close()
	got, err := q.Claim(ctxFor(t, 6*longLease), pool)
	if err != nil {
		t.Fatalf("the parked barrier did not come back: %v", err)
	}
	if got.Task().Key() != b.Key() {
		t.Fatalf("claimed %s (count %d) before the parked barrier: %s", got.Task().Key(), got.Count(), why)
	}
	if err := queuetest.Ack(t.Context(), got); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}
