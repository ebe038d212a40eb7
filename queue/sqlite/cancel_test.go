package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

func cancelTask(repo, sha, context string, pr int) turtles.Task {
	return turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: repo, CloneURL: "x"},
		SHA: sha, PR: pr, Context: context, Command: "true", Pool: "public", Attempt: 1}
}

// TestCancel cancels one commit of one pull request: its queued task goes
// away, its running task's holder learns it from Heartbeat, both get a
// final cancelled event, and other commits and pull requests are untouched.
func TestCancel(t *testing.T) {
	ctx := context.Background()
	db := openT(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{Poll: 10 * time.Millisecond})
	old := "1111111111111111111111111111111111111111"
	other := "2222222222222222222222222222222222222222"
	for _, task := range []turtles.Task{
		cancelTask("o/r", old, "running", 7),
		cancelTask("o/r", old, "queued", 7),
		cancelTask("o/r", old, "branch", 0),     // same commit pushed to a branch
		cancelTask("o/r", other, "queued", 7),   // the new head
		cancelTask("o/r_x", old, "queued", 7),   // another repository
		cancelTask("o/r", old+"", "queued2", 8), // another pull request
	} {
		if err := db.Publish(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	d, err := db.Claim(ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	if d.Task().Context != "running" {
		t.Fatalf("claimed %s, want the first published", d.Task().Key())
	}
	n, err := db.Cancel(ctx, "o/r", old, 7, "superseded by a newer push")
	if err != nil || n != 2 {
		t.Fatalf("Cancel = %d, %v; want 2, nil", n, err)
	}
	if err := d.Heartbeat(ctx); !errors.Is(err, queue.ErrCancelled) {
		t.Errorf("Heartbeat after Cancel = %v, want ErrCancelled", err)
	}
	if err := d.Ack(ctx); !errors.Is(err, queue.ErrCancelled) {
		t.Errorf("Ack after Cancel = %v, want ErrCancelled", err)
	}
	if n, err := db.Cancel(ctx, "o/r", old, 7, "again"); err != nil || n != 0 {
		t.Errorf("second Cancel = %d, %v; want 0, nil", n, err)
	}

	var got []string
	for range 2 {
		ed, err := db.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev := ed.Event()
		if ev.Type != turtles.EventFinished || ev.Outcome == nil || ev.Outcome.Class != turtles.Cancelled ||
			ev.Outcome.Reason != "superseded by a newer push" {
			t.Errorf("event %+v, want finished/cancelled/superseded", ev)
		}
		got = append(got, ev.Task.Context)
		ed.Ack(ctx)
	}
	if diff := cmp.Diff([]string{"running", "queued"}, got); diff != "" {
		t.Errorf("cancelled contexts (-want +got):\n%s", diff)
	}
	var left []string
	for range 4 {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		d, err := db.Claim(c, "public")
		cancel()
		if err != nil {
			t.Fatalf("claim the untouched tasks: %v", err)
		}
		left = append(left, d.Task().Key())
	}
	want := []string{"o/r@" + old + ":branch", "o/r@" + other + ":queued", "o/r_x@" + old + ":queued", "o/r@" + old + ":queued2"}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("tasks left (-want +got):\n%s", diff)
	}
	// A cancelled key may be published again, e.g. by a retest.
	if err := db.Publish(ctx, cancelTask("o/r", old, "queued", 7)); err != nil {
		t.Errorf("publish after cancel: %v", err)
	}
}

func TestInbox(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	db := openT(t, path, queue.Options{Poll: 10 * time.Millisecond})
	for _, b := range []string{"one", "two"} {
		if err := db.Put(ctx, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := db.Take(ctx)
	if err != nil || string(m.Body()) != "one" {
		t.Fatalf("Take = %v, %v; want one", m, err)
	}
	// Not acked: a second handle does not see it while it is leased.
	db2 := openT(t, path, queue.Options{Poll: 10 * time.Millisecond})
	m2, err := db2.Take(ctx)
	if err != nil || string(m2.Body()) != "two" {
		t.Fatalf("second Take = %v, %v; want two", m2, err)
	}
	if err := m.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if m, err := db.Take(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Take on empty inbox = %v, %v; want deadline exceeded", m, err)
	}
	// Put wakes a waiting Take in the same process.
	done := make(chan string)
	go func() {
		m, err := db.Take(ctx)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- string(m.Body())
	}()
	time.Sleep(20 * time.Millisecond)
	db.Put(ctx, []byte("three"))
	if got := <-done; got != "three" {
		t.Errorf("waiting Take got %q, want three", got)
	}
}
