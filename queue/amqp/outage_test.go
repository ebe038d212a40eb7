package amqp_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/queue/queuetest"
	"github.com/turtles-ci/turtles/syncio"
)

// openProxied opens a queue that reaches the test broker through an
// amqptest.Proxy, logging to the returned buffer.
func openProxied(t *testing.T, cfg amqp.Config) (*amqp.Queue, *amqptest.Proxy, *syncio.Buffer) {
	t.Helper()
	proxy, err := amqptest.StartProxy(broker.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	logs := &syncio.Buffer{}
	cfg.URL, cfg.Log = proxy.URL, slog.New(slog.NewTextHandler(logs, nil))
	return openWith(t, cfg), proxy, logs
}

// waitUntil polls ok until it holds, failing after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublishDuringOutage: a publish while the broker is away returns
// queue.ErrUnavailable by its context's deadline, whether the broker
// refuses connections (a stopped node) or stops answering on an open one
// (a cut network: the client only learns from missed heartbeats, 30 s
// later). Once the broker is back, the same task is published and
// claimed once.
func TestPublishDuringOutage(t *testing.T) {
	t.Parallel()
	const deadline = 2 * time.Second
	for _, tt := range []struct {
		name   string
		outage func(*amqptest.Proxy)
	}{
		{name: "refused", outage: (*amqptest.Proxy).Down},
		{name: "silent", outage: (*amqptest.Proxy).Hang},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, proxy, _ := openProxied(t, amqp.Config{})
			// The pool's queue is declared by a first publish, so that
			// the silent case waits in the task's confirm, not in the
			// pool's declaration.
			first := queuetest.Task(1, "public")
			if err := q.Publish(t.Context(), first); err != nil {
				t.Fatalf("Publish before the outage: %v", err)
			}
			ack(t, claimKey(t, q, first.Key()))

			tt.outage(proxy)
			task := queuetest.Task(2, "public")
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			began := time.Now()
			err := q.Publish(ctx, task)
			took := time.Since(began)
			t.Logf("Publish during the outage returned after %s: %v", took.Round(time.Millisecond), err)
			if err == nil {
				t.Fatalf("Publish during the outage = nil, want an error")
			}
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, queue.ErrUnavailable) {
				t.Errorf("Publish during the outage = %v, want an error wrapping queue.ErrUnavailable and context.DeadlineExceeded", err)
			}
			if took > deadline+time.Second {
				t.Errorf("Publish during the outage took %s, want about its deadline, %s", took, deadline)
			}

			proxy.Up()
			if err := q.Publish(ctxFor(t, 30*time.Second), task); err != nil {
				t.Fatalf("Publish after the outage = %v, want nil", err)
			}
			// The broker dedupes nothing: a copy of the publish during the
			// outage may have got in before it failed (the caller then
			// frees its reservation, queue.Dedupe); not more.
			if n := copiesOf(t, q, task.Key()); n < 1 || n > 2 {
				t.Errorf("%d copies of a task published during an outage and after it, want 1 or 2", n)
			}
		})
	}
}

// TestOutageLogging: an outage is logged once when the connection is
// lost (with the cause), every StillDownEvery while it lasts, and once
// when it is back (with how long it was down), however many reconnect
// tries it takes.
func TestOutageLogging(t *testing.T) {
	t.Parallel()
	const every = 300 * time.Millisecond
	q, proxy, logs := openProxied(t, amqp.Config{StillDownEvery: every})
	count := func(msg string) int { return strings.Count(logs.String(), `msg="`+msg) }
	const (
		lost  = "broker connection lost"
		still = "broker still down"
		back  = "broker connection back"
	)

	down := time.Now()
	proxy.Down()
	waitUntil(t, 10*time.Second, "five reconnect tries", func() bool { return proxy.Refused() >= 5 })
	proxy.Up()
	// Publish waits for the reconnect, which comes at the next try after
	// Up (the backoff is 1.6 s by then): after it, the "back" line is out.
	if err := q.Publish(ctxFor(t, 30*time.Second), queuetest.Task(1, "public")); err != nil {
		t.Fatalf("Publish after the outage: %v", err)
	}
	downFor := time.Since(down)

	tries := proxy.Refused()
	got := map[string]int{lost: count(lost), still: count(still), back: count(back)}
	minStill, maxStill := int(downFor/every)-2, int(downFor/every)+1
	t.Logf("outage of %s, %d refused tries: %v", downFor.Round(time.Millisecond), tries, got)
	if got[lost] != 1 || got[back] != 1 || got[still] < minStill || got[still] > maxStill {
		t.Errorf("log lines over an outage of %s with %d tries: %v, want 1 %q, 1 %q and %d to %d %q\n%s",
			downFor, tries, got, lost, back, minStill, maxStill, still, logs)
	}
	if n := strings.Count(logs.String(), "\n"); n != got[lost]+got[still]+got[back] {
		t.Errorf("%d log lines, want only the %d about the outage:\n%s", n, got[lost]+got[still]+got[back], logs)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(l, lost) && !strings.Contains(l, "cause="):
			t.Errorf("%q line without its cause: %s", lost, l)
		case strings.Contains(l, back) && !strings.Contains(l, "down_for="):
			t.Errorf("%q line without how long it was down: %s", back, l)
		}
	}
}
