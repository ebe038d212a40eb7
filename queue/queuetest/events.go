package queuetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

var eventTests = []contractTest{
	{"InOrder", testEventsInOrder},
	{"RedeliveredWhenNotAcked", testEventsRedelivered},
	{"GoneAfterAck", testEventsAcked},
	{"ReceiveWaitsAndWakes", testEventsWake},
	{"ReceiveHonoursContext", testEventsContext},
}

// Event returns an event with ID id about Task(task, "public").
func Event(id string, task int, typ turtles.EventType) turtles.Event {
	ev := turtles.Event{
		ID:   id,
		Type: typ,
		Task: Task(task, "public"),
		Bot:  "bot-1",
		Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if typ == turtles.EventFinished {
		ev.Outcome = &turtles.Outcome{Class: turtles.Success, ExitCode: 0, Reason: "tests passed"}
	}
	return ev
}

func emit(t *testing.T, e queue.Events, evs ...turtles.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := e.Emit(ctxT(t, patient), ev); err != nil {
			t.Fatalf("Emit(%s): %v", ev.ID, err)
		}
	}
}

func receive(t *testing.T, e queue.Events) queue.EventDelivery {
	t.Helper()
	d, err := e.Receive(ctxT(t, patient))
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return d
}

// receiveBarrier checks that no event is receivable ahead of one emitted
// now: it emits one and receives, and fails with why if it gets another.
// Events are received in the order emitted, so whatever was receivable
// before the barrier would come first.
func receiveBarrier(t *testing.T, e queue.Events, why string) {
	t.Helper()
	b := Event(fmt.Sprintf("barrier-%d", barriers.Add(1)), 999_999, turtles.EventQueued)
	emit(t, e, b)
	d := receive(t, e)
	if d.Event().ID != b.ID {
		t.Fatalf("received %s (%s of %s) before the barrier event: %s", d.Event().ID, d.Event().Type, d.Event().Task.Key(), why)
	}
	ackEvent(t, d)
}

func ackEvent(t *testing.T, d queue.EventDelivery) {
	t.Helper()
	if err := d.Ack(ctxT(t, patient)); err != nil {
		t.Fatalf("Ack(%s): %v", d.Event().ID, err)
	}
}

func testEventsInOrder(t *testing.T, open opener) {
	o, _ := opts()
	e := open(t, o)
	want := []turtles.Event{
		Event("a1", 1, turtles.EventQueued),
		Event("b1", 2, turtles.EventQueued),
		Event("a2", 1, turtles.EventStarted),
		Event("a3", 1, turtles.EventFinished),
		Event("b2", 2, turtles.EventStarted),
	}
	emit(t, e, want...)
	var got []turtles.Event
	for range want {
		d := receive(t, e)
		got = append(got, d.Event())
		ackEvent(t, d)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("received events (-want +got):\n%s", diff)
	}
	receiveBarrier(t, e, "an acked event came back")
}

func testEventsRedelivered(t *testing.T, open opener) {
	o, _ := opts()
	e := open(t, o)
	emit(t, e, Event("a1", 1, turtles.EventQueued), Event("b1", 2, turtles.EventQueued))
	if got := receive(t, e).Event().ID; got != "a1" {
		t.Fatalf("received %s, want a1", got)
	} // and not acked: the reporter died
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	e = open(t, o)
	got := map[string]bool{}
	for range 2 {
		d := receive(t, e)
		got[d.Event().ID] = true
		ackEvent(t, d)
	}
	if diff := cmp.Diff(map[string]bool{"a1": true, "b1": true}, got); diff != "" {
		t.Errorf("events after reopen (-want +got):\n%s", diff)
	}
	receiveBarrier(t, e, "an acked event came back")
}

func testEventsAcked(t *testing.T, open opener) {
	o, _ := opts()
	e := open(t, o)
	emit(t, e, Event("a1", 1, turtles.EventQueued))
	ackEvent(t, receive(t, e))
	receiveBarrier(t, e, "an acked event came back")
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	receiveBarrier(t, open(t, o), "an acked event came back after a reopen")
}

func testEventsWake(t *testing.T, open opener) {
	o, _ := opts()
	e := open(t, o)
	type result struct {
		d   queue.EventDelivery
		err error
	}
	ch := make(chan result, 1)
	go func() {
		d, err := e.Receive(ctxT(t, patient))
		ch <- result{d, err}
	}()
	emit(t, e, Event("a1", 1, turtles.EventQueued))
	r := <-ch
	if r.err != nil {
		t.Fatalf("waiting Receive: %v", r.err)
	}
	ackEvent(t, r.d)
}

func testEventsContext(t *testing.T, open opener) {
	o, _ := opts()
	e := open(t, o)
	returnsOnCancel(t, "Receive", func(ctx context.Context) error {
		_, err := e.Receive(ctx)
		return err
	})
}

// EventsOfManyTasks emits n events for each of tasks tasks, interleaved,
// and returns them in emit order; for backend tests of ordering under
// concurrent receivers.
func EventsOfManyTasks(tasks, n int) []turtles.Event {
	var out []turtles.Event
	types := []turtles.EventType{turtles.EventQueued, turtles.EventStarted, turtles.EventRetrying, turtles.EventFinished}
	for i := range n {
		for task := range tasks {
			out = append(out, Event(fmt.Sprintf("t%d-e%d", task, i), task, types[i%len(types)]))
		}
	}
	return out
}
