package sqlite

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

func openT(t *testing.T, path string, opts queue.Options) *DB {
	t.Helper()
	db, err := Open(path, opts, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestContract(t *testing.T) {
	queuetest.Run(t, queuetest.Backend{
		Queue: func(t *testing.T) queuetest.Opener {
			path := filepath.Join(t.TempDir(), "queue.db")
			return func(t *testing.T, opts queue.Options) queue.Queue { return openT(t, path, opts) }
		},
		Events: func(t *testing.T) queuetest.EventsOpener {
			path := filepath.Join(t.TempDir(), "queue.db")
			return func(t *testing.T) queue.Events { return openT(t, path, queue.Options{Poll: 20 * time.Millisecond}) }
		},
	})
}

// Two handles on one file behave like two processes: they share the tasks
// and never hand one task to both.
func TestTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts := queue.Options{Lease: time.Minute, Poll: 10 * time.Millisecond}
	a, b := openT(t, path, opts), openT(t, path, opts)
	const n = 200
	want := map[string]int{}
	for i := range n {
		task := queuetest.Task(i, "public")
		want[task.Key()] = 1
		q := a
		if i%2 == 1 {
			q = b
		}
		if err := q.Publish(t.Context(), task); err != nil {
			t.Fatalf("Publish(%d): %v", i, err)
		}
	}
	// The other process sees the duplicate too.
	if err := b.Publish(t.Context(), queuetest.Task(0, "public")); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("Publish of a's task through b = %v, want ErrDuplicate", err)
	}
	got := queuetest.ClaimAll(t, []queue.Queue{a, b}, "public", 6, n)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries per key (-want +got):\n%s", diff)
	}
}

// A Claim waiting in one process finds work published by another by
// polling, since no in-process wakeup reaches it.
func TestClaimPollsOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts := queue.Options{Poll: 10 * time.Millisecond}
	a, b := openT(t, path, opts), openT(t, path, opts)
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		d, err := a.Claim(ctx, "public")
		if err == nil {
			err = d.Ack(ctx)
		}
		ch <- err
	}()
	if err := b.Publish(t.Context(), queuetest.Task(1, "public")); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatalf("Claim in the other process: %v", err)
	}
}

// Only the oldest unacked event of a task is receivable, so a reporter
// never sees "finished" before the "started" it has not acked.
func TestEventsHeadOfLine(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), queue.Options{Poll: 10 * time.Millisecond})
	db.eventLease = 300 * time.Millisecond
	ctx := t.Context()
	for _, ev := range []turtles.Event{
		queuetest.Event("a1", 1, turtles.EventStarted),
		queuetest.Event("a2", 1, turtles.EventFinished),
		queuetest.Event("b1", 2, turtles.EventStarted),
	} {
		if err := db.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(timeout time.Duration) (queue.EventDelivery, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return db.Receive(ctx)
	}
	var got []string
	a1, err := recv(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, a1.Event().ID)
	b1, err := recv(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, b1.Event().ID)
	if err := b1.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := recv(100 * time.Millisecond); err == nil {
		t.Fatalf("received %s while a1 is held", d.Event().ID)
	}
	// a1 is not acked within its lease: it comes again, still before a2.
	for range 2 {
		d, err := recv(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Event().ID)
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"a1", "b1", "a1", "a2"}, got); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
}

// Several receivers (reporter replicas) still see each task's events in
// emit order.
func TestEventsConcurrentReceivers(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), queue.Options{Poll: 10 * time.Millisecond})
	evs := queuetest.EventsOfManyTasks(10, 8)
	for _, ev := range evs {
		if err := db.Emit(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{}
	for _, ev := range evs {
		want[ev.Task.Key()] = append(want[ev.Task.Key()], ev.ID)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		got  = map[string][]string{}
		n    int
		errs []error
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				d, err := db.Receive(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				got[d.Event().Task.Key()] = append(got[d.Event().Task.Key()], d.Event().ID)
				mu.Unlock()
				err = d.Ack(ctx) // after recording, as a reporter would
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				if n++; n == len(evs) {
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events per task in receive order (-want +got):\n%s", diff)
	}
}

func TestSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	db := openT(t, path, queue.Options{})
	if err := db.Publish(t.Context(), queuetest.Task(1, "public")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening migrates nothing and keeps the data.
	db = openT(t, path, queue.Options{})
	var v int
	if err := db.sql.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("schema version = %d, %v; want %d", v, err, len(migrations))
	}
	stats, err := db.Stats(t.Context())
	if diff := cmp.Diff([]queue.Stat{{Pool: "public", State: "ready", Count: 1}}, stats); err != nil || diff != "" {
		t.Errorf("Stats after reopen: %v (-want +got):\n%s", err, diff)
	}

	// A file from a newer binary is refused rather than misread.
	if _, err := db.sql.Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(path, queue.Options{}, nil); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open of a newer schema = %v, want an error about the version", err)
	}
}

func TestPublishRawDedupesValidTasks(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	task := queuetest.Task(1, "public")
	if err := db.Publish(t.Context(), task); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"version":1,"kind":"test","repo":{"name":"turtles/example","clone_url":"x"},` +
		`"sha":"` + task.SHA + `","context":"test","pool":"public","attempt":1}`)
	if err := db.PublishRaw(t.Context(), "public", body); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("PublishRaw of a live task = %v, want ErrDuplicate", err)
	}
}

// Waiters in this process are woken by publishes, emits and acks, not by
// the poll, which is set to an hour here.
func TestInProcessWakeup(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), queue.Options{Poll: time.Hour})
	waiting := make(chan struct{}, 1)
	db.onWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// inBackground runs fn once fn's waiter sleeps, and returns fn's error.
	inBackground := func(fn func() error) chan error {
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case <-waiting:
		case err := <-done:
			done <- err
		}
		return done
	}

	claimed := inBackground(func() error {
		d, err := db.Claim(ctx, "public")
		if err != nil {
			return err
		}
		return d.Ack(ctx)
	})
	if err := db.Publish(ctx, queuetest.Task(1, "public")); err != nil {
		t.Fatal(err)
	}
	if err := <-claimed; err != nil {
		t.Errorf("Claim waiting for a publish: %v", err)
	}

	receive := func() error {
		d, err := db.Receive(ctx)
		if err != nil {
			return err
		}
		return d.Ack(ctx)
	}
	received := inBackground(receive)
	for _, id := range []string{"a1", "a2"} {
		if err := db.Emit(ctx, queuetest.Event(id, 1, turtles.EventStarted)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-received; err != nil {
		t.Errorf("Receive waiting for an emit: %v", err)
	}
	received = inBackground(receive)
	if err := <-received; err != nil {
		t.Errorf("Receive of the second event: %v", err)
	}
	// An ack of a task's event makes its next one receivable: a receiver
	// waiting behind it must be woken.
	if err := db.Emit(ctx, queuetest.Event("b1", 2, turtles.EventStarted)); err != nil {
		t.Fatal(err)
	}
	if err := db.Emit(ctx, queuetest.Event("b2", 2, turtles.EventFinished)); err != nil {
		t.Fatal(err)
	}
	held, err := db.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	received = inBackground(receive)
	if err := held.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-received; err != nil {
		t.Errorf("Receive waiting behind an unacked event: %v", err)
	}
}

// A dead-lettered task's final event comes from the queue itself, in the
// same transaction, whether a Nack or a claim after the last lease
// dead-letters it: a bot that dies on the last delivery cannot leave the
// status pending.
func TestDeadLetterEmitsFinalEvent(t *testing.T) {
	tests := []struct {
		name       string
		kill       func(t *testing.T, d queue.Delivery) // ends the last delivery
		wantReason string
	}{{
		name: "nack",
		kill: func(t *testing.T, d queue.Delivery) {
			if dead, err := d.Nack(t.Context(), 0, "git fetch failed"); err != nil || !dead {
				t.Fatalf("Nack = %v, %v; want dead", dead, err)
			}
		},
		wantReason: "git fetch failed",
	}, {
		name:       "lease expiry",
		kill:       func(t *testing.T, d queue.Delivery) { time.Sleep(150 * time.Millisecond) },
		wantReason: "stopped answering",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openT(t, filepath.Join(t.TempDir(), "queue.db"), queue.Options{Lease: 100 * time.Millisecond, MaxDeliveries: 2})
			ctx := t.Context()
			task := queuetest.Task(1, "public")
			if err := db.Publish(ctx, task); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				d, err := db.Claim(ctx, "public")
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					if _, err := d.Nack(ctx, 0, "first try"); err != nil {
						t.Fatal(err)
					}
					continue
				}
				tt.kill(t, d)
			}
			if tt.name == "lease expiry" {
				// The next claim finds the expired last delivery.
				short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				if d, err := db.Claim(short, "public"); err == nil {
					t.Fatalf("claimed %s past MaxDeliveries", d.Task().Key())
				}
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			ed, err := db.Receive(rctx)
			if err != nil {
				t.Fatalf("no final event: %v", err)
			}
			ev := ed.Event()
			if ev.Type != turtles.EventFinished || ev.Outcome == nil || ev.Outcome.Class != turtles.Infra ||
				!strings.Contains(ev.Outcome.Reason, tt.wantReason) || ev.Task.Key() != task.Key() || ev.Task.Attempt != 2 {
				t.Errorf("event %+v (outcome %+v), want finished infra for attempt 2 naming %q", ev, ev.Outcome, tt.wantReason)
			}
			ed.Ack(ctx)
			short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel2()
			if ed, err := db.Receive(short); err == nil {
				t.Errorf("a second event %+v, want exactly one", ed.Event())
			}
		})
	}
}
