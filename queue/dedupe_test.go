package queue_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/queuetest"
	qsqlite "github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/postgres"
	"github.com/turtles-ci/turtles/state/postgres/pgtest"
	ssqlite "github.com/turtles-ci/turtles/state/sqlite"
)

// The dedupe path (queue.Dedupe) is tested once, over the embedded queue
// backend (which dedupes nothing itself), against each state backend:
// SQLite always, PostgreSQL unless -short.

// pg is the test binary's PostgreSQL; nil under -short.
var pg *pgtest.Server

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		s, err := pgtest.Start(pgtest.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "start PostgreSQL:", err)
			os.Exit(1)
		}
		pg = s
	}
	code := m.Run()
	if pg != nil {
		if err := pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// stateBackends open an empty state database for a test.
var stateBackends = []struct {
	name string
	open func(t *testing.T) state.DB
}{
	{"sqlite", func(t *testing.T) state.DB {
		db, err := ssqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
	{"postgres", func(t *testing.T) state.DB {
		if pg == nil {
			t.Skip("-short starts no PostgreSQL")
		}
		db, err := postgres.Open(t.Context(), pg.NewDatabase(t), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
}

// fixture is a deduped queue over a fresh embedded backend and db.
type fixture struct {
	raw queue.Queue // the backend, without dedupe
	q   queue.Queue
	db  state.DB
}

func newFixture(t *testing.T, db state.DB, wrap func(queue.Queue) queue.Queue) fixture {
	t.Helper()
	opts := queue.Options{Lease: time.Minute, MaxDeliveries: 3, Poll: 20 * time.Millisecond, Clock: clockwork.NewFakeClock()}
	raw, err := qsqlite.Open(filepath.Join(t.TempDir(), "queue.db"), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	var q queue.Queue = raw
	if wrap != nil {
		q = wrap(q)
	}
	return fixture{raw: raw, q: queue.Dedupe(q, state.Reserver{DB: db}, 5*time.Second), db: db}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// queued claims every task of pool, up to a barrier task published last,
// and returns them (acked).
func queued(t *testing.T, f fixture, pool string) []turtles.Task {
	t.Helper()
	q := f.q
	barrier := queuetest.Task(999_999, pool)
	barrier.Context = "barrier"
	if err := f.raw.Publish(ctxT(t), barrier); err != nil {
		t.Fatalf("publish the barrier: %v", err)
	}
	var out []turtles.Task
	for {
		d, err := q.Claim(ctxT(t), pool)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if err := queuetest.Ack(ctxT(t), d); err != nil {
			t.Fatalf("ack: %v", err)
		}
		if d.Task().Key() == barrier.Key() {
			return out
		}
		out = append(out, d.Task())
	}
}

func forEachState(t *testing.T, fn func(t *testing.T, db state.DB)) {
	for _, b := range stateBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.open(t))
		})
	}
}

// A key is refused while its run holds it, and free again once the
// run's token frees it; another token cannot free it.
func TestDedupePublish(t *testing.T) {
	forEachState(t, func(t *testing.T, db state.DB) {
		f := newFixture(t, db, nil)
		task := queuetest.Task(1, "public")
		if err := f.q.Publish(ctxT(t), task); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if err := f.q.Publish(ctxT(t), task); !errors.Is(err, queue.ErrDuplicate) {
			t.Fatalf("Publish of a live key = %v, want ErrDuplicate", err)
		}
		d, err := f.q.Claim(ctxT(t), "public")
		if err != nil {
			t.Fatal(err)
		}
		got := d.Task()
		r, live, err := db.Live(ctxT(t), task.Key())
		if err != nil || !live || got.Token == "" || r.Token != got.Token {
			t.Fatalf("claimed task's token %q, reservation %+v live %v (%v): want the same, non-empty", got.Token, r, live, err)
		}
		if err := queuetest.Ack(ctxT(t), d); err != nil {
			t.Fatal(err)
		}
		// Acked but its final event not recorded: still held.
		if err := f.q.Publish(ctxT(t), task); !errors.Is(err, queue.ErrDuplicate) {
			t.Fatalf("Publish before the free = %v, want ErrDuplicate", err)
		}
		if freed, err := db.Free(ctxT(t), task.Key(), "another run"); err != nil || freed {
			t.Fatalf("Free with another token = %v, %v; want false", freed, err)
		}
		if freed, err := db.Free(ctxT(t), task.Key(), got.Token); err != nil || !freed {
			t.Fatalf("Free with the run's token = %v, %v; want true", freed, err)
		}
		if err := f.q.Publish(ctxT(t), task); err != nil {
			t.Fatalf("Publish after the free: %v", err)
		}
		if diff := cmp.Diff([]string{task.Key()}, keys(queued(t, f, "public"))); diff != "" {
			t.Errorf("queued (-want +got):\n%s", diff)
		}
	})
}

// Of N publishers of one key at once (hook replicas given the same
// webhook), exactly one queues it.
func TestDedupeRace(t *testing.T) {
	const n = 16
	forEachState(t, func(t *testing.T, db state.DB) {
		f := newFixture(t, db, nil)
		task := queuetest.Task(2, "public")
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = f.q.Publish(ctxT(t), task) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, queue.ErrDuplicate):
				t.Errorf("Publish: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d publishers succeeded, want 1", ok, n)
		}
		if diff := cmp.Diff([]string{task.Key()}, keys(queued(t, f, "public"))); diff != "" {
			t.Errorf("queued (-want +got):\n%s", diff)
		}
	})
}

// failing is a backend whose Publish and AckWithTasks fail with err.
type failing struct {
	queue.Queue
	err error
}

func (f failing) Publish(ctx context.Context, t turtles.Task) error { return f.err }

func (f failing) Claim(ctx context.Context, pool string) (queue.Delivery, error) {
	d, err := f.Queue.Claim(ctx, pool)
	if err != nil {
		return nil, err
	}
	return failingDelivery{d, f.err}, nil
}

type failingDelivery struct {
	queue.Delivery
	err error
}

func (f failingDelivery) AckWithTasks(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	return nil, f.err
}

// A publish the backend refused frees its reservation: the forge's
// redelivery is not taken for a duplicate.
func TestDedupeBackendFails(t *testing.T) {
	forEachState(t, func(t *testing.T, db state.DB) {
		down := queue.Unavailable(errors.New("broker down"))
		f := newFixture(t, db, func(q queue.Queue) queue.Queue { return failing{q, down} })
		task := queuetest.Task(3, "public")
		if err := f.q.Publish(ctxT(t), task); !errors.Is(err, queue.ErrUnavailable) {
			t.Fatalf("Publish = %v, want ErrUnavailable", err)
		}
		if r, live, err := db.Live(ctxT(t), task.Key()); err != nil || live {
			t.Errorf("after the failed publish: Live = %+v, %v, %v; want free", r, live, err)
		}
	})
}

func plan(i int) turtles.Task {
	p := queuetest.Task(i, "public")
	p.Kind, p.Context, p.Command = turtles.KindPlan, turtles.PlanContext, ""
	return p
}

func spawnOf(parent turtles.Task, ctx string) queue.Spawn {
	s := parent
	s.Kind, s.Context, s.Command, s.Token = turtles.KindTest, ctx, "true", ""
	return queue.Spawn{Task: s, Queued: turtles.Event{ID: "queued-" + ctx, Type: turtles.EventQueued, Task: s}}
}

// A plan's spawns are reserved before its commit: a key another run
// holds is a dup, left out; one the plan's earlier attempt reserved
// before its bot died is the plan's own, and queued.
func TestDedupeSpawns(t *testing.T) {
	forEachState(t, func(t *testing.T, db state.DB) {
		f := newFixture(t, db, nil)
		p := plan(4)
		held, own, fresh := spawnOf(p, "held"), spawnOf(p, "own"), spawnOf(p, "fresh")
		if err := f.q.Publish(ctxT(t), held.Task); err != nil {
			t.Fatal(err)
		}
		if err := f.q.Publish(ctxT(t), p); err != nil {
			t.Fatal(err)
		}
		// Drain the held task first (it stays reserved: no final).
		if got := keys(queued(t, f, "public")); len(got) != 2 {
			t.Fatalf("queued %v, want the held task and the plan", got)
		}
		// Publish the plan again, as a fresh run, and claim it.
		if freed, err := db.Free(ctxT(t), p.Key(), planToken(t, db, p)); err != nil || !freed {
			t.Fatalf("free the plan: %v, %v", freed, err)
		}
		if err := f.q.Publish(ctxT(t), p); err != nil {
			t.Fatal(err)
		}
		d, err := f.q.Claim(ctxT(t), "public")
		if err != nil {
			t.Fatal(err)
		}
		// The plan's earlier attempt reserved own before its bot died.
		if ok, _, err := db.Reserve(ctxT(t), own.Task.Key(), queue.SpawnToken(d.Task(), own.Task)); err != nil || !ok {
			t.Fatalf("reserve own: %v, %v", ok, err)
		}
		dups, err := d.AckWithTasks(ctxT(t), []queue.Spawn{held, own, fresh}, nil)
		if err != nil {
			t.Fatalf("AckWithTasks: %v", err)
		}
		if diff := cmp.Diff([]string{held.Task.Key()}, dups); diff != "" {
			t.Errorf("dups (-want +got):\n%s", diff)
		}
		got := queued(t, f, "public")
		if diff := cmp.Diff([]string{fresh.Task.Key(), own.Task.Key()}, keys(got)); diff != "" {
			t.Errorf("queued (-want +got):\n%s", diff)
		}
		for _, s := range got {
			if r, _, _ := db.Live(ctxT(t), s.Key()); s.Token == "" || r.Token != s.Token {
				t.Errorf("spawn %s token %q, reservation %q", s.Key(), s.Token, r.Token)
			}
		}
	})
}

// A commit that failed without taking effect frees the spawns'
// reservations: the plan's next attempt, or another publisher, may
// queue them.
func TestDedupeSpawnCommitFails(t *testing.T) {
	forEachState(t, func(t *testing.T, db state.DB) {
		f := newFixture(t, db, func(q queue.Queue) queue.Queue { return failing{q, queue.Unavailable(errors.New("tx failed"))} })
		p := plan(5)
		if err := f.raw.Publish(ctxT(t), p); err != nil {
			t.Fatal(err)
		}
		d, err := f.q.Claim(ctxT(t), "public")
		if err != nil {
			t.Fatal(err)
		}
		s := spawnOf(p, "unit")
		if _, err := d.AckWithTasks(ctxT(t), []queue.Spawn{s}, nil); !errors.Is(err, queue.ErrUnavailable) {
			t.Fatalf("AckWithTasks = %v, want ErrUnavailable", err)
		}
		if r, live, err := db.Live(ctxT(t), s.Task.Key()); err != nil || live {
			t.Errorf("after the failed commit: Live = %+v, %v, %v; want free", r, live, err)
		}
	})
}

func planToken(t *testing.T, db state.DB, p turtles.Task) string {
	t.Helper()
	r, live, err := db.Live(ctxT(t), p.Key())
	if err != nil || !live {
		t.Fatalf("plan not reserved: %v", err)
	}
	return r.Token
}

func keys(tasks []turtles.Task) []string {
	out := []string{}
	for _, t := range tasks {
		out = append(out, t.Key())
	}
	slices.Sort(out)
	return out
}

// reserveCalls is a Reserver that tells of each Reserve call.
type reserveCalls struct {
	queue.Reserver
	calls chan struct{}
}

func (r reserveCalls) Reserve(ctx context.Context, key, token string) (bool, bool, error) {
	select {
	case r.calls <- struct{}{}:
	default:
	}
	return r.Reserver.Reserve(ctx, key, token)
}

// TestDedupeUnsettled: while another process is publishing a key (its
// reservation not settled), a publish of the key waits: "already queued"
// once the other's task is queued, queued itself if the other's publish
// failed and freed the key, and unavailable (a webhook's 503, so that the
// forge comes again) if neither happens in time. Answering "already
// queued" at once lost the task when the other publish failed.
func TestDedupeUnsettled(t *testing.T) {
	tests := []struct {
		name    string
		context string
		other   func(ctx context.Context, db state.DB, key string) error // what the other process does
		want    error
		queued  bool
		waitFor time.Duration
	}{
		{"the other publish settles", "settles", func(ctx context.Context, db state.DB, key string) error { return db.Settle(ctx, key, "other") },
			queue.ErrDuplicate, false, 5 * time.Second},
		{"the other publish fails", "fails", func(ctx context.Context, db state.DB, key string) error {
			_, err := db.Free(ctx, key, "other")
			return err
		},
			nil, true, 5 * time.Second},
		{"the other publish never ends", "never", nil, queue.ErrUnavailable, false, 300 * time.Millisecond},
	}
	forEachState(t, func(t *testing.T, db state.DB) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := newFixture(t, db, nil)
				calls := make(chan struct{}, 100)
				q := queue.Dedupe(f.raw, reserveCalls{state.Reserver{DB: db}, calls}, tt.waitFor)
				task := queuetest.Task(1, "public")
				task.Context = tt.context // a key of its own on the shared db
				if ok, _, err := db.Reserve(ctxT(t), task.Key(), "other"); err != nil || !ok {
					t.Fatalf("the other's Reserve = %v, %v", ok, err)
				}
				done := make(chan error, 1)
				go func() { done <- q.Publish(ctxT(t), task) }()
				for range 2 { // a second look: it is waiting
					select {
					case <-calls:
					case err := <-done:
						t.Fatalf("Publish returned %v before it waited", err)
					}
				}
				if tt.other != nil {
					if err := tt.other(ctxT(t), db, task.Key()); err != nil {
						t.Fatal(err)
					}
				}
				err := <-done
				if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
					t.Fatalf("Publish = %v, want %v", err, tt.want)
				}
				got := keys(queued(t, f, "public"))
				if queued := slices.Contains(got, task.Key()); queued != tt.queued {
					t.Errorf("queued %v, want the task queued: %v", got, tt.queued)
				}
				if r, live, err := db.Live(ctxT(t), task.Key()); tt.queued && (err != nil || !live || !r.Settled || r.Token == "other") {
					t.Errorf("reservation after queuing = %+v, %v, %v; want ours, settled", r, live, err)
				}
			})
		}
	})
}
