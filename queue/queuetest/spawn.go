package queuetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// SpawnOf is a spawn of task with a Queued event of ID id, for
// AckWithTasks.
func SpawnOf(task turtles.Task, id string) queue.Spawn {
	ev := Event(id, 0, turtles.EventQueued)
	ev.Task = task
	return queue.Spawn{Task: task, Queued: ev}
}

// testSpawn: a task (a plan) ends by queuing others. Each is queued once
// with its Queued event, also one whose key is queued already (the
// backend dedupes nothing: queue.Dedupe left out the keys that were
// live), the final event is emitted, and the task is gone.
func testSpawn(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
	events := q
	plan, live := Task(1, "public"), Task(2, "linux")
	publish(t, q, plan, live)
	d := claim(t, q, "public")
	fresh, fresh2 := Task(3, "linux"), Task(4, "public")
	final := Event("final", 1, turtles.EventFinished)
	dups, err := d.AckWithTasks(ctxT(t, patient),
		[]queue.Spawn{SpawnOf(fresh, "queued-3"), SpawnOf(live, "queued-2"), SpawnOf(fresh2, "queued-4")},
		[]turtles.Event{final})
	if err != nil {
		t.Fatalf("AckWithTasks: %v", err)
	}
	if len(dups) != 0 {
		t.Errorf("AckWithTasks duplicates = %v, want none (the backend dedupes nothing)", dups)
	}
	for pool, want := range map[string][]turtles.Task{"linux": {live, fresh, live}, "public": {fresh2}} {
		var got []turtles.Task
		for range want {
			d := claim(t, q, pool)
			got = append(got, d.Task())
			ack(t, d)
		}
		if diff := cmp.Diff(keys(want), keys(got)); diff != "" {
			t.Errorf("pool %s after AckWithTasks (-want +got):\n%s", pool, diff)
		}
		claimBarrier(t, q, pool, "a task was queued twice")
	}
	var ids []string
	for range 4 {
		ed := receive(t, events)
		ids = append(ids, ed.Event().ID)
		ackEvent(t, ed)
	}
	receiveBarrier(t, events, "an event was emitted twice")
	slices.Sort(ids)
	if diff := cmp.Diff([]string{"final", "queued-2", "queued-3", "queued-4"}, ids); diff != "" {
		t.Errorf("events of AckWithTasks (-want +got):\n%s", diff)
	}
	if _, err := d.AckWithTasks(ctxT(t, patient), nil, nil); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("ack after AckWithTasks = %v, want ErrLeaseLost", err)
	}
}

// testSpawnLeaseLost: a holder whose lease was taken over queues nothing
// and emits nothing; the task runs again. The only event is the queue's
// own, which ends the lost attempt.
func testSpawnLeaseLost(t *testing.T, open opener) {
	o, clock := opts()
	q := open(t, o)
	events := q
	publish(t, q, Task(1, "public"))
	d := claim(t, q, "public")
	clock.Advance(o.Lease + time.Second) // no heartbeat: the bot seems dead
	again := claim(t, open(t, o), "public")
	if again.Count() != 2 {
		t.Fatalf("claim after the lease: Count() = %d, want 2", again.Count())
	}
	ack(t, again)
	_, err := d.AckWithTasks(ctxT(t, patient), []queue.Spawn{SpawnOf(Task(3, "linux"), "queued-3")},
		[]turtles.Event{Event("final", 1, turtles.EventFinished)})
	if !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("AckWithTasks after the lease was taken = %v, want ErrLeaseLost", err)
	}
	claimBarrier(t, q, "linux", "a lost holder's spawn was queued")
	ed := receive(t, events)
	if ev := ed.Event(); ev.Type != turtles.EventLost || ev.Task.Attempt != 1 {
		t.Errorf("event after the lease was taken = %s of attempt %d, want %s of attempt 1", ev.Type, ev.Task.Attempt, turtles.EventLost)
	}
	ackEvent(t, ed)
	receiveBarrier(t, events, "a lost holder's events were emitted")
}
