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

var cancelTests = []contractTest{
	{"Cancel", testCancel},
	{"CancelTask", testCancelTask},
	{"Inbox", testInbox},
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
func testCancel(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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

	hook := open(t, o)
	const reason = "superseded by a newer push"
	n, err := hook.Cancel(ctxT(t, patient), running.Repo.Name, old, 7, reason)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	t.Logf("Cancel counted %d task(s)", n)
	// The holder may learn it a little later (another process).
	eventually(t, func() error {
		if err := d.Heartbeat(ctxT(t, patient)); !errors.Is(err, queue.ErrCancelled) {
			return errors.New("Heartbeat after Cancel = " + errString(err) + ", want ErrCancelled")
		}
		return nil
	})
	if _, err := d.AckWithTasks(ctxT(t, patient), nil, nil); !errors.Is(err, queue.ErrCancelled) {
		t.Errorf("ack after Cancel = %v, want ErrCancelled", err)
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
	claimBarrier(t, q, "public", "a cancelled task was delivered")

	got := map[string]int{}
	for range 2 {
		ed := receive(t, q)
		ev := ed.Event()
		if ev.Type != turtles.EventFinished || ev.Outcome == nil || ev.Outcome.Class != turtles.Cancelled || ev.Outcome.Reason != reason {
			t.Errorf("event %+v, want finished, cancelled, %q", ev, reason)
		}
		if want := map[string]string{running.Key(): running.Token, queued.Key(): queued.Token}[ev.Task.Key()]; ev.Task.Token != want {
			t.Errorf("cancelled event of %s has token %q, want the task's %q", ev.Task.Key(), ev.Task.Token, want)
		}
		got[ev.Task.Key()]++
		ackEvent(t, ed)
	}
	if diff := cmp.Diff(map[string]int{running.Key(): 1, queued.Key(): 1}, got); diff != "" {
		t.Errorf("cancelled tasks' final events (-want +got):\n%s", diff)
	}
	receiveBarrier(t, q, "a cancelled task had a second final event")

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

// testCancelTask cancels two tasks by key through another handle (the
// web server's), one running and one queued: as with Cancel, the holder
// learns it from Heartbeat, the queued task never reaches a claimer, both
// get one final cancelled event, and the other contexts of the commit,
// the same context of other commits, are untouched. A rerun of a
// cancelled key published afterwards runs.
func testCancelTask(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
	sha := "3333333333333333333333333333333333333333"
	running := cancelTask(1, sha, 7, "running")
	queued := cancelTask(2, sha, 0, "queued") // a push's task: no pull request
	untouched := []turtles.Task{
		cancelTask(3, sha, 7, "other-context"),
		cancelTask(4, "4444444444444444444444444444444444444444", 7, "queued"), // the same context of another commit
	}
	publish(t, q, append([]turtles.Task{running, queued}, untouched...)...)
	d := claim(t, q, "public")
	if d.Task().Key() != running.Key() {
		t.Fatalf("claimed %s, want the first published %s", d.Task().Key(), running.Key())
	}

	web := open(t, o)
	const reason = "cancelled by github:alice from the dashboard"
	for _, k := range []string{running.Key(), queued.Key()} {
		n, err := web.CancelTask(ctxT(t, patient), k, reason)
		if err != nil {
			t.Fatalf("CancelTask(%s): %v", k, err)
		}
		t.Logf("CancelTask(%s) counted %d task(s)", k, n)
	}
	eventually(t, func() error {
		if err := d.Heartbeat(ctxT(t, patient)); !errors.Is(err, queue.ErrCancelled) {
			return errors.New("Heartbeat after CancelTask = " + errString(err) + ", want ErrCancelled")
		}
		return nil
	})

	var left []string
	for range untouched {
		d := claim(t, q, "public")
		left = append(left, d.Task().Key())
		ack(t, d)
	}
	if diff := cmp.Diff(keys(untouched), left); diff != "" {
		t.Errorf("tasks claimed after CancelTask (-want +got):\n%s", diff)
	}
	claimBarrier(t, q, "public", "a cancelled task was delivered")

	got := map[string]int{}
	for range 2 {
		ed := receive(t, q)
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
	receiveBarrier(t, q, "a cancelled task had a second final event, or another task one")

	if n, err := web.CancelTask(ctxT(t, patient), "turtles/example@"+sha+":nothing-by-this-name", reason); err != nil || n != 0 {
		t.Errorf("CancelTask of a key with no task = %d, %v; want 0, nil", n, err)
	}
	rerun := queued
	rerun.Attempt, rerun.Created = 2, time.Now()
	publish(t, q, rerun)
	d = claim(t, q, "public")
	if d.Task().Key() != rerun.Key() {
		t.Fatalf("claimed %s, want the rerun %s", d.Task().Key(), rerun.Key())
	}
	ack(t, d)
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func testInbox(t *testing.T, open opener) {
	o, _ := opts()
	inbox := open(t, o)
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
	other := open(t, o)
	m2 := take(other, "two")
	for _, m := range []queue.InboxMessage{m, m2} {
		if err := m.Ack(ctxT(t, patient)); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	// Acked messages are gone: one put now is the next one taken.
	put(inbox, "barrier")
	if err := take(inbox, "barrier").Ack(ctxT(t, patient)); err != nil {
		t.Fatalf("Ack: %v", err)
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
