package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"

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

// testOpts are options for tests of this package, on a fake clock.
func testOpts() (queue.Options, *clockwork.FakeClock) {
	clock := clockwork.NewFakeClock()
	return queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: 10 * time.Millisecond, Clock: clock}, clock
}

func TestContract(t *testing.T) {
	queuetest.Run(t, queuetest.Backend[*DB]{
		Storage: func(t *testing.T) func(t *testing.T, opts queue.Options) *DB {
			path := filepath.Join(t.TempDir(), "queue.db")
			return func(t *testing.T, opts queue.Options) *DB { return openT(t, path, opts) }
		},
		PublishRaw: (*DB).PublishRaw,
	})
}

// Open refuses options that cmd/turtles did not fill in, naming the field.
func TestOpenRequiresOptions(t *testing.T) {
	good, _ := testOpts()
	tests := []struct {
		name   string
		mutate func(*queue.Options)
		want   string
	}{
		{"zero", func(o *queue.Options) { *o = queue.Options{} }, "Lease"},
		{"no max deliveries", func(o *queue.Options) { o.MaxDeliveries = 0 }, "MaxDeliveries"},
		{"negative poll", func(o *queue.Options) { o.Poll = -time.Second }, "Poll"},
		{"no clock", func(o *queue.Options) { o.Clock = nil }, "Clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mutate(&o)
			db, err := Open(filepath.Join(t.TempDir(), "queue.db"), o, nil)
			if err == nil {
				db.Close()
				t.Fatalf("Open with %+v succeeded, want an error naming %s", o, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open with %+v = %v, want an error naming %s", o, err, tt.want)
			}
		})
	}
}

// Two handles on one file behave like two processes: they share the tasks
// and never hand one task to both.
func TestTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts, _ := testOpts()
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
	got := queuetest.ClaimAll(t, []queue.Queue{a, b}, "public", 6, n)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries per key (-want +got):\n%s", diff)
	}
}

// A Claim waiting in one process finds work published by another by
// polling, since no in-process wakeup reaches it. The poll is real time,
// whatever the queue's clock.
func TestClaimPollsOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts, _ := testOpts()
	a, b := openT(t, path, opts), openT(t, path, opts)
	waiting := make(chan struct{}, 1)
	a.onWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		d, err := a.Claim(ctx, "public")
		if err == nil {
			err = queuetest.Ack(ctx, d)
		}
		ch <- err
	}()
	<-waiting // a found nothing and sleeps
	if err := b.Publish(t.Context(), queuetest.Task(1, "public")); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatalf("Claim in the other process: %v", err)
	}
}

// Only the oldest unacked event of a task is receivable, so a reporter
// never sees "finished" before the "started" it has not acked; one not
// acked within the event lease is received again, still first.
func TestEventsHeadOfLine(t *testing.T) {
	opts, clock := testOpts()
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), opts)
	ctx := t.Context()
	emit := func(evs ...turtles.Event) {
		t.Helper()
		for _, ev := range evs {
			if err := db.Emit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	recv := func() queue.EventDelivery {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d, err := db.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	emit(queuetest.Event("a1", 1, turtles.EventStarted),
		queuetest.Event("a2", 1, turtles.EventFinished),
		queuetest.Event("b1", 2, turtles.EventStarted))
	var got []string
	a1 := recv()
	got = append(got, a1.Event().ID)
	b1 := recv()
	got = append(got, b1.Event().ID)
	if err := b1.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	// A barrier of another task: a2 would come before it, were it
	// receivable while a1 is held.
	emit(queuetest.Event("c1", 3, turtles.EventStarted))
	c1 := recv()
	got = append(got, c1.Event().ID)
	if err := c1.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	// a1 is not acked within its lease: it comes again, still before a2.
	clock.Advance(eventLease + time.Second)
	for range 2 {
		d := recv()
		got = append(got, d.Event().ID)
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"a1", "b1", "c1", "a1", "a2"}, got); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
}

// Several receivers (reporter replicas) still see each task's events in
// emit order.
func TestEventsConcurrentReceivers(t *testing.T) {
	opts, _ := testOpts()
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), opts)
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
	opts, _ := testOpts()
	db := openT(t, path, opts)
	if err := db.Publish(t.Context(), queuetest.Task(1, "public")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening migrates nothing and keeps the data.
	db = openT(t, path, opts)
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
	if db, err := Open(path, opts, nil); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open of a newer schema = %v, want an error about the version", err)
	}
}

// TestMigrateUniqueKey: a file whose tasks table deduped keys (schema 3)
// keeps its queued task and then takes a second task of the same key
// (dedupe is the state database's now).
func TestMigrateUniqueKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	sdb, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	task := queuetest.Task(1, "public")
	body, err := queue.EncodeTask(task)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(slices.Clone(migrations[:3]),
		`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (3)`) {
		if _, err := sdb.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sdb.Exec(`INSERT INTO tasks (pool, key, priority, body, published, avail_at) VALUES ('public', ?, 0, ?, 0, 0)`, task.Key(), body); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	opts, _ := testOpts()
	db := openT(t, path, opts)
	if err := db.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish of a queued key after the migration: %v", err)
	}
	got := queuetest.ClaimAll(t, []queue.Queue{db}, "public", 1, 2)
	if diff := cmp.Diff(map[string]int{task.Key(): 2}, got); diff != "" {
		t.Errorf("deliveries per key (-want +got):\n%s", diff)
	}
}

// Waiters in this process are woken by publishes, emits and acks, not by
// the poll, which is set to an hour here.
func TestInProcessWakeup(t *testing.T) {
	opts, _ := testOpts()
	opts.Poll = time.Hour
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), opts)
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
		return queuetest.Ack(ctx, d)
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

	// A Claim waiting for a delayed task wakes when the queue's clock
	// reaches the delay, not at the poll.
	fake, clock := testOpts()
	fake.Poll = time.Hour
	db = openT(t, filepath.Join(t.TempDir(), "queue.db"), fake)
	db.onWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	if err := db.Publish(ctx, queuetest.Task(2, "public")); err != nil {
		t.Fatal(err)
	}
	d, err := db.Claim(ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Nack(ctx, time.Minute, "later"); err != nil {
		t.Fatal(err)
	}
	claimed = inBackground(func() error {
		d, err := db.Claim(ctx, "public")
		if err != nil {
			return err
		}
		return queuetest.Ack(ctx, d)
	})
	clock.Advance(time.Minute)
	if err := <-claimed; err != nil {
		t.Errorf("Claim waiting for a delay to pass: %v", err)
	}
}

// A dead-lettered task's final event comes from the queue itself, in the
// same transaction, whether a Nack or a claim after the last lease
// dead-letters it: a bot that dies on the last delivery cannot leave the
// status pending.
func TestDeadLetterEmitsFinalEvent(t *testing.T) {
	tests := []struct {
		name       string
		kill       func(t *testing.T, clock *clockwork.FakeClock, d queue.Delivery) // ends the last delivery
		wantReason string
	}{{
		name: "nack",
		kill: func(t *testing.T, clock *clockwork.FakeClock, d queue.Delivery) {
			if dead, err := d.Nack(t.Context(), 0, "git fetch failed"); err != nil || !dead {
				t.Fatalf("Nack = %v, %v; want dead", dead, err)
			}
		},
		wantReason: "gave up after 2 deliveries: git fetch failed",
	}, {
		name:       "lease expiry",
		kill:       func(t *testing.T, clock *clockwork.FakeClock, d queue.Delivery) { clock.Advance(2 * time.Minute) },
		wantReason: "gave up after 2 deliveries: the bot stopped heart-beating at ",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, clock := testOpts()
			opts.MaxDeliveries = 2
			db := openT(t, filepath.Join(t.TempDir(), "queue.db"), opts)
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
				tt.kill(t, clock, d)
			}
			// A barrier task: the claim that gets it passes the dead
			// one (and dead-letters it, if its lease ran out).
			barrier := queuetest.Task(2, "public")
			if err := db.Publish(ctx, barrier); err != nil {
				t.Fatal(err)
			}
			d, err := db.Claim(ctx, "public")
			if err != nil || d.Task().Key() != barrier.Key() {
				t.Fatalf("Claim = %v, %v; want the barrier task, not one past MaxDeliveries", d, err)
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			ed, err := db.Receive(rctx)
			if err != nil {
				t.Fatalf("no final event: %v", err)
			}
			ev := ed.Event()
			if ev.Type != turtles.EventFinished || ev.Outcome == nil || ev.Outcome.Class != turtles.Infra ||
				!strings.HasPrefix(ev.Outcome.Reason, tt.wantReason) || ev.Task.Key() != task.Key() || ev.Task.Attempt != 2 {
				t.Errorf("event %+v (outcome %+v), want finished infra for attempt 2 saying %q", ev, ev.Outcome, tt.wantReason)
			}
			ed.Ack(ctx)
			// A barrier event: a second final event would come before it.
			if err := db.Emit(ctx, queuetest.Event("barrier", 2, turtles.EventQueued)); err != nil {
				t.Fatal(err)
			}
			if ed, err := db.Receive(rctx); err != nil || ed.Event().ID != "barrier" {
				t.Errorf("Receive = %v, %v; want the barrier event, exactly one final event before it", ed, err)
			}
		})
	}
}
