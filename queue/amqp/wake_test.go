package amqp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// TestWakeAcrossHandles: a claim waiting in one handle (a bot) returns
// as soon as another handle (a hook, another process) publishes, though
// its poll is an hour: the publisher wakes it through the broker.
func TestWakeAcrossHandles(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the test broker")
	}
	prefix := freshPrefix(t)
	open := func() *amqp.Queue {
		q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix, ParkAfter: parkAfter,
			Options: queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: time.Hour, Clock: clockwork.NewRealClock()}})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	hook, bot := open(), open()
	// A first claim on the empty pool starts the bot's listener.
	warm, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := bot.Claim(warm, "public"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim on an empty pool = %v, want the deadline", err)
	}
	for i := range 5 {
		got := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			d, err := bot.Claim(ctx, "public")
			if err == nil {
				_, err = d.AckWithTasks(ctx, nil, nil)
			}
			got <- err
		}()
		time.Sleep(50 * time.Millisecond) // let the claim find the pool empty and wait
		start := time.Now()
		if err := hook.Publish(t.Context(), queuetest.Task(i, "public")); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("round %d: the waiting claim: %v (its poll is an hour: no wake-up came)", i, err)
		}
		t.Logf("round %d: claimed %s after the publish began", i, time.Since(start).Round(time.Millisecond))
	}
}
