package queuetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// RunEvents runs the queue.Events contract tests.
func RunEvents(t *testing.T, storage func(t *testing.T) EventsOpener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open EventsOpener)
	}{
		{"InOrder", testEventsInOrder},
		{"RedeliveredWhenNotAcked", testEventsRedelivered},
		{"GoneAfterAck", testEventsAcked},
		{"ReceiveWaitsAndWakes", testEventsWake},
		{"ReceiveHonoursContext", testEventsContext},
		{"Closed", testEventsClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, storage(t))
		})
	}
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

func noReceive(t *testing.T, e queue.Events) {
	t.Helper()
	d, err := e.Receive(ctxT(t, nothing))
	if err == nil {
		t.Fatalf("Receive = event %s, want nothing", d.Event().ID)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v, want context.DeadlineExceeded", err)
	}
}

func ackEvent(t *testing.T, d queue.EventDelivery) {
	t.Helper()
	if err := d.Ack(ctxT(t, patient)); err != nil {
		t.Fatalf("Ack(%s): %v", d.Event().ID, err)
	}
}

func testEventsInOrder(t *testing.T, open EventsOpener) {
	e := open(t)
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
	noReceive(t, e)
}

func testEventsRedelivered(t *testing.T, open EventsOpener) {
	e := open(t)
	emit(t, e, Event("a1", 1, turtles.EventQueued), Event("b1", 2, turtles.EventQueued))
	if got := receive(t, e).Event().ID; got != "a1" {
		t.Fatalf("received %s, want a1", got)
	} // and not acked: the reporter died
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	e = open(t)
	got := map[string]bool{}
	for range 2 {
		d := receive(t, e)
		got[d.Event().ID] = true
		ackEvent(t, d)
	}
	if diff := cmp.Diff(map[string]bool{"a1": true, "b1": true}, got); diff != "" {
		t.Errorf("events after reopen (-want +got):\n%s", diff)
	}
	noReceive(t, e)
}

func testEventsAcked(t *testing.T, open EventsOpener) {
	e := open(t)
	emit(t, e, Event("a1", 1, turtles.EventQueued))
	ackEvent(t, receive(t, e))
	noReceive(t, e)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	noReceive(t, open(t))
}

func testEventsWake(t *testing.T, open EventsOpener) {
	e := open(t)
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

func testEventsContext(t *testing.T, open EventsOpener) {
	e := open(t)
	returnsOnCancel(t, "Receive", func(ctx context.Context) error {
		_, err := e.Receive(ctx)
		return err
	})
}

func testEventsClosed(t *testing.T, open EventsOpener) {
	e := open(t)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := ctxT(t, patient)
	if err := e.Emit(ctx, Event("a1", 1, turtles.EventQueued)); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Emit after Close = %v, want ErrClosed", err)
	}
	if _, err := e.Receive(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Receive after Close = %v, want ErrClosed", err)
	}
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
