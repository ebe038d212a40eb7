package amqp_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// TestSpawnAllOrNothing: a plan's tasks, their events and the plan's ack
// are one transaction, wherever the connection is cut. Cut before the
// commit reaches the broker, nothing happened and the plan runs again;
// cut after the broker committed (the client never hears it), everything
// happened and the plan does not run again.
func TestSpawnAllOrNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		arm  func(p *cutProxy)
		all  bool
	}{
		{"cut before the commit", func(p *cutProxy) { p.armed.Store(true) }, false},
		{"commit reply lost", func(p *cutProxy) { p.cutOnCommit.Store(true) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := freshPrefix(t)
			q, proxy := openCut(t, prefix)
			// The log is read through a handle of its own, not through the proxy.
			events := openWith(t, amqp.Config{Prefix: prefix})
			plan := queuetest.Task(1, "public")
			if err := q.Publish(t.Context(), plan); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			d := claimKey(t, q, plan.Key())
			spawns := []queue.Spawn{queuetest.SpawnOf(queuetest.Task(3, "linux"), "queued-3"),
				queuetest.SpawnOf(queuetest.Task(4, "linux"), "queued-4")}
			tc.arm(proxy)
			_, err := d.AckWithTasks(ctxFor(t, 30*time.Second), spawns,
				[]turtles.Event{queuetest.Event("final", 1, turtles.EventFinished)})
			if proxy.cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d connections (AckWithTasks: %v), want 1: the test did not test that", proxy.cuts.Load(), err)
			}
			if err != nil && !errors.Is(err, queue.ErrLeaseLost) {
				t.Fatalf("AckWithTasks across a cut = %v, want nil or ErrLeaseLost", err)
			}

			// What was queued and emitted is ahead of barriers sent now.
			barrier := queuetest.Task(5, "linux")
			barrier.Context = "barrier"
			if err := q.Publish(t.Context(), barrier); err != nil {
				t.Fatalf("Publish of the barrier: %v", err)
			}
			var got []string
			for {
				d, err := q.Claim(ctxFor(t, 10*time.Second), "linux")
				if err != nil {
					t.Fatalf("Claim(linux): %v", err)
				}
				ack(t, d)
				if d.Task().Key() == barrier.Key() {
					break
				}
				got = append(got, d.Task().Key())
			}
			if err := events.Emit(t.Context(), queuetest.Event("barrier", 5, turtles.EventQueued)); err != nil {
				t.Fatalf("Emit of the barrier: %v", err)
			}
			var ids []string
			for {
				ed, err := events.Receive(ctxFor(t, 10*time.Second))
				if err != nil {
					t.Fatalf("Receive: %v", err)
				}
				if err := ed.Ack(t.Context()); err != nil {
					t.Fatalf("Ack event: %v", err)
				}
				if ed.Event().ID == "barrier" {
					break
				}
				ids = append(ids, ed.Event().ID)
			}
			slices.Sort(ids)
			wantTasks, wantIDs := []string(nil), []string(nil)
			if tc.all {
				wantTasks = []string{spawns[0].Task.Key(), spawns[1].Task.Key()}
				wantIDs = []string{"final", "queued-3", "queued-4"}
				claimBarrier(t, q, "the plan came back although it was acked")
			} else {
				if again := claimKey(t, q, plan.Key()); again.Count() != 2 {
					t.Errorf("the plan came back with Count() = %d, want 2", again.Count())
				}
			}
			if diff := cmp.Diff(wantTasks, got); diff != "" {
				t.Errorf("tasks queued (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantIDs, ids); diff != "" {
				t.Errorf("events emitted (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSpawnParked: a plan that ran past ParkAfter has no message left to
// ack with; its tasks and events are published one by one (all of them:
// the backend dedupes nothing) and its lease ends, so that its parked copy
// does not bring it back.
func TestSpawnParked(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix(t)
	q := openLong(t, prefix, time.Second)
	plan := queuetest.Task(1, "public")
	if err := q.Publish(t.Context(), plan); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d := claimKey(t, q, plan.Key())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // parked after 1s
	if err := beat(ctx, d); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	cancel()
	live, fresh := queuetest.Task(2, "linux"), queuetest.Task(3, "linux")
	if err := q.Publish(t.Context(), live); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	spawns := []queue.Spawn{queuetest.SpawnOf(live, "queued-2"), queuetest.SpawnOf(fresh, "queued-3")}
	dups, err := d.AckWithTasks(ctxFor(t, 30*time.Second), spawns, []turtles.Event{queuetest.Event("final", 1, turtles.EventFinished)})
	if err != nil {
		t.Fatalf("AckWithTasks of a parked plan: %v", err)
	}
	if len(dups) != 0 {
		t.Errorf("duplicates = %v, want none (the backend dedupes nothing)", dups)
	}
	var ids []string
	for range 3 {
		ed, err := q.Receive(ctxFor(t, 10*time.Second))
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		ids = append(ids, ed.Event().ID)
		ed.Ack(t.Context())
	}
	if diff := cmp.Diff([]string{"queued-2", "queued-3", "final"}, ids); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, want := range []turtles.Task{live, live, fresh} {
		d, err := q.Claim(ctxFor(t, 10*time.Second), "linux")
		if err != nil {
			t.Fatalf("Claim(linux): %v", err)
		}
		if d.Task().Key() != want.Key() {
			t.Errorf("claimed %s, want %s", d.Task().Key(), want.Key())
		}
		ack(t, d)
	}
	// The parked copy's TTL (the lease) ends and the reaper finds the
	// plan done: a task parked after it, whose holder dies, comes back
	// first.
	parkedBarrier(t, q, prefix, "public", "the parked plan came back after AckWithTasks")
}
