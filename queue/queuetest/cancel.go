package queuetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// RunOptional runs the contract tests of the optional interfaces
// (queue.Canceller, queue.Inbox), each skipped when the backend's queue
// does not implement its interface, and of Delivery.AckWithTasks, which
// every backend has but whose tests need the backend's event log.
func RunOptional(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Cancel", testCancel},
		{"Inbox", testInbox},
		{"Spawn", testSpawn},
		{"SpawnLeaseLost", testSpawnLeaseLost},
		{"LostLease", testLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, b)
		})
	}
}

// eventsOf returns the event log on q's storage.
func (b Backend) eventsOf(t *testing.T, q queue.Queue) queue.Events {
	if b.EventsOf != nil {
		return b.EventsOf(t, q)
	}
	e, ok := q.(queue.Events)
	if !ok {
		t.Fatalf("%T is no queue.Events and the backend has no EventsOf", q)
	}
	return e
}

func cancelTask(i int, sha string, pr int, context string) turtles.Task {
	t := Task(i, "public")
	t.SHA, t.PR, t.Context = sha, pr, context
	return t
}

// testCancel cancels one commit of one pull request through another
// handle (the webhook receiver's), while a bot holds one of its tasks:
// the holder learns it from Heartbeat, the queued task never reaches a
// claimer, both get one final cancelled event, and other commits, pull
// requests and repositories are untouched.
func testCancel(t *testing.T, b Backend) {
	open := b.Queue(t)
	q := open(t, opts())
	if _, ok := q.(queue.Canceller); !ok {
		t.Skip("backend cannot cancel")
	}
	events := b.eventsOf(t, q)
	old := "1111111111111111111111111111111111111111"
	other := "2222222222222222222222222222222222222222"
	running := cancelTask(1, old, 7, "running")
	queued := cancelTask(2, old, 7, "queued")
	otherRepo := cancelTask(5, old, 7, "queued")
	otherRepo.Repo.Name = "turtles/example_x"
	untouched := []turtles.Task{
		cancelTask(3, old, 0, "branch"),   // the same commit pushed to a branch
		cancelTask(4, other, 7, "queued"), // the new head
		otherRepo,                         // another repository
		cancelTask(6, old, 8, "queued2"),  // another pull request
	}
	publish(t, q, append([]turtles.Task{running, queued}, untouched...)...)
	d := claim(t, q, "public")
	if d.Task().Key() != running.Key() {
		t.Fatalf("claimed %s, want the first published %s", d.Task().Key(), running.Key())
	}

	hook := open(t, opts()).(queue.Canceller)
	const reason = "superseded by a newer push"
	n, err := hook.Cancel(ctxT(t, patient), running.Repo.Name, old, 7, reason)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	t.Logf("Cancel counted %d task(s)", n)
	// The holder may learn it a little later (another process).
	deadline := time.Now().Add(patient)
	for {
		err := d.Heartbeat(ctxT(t, patient))
		if errors.Is(err, queue.ErrCancelled) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Heartbeat after Cancel = %v, want ErrCancelled", err)
		}
		time.Sleep(poll)
	}
	if err := d.Ack(ctxT(t, patient)); !errors.Is(err, queue.ErrCancelled) {
		t.Errorf("Ack after Cancel = %v, want ErrCancelled", err)
	}

	var left []string
	for range untouched {
		d := claim(t, q, "public")
		left = append(left, d.Task().Key())
		ack(t, d)
	}
	if diff := cmp.Diff(keys(untouched), left); diff != "" {
		t.Errorf("tasks claimed after Cancel (-want +got):\n%s", diff)
	}
	noClaim(t, q, "public", nothing)

	got := map[string]int{}
	for range 2 {
		ed := receive(t, events)
		ev := ed.Event()
		if ev.Type != turtles.EventFinished || ev.Outcome == nil || ev.Outcome.Class != turtles.Cancelled || ev.Outcome.Reason != reason {
			t.Errorf("event %+v, want finished, cancelled, %q", ev, reason)
		}
		got[ev.Task.Key()]++
		ackEvent(t, ed)
	}
	if diff := cmp.Diff(map[string]int{running.Key(): 1, queued.Key(): 1}, got); diff != "" {
		t.Errorf("cancelled tasks' final events (-want +got):\n%s", diff)
	}
	noReceive(t, events)

	// A retest of the cancelled commit, published after the Cancel, runs.
	retest := queued
	retest.Created = time.Now()
	publish(t, q, retest)
	d = claim(t, q, "public")
	if d.Task().Key() != retest.Key() {
		t.Fatalf("claimed %s, want the retest %s", d.Task().Key(), retest.Key())
	}
	ack(t, d)
}

func testInbox(t *testing.T, b Backend) {
	open := b.Queue(t)
	q := open(t, opts())
	inbox, ok := q.(queue.Inbox)
	if !ok {
		t.Skip("backend has no inbox")
	}
	put := func(in queue.Inbox, body string) {
		t.Helper()
		if err := in.Put(ctxT(t, patient), []byte(body)); err != nil {
			t.Fatalf("Put(%s): %v", body, err)
		}
	}
	take := func(in queue.Inbox, want string) queue.InboxMessage {
		t.Helper()
		m, err := in.Take(ctxT(t, patient))
		if err != nil {
			t.Fatalf("Take: %v", err)
		}
		if string(m.Body()) != want {
			t.Fatalf("Take = %q, want %q", m.Body(), want)
		}
		return m
	}
	put(inbox, "one")
	put(inbox, "two")
	m := take(inbox, "one")
	// Not acked: another handle does not get it while it is taken.
	other := open(t, opts()).(queue.Inbox)
	m2 := take(other, "two")
	for _, m := range []queue.InboxMessage{m, m2} {
		if err := m.Ack(ctxT(t, patient)); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	if m, err := inbox.Take(ctxT(t, nothing)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Take on an empty inbox = %v, %v; want context.DeadlineExceeded", m, err)
	}

	// Put wakes a waiting Take.
	ch := make(chan string, 1)
	go func() {
		m, err := inbox.Take(ctxT(t, patient))
		if err != nil {
			ch <- err.Error()
			return
		}
		ch <- string(m.Body())
		m.Ack(ctxT(t, patient))
	}()
	put(inbox, "three")
	if got := <-ch; got != "three" {
		t.Errorf("waiting Take got %q, want three", got)
	}

	returnsOnCancel(t, "Take", func(ctx context.Context) error {
		_, err := inbox.Take(ctx)
		return err
	})
}
