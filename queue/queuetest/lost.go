package queuetest

import (
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
)

// testLost lets a holder's lease run out twice, the second time up to
// MaxDeliveries: each lost attempt ends with exactly one event, a lost
// event for the one whose task runs again and the final infra event for
// the one that is dead-lettered, each naming the attempt that was lost.
func testLost(t *testing.T, open opener) {
	o, clock := opts()
	o.MaxDeliveries = 2
	q := open(t, o)
	task := Task(1, "public")
	publish(t, q, task)
	claim(t, q, "public") // its holder dies
	clock.Advance(o.Lease + time.Second)
	d := claim(t, q, "public")
	if got := d.Task().Attempt; got != 2 {
		t.Fatalf("redelivered Attempt = %d, want 2", got)
	}
	// The second holder dies too; the task is dead-lettered.
	clock.Advance(o.Lease + time.Second)
	claimBarrier(t, q, "public", "a task was delivered past MaxDeliveries")
	eventually(t, func() error { return deadAre(q, []string{task.Key()}) })

	// A barrier: everything the queue emitted is before it.
	barrier := Event("barrier", 2, turtles.EventQueued)
	emit(t, q, barrier)
	type seen struct {
		typ     turtles.EventType
		attempt int
		class   turtles.Class
	}
	var got []seen
	for {
		ed := receive(t, q)
		ev := ed.Event()
		ackEvent(t, ed)
		if ev.ID == barrier.ID {
			break
		}
		if ev.Task.Key() != task.Key() {
			continue
		}
		if ev.Task.Token != task.Token {
			t.Errorf("%s event has token %q, want the task's %q", ev.Type, ev.Task.Token, task.Token)
		}
		s := seen{typ: ev.Type, attempt: ev.Task.Attempt}
		if ev.Outcome != nil {
			s.class = ev.Outcome.Class
			if ev.Outcome.Reason == "" {
				t.Errorf("%s event of attempt %d has no reason", ev.Type, ev.Task.Attempt)
			}
		}
		got = append(got, s)
	}
	want := []seen{
		{turtles.EventLost, 1, turtles.Infra},
		{turtles.EventFinished, 2, turtles.Infra},
	}
	if len(got) != len(want) {
		t.Fatalf("events of the task = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
