// Package queuetest is the contract suite for queue.Queue and queue.Events:
// every backend (queue/sqlite, queue/amqp) runs the same tests from its own
// _test.go file, so that the rest of turtles can rely on the documented
// behaviour whatever the backend. Only tests import it.
//
// The suite uses short leases and waits of a few hundred milliseconds; it
// never asserts that something happens faster than a bound, only that
// things happen at all and not before they may.
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

// Opener opens a handle on one storage. Each call opens another handle on
// the same storage, as a restarted or second process would. The opener
// closes the handle at the end of the test; tests may close it earlier.
type Opener func(t *testing.T, opts queue.Options) queue.Queue

// EventsOpener is Opener for the event log.
type EventsOpener func(t *testing.T) queue.Events

// Backend makes fresh, empty storage for each test.
type Backend struct {
	// Queue returns an Opener for new, empty storage.
	Queue func(t *testing.T) Opener
	// Events returns an EventsOpener for new, empty storage. Nil skips the
	// event tests.
	Events func(t *testing.T) EventsOpener
	// EventsOf returns the event log on the storage of q, a handle of
	// this backend, for the tests of what a queue emits (cancellation).
	// Nil: q itself is the event log.
	EventsOf func(t *testing.T, q queue.Queue) queue.Events
}

// RawPublisher is implemented by backends that can queue arbitrary bytes;
// the malformed-message tests skip without it.
type RawPublisher interface {
	PublishRaw(ctx context.Context, pool string, body []byte) error
}

// Timing shared by the tests. Lease is short so that expiry tests are
// quick; the waits for "nothing happens" are a fraction of it.
const (
	lease   = 300 * time.Millisecond
	poll    = 20 * time.Millisecond
	nothing = 150 * time.Millisecond // how long "no delivery" is watched
	patient = 10 * time.Second       // bound for things that must happen
)

func opts() queue.Options {
	return queue.Options{Lease: lease, MaxDeliveries: 5, Poll: poll}
}

// Run runs the whole contract suite against b.
func Run(t *testing.T, b Backend) {
	t.Run("Queue", func(t *testing.T) { RunQueue(t, b.Queue) })
	if b.Events != nil {
		t.Run("Events", func(t *testing.T) { RunEvents(t, b.Events) })
	}
	t.Run("Optional", func(t *testing.T) { RunOptional(t, b) })
}

// RunQueue runs the queue.Queue contract tests.
func RunQueue(t *testing.T, storage func(t *testing.T) Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"PublishClaimAck", testPublishClaimAck},
		{"InvalidTaskRefused", testInvalidRefused},
		{"Dedupe", testDedupe},
		{"Priority", testPriority},
		{"PoolIsolation", testPoolIsolation},
		{"FIFO", testFIFO},
		{"ClaimWaitsAndWakes", testClaimWakes},
		{"ClaimHonoursContext", testClaimContext},
		{"LeaseExpiry", testLeaseExpiry},
		{"HeartbeatKeepsLease", testHeartbeat},
		{"NackDelay", testNackDelay},
		{"MaxDeliveriesByNack", testMaxDeliveriesNack},
		{"MaxDeliveriesByLeaseExpiry", testMaxDeliveriesExpiry},
		{"Malformed", testMalformed},
		{"ReleaseNotCounted", testRelease},
		{"Durability", testDurability},
		{"Closed", testClosed},
		{"ConcurrentClaimers", testConcurrent},
		{"Stats", testStats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, storage(t))
		})
	}
}

// Task returns a valid task numbered i in pool; tests of other packages
// may use it too.
func Task(i int, pool string) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion,
		Kind:    turtles.KindTest,
		Repo:    turtles.Repo{Name: "turtles/example", CloneURL: "https://example.com/turtles/example.git"},
		SHA:     fmt.Sprintf("%040x", i),
		Ref:     "main",
		Context: "test",
		Command: "go test ./...",
		Timeout: turtles.Duration(time.Minute),
		Pool:    pool,
		Attempt: 1,
		Trusted: true,
		Secrets: []string{"TOKEN"},
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func publish(t *testing.T, q queue.Queue, tasks ...turtles.Task) {
	t.Helper()
	for _, task := range tasks {
		if err := q.Publish(ctxT(t, patient), task); err != nil {
			t.Fatalf("Publish(%s): %v", task.Key(), err)
		}
	}
}

func claim(t *testing.T, q queue.Queue, pool string) queue.Delivery {
	t.Helper()
	d, err := q.Claim(ctxT(t, patient), pool)
	if err != nil {
		t.Fatalf("Claim(%q): %v", pool, err)
	}
	return d
}

// noClaim checks that nothing is claimable from pool for a while.
func noClaim(t *testing.T, q queue.Queue, pool string, wait time.Duration) {
	t.Helper()
	d, err := q.Claim(ctxT(t, wait), pool)
	if err == nil {
		t.Fatalf("Claim(%q) = task %s (count %d), want nothing", pool, d.Task().Key(), d.Count())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim(%q) = %v, want context.DeadlineExceeded", pool, err)
	}
}

func ack(t *testing.T, d queue.Delivery) {
	t.Helper()
	if err := d.Ack(ctxT(t, patient)); err != nil {
		t.Fatalf("Ack(%s): %v", d.Task().Key(), err)
	}
}

func keys(tasks []turtles.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.Key())
	}
	return out
}

func testPublishClaimAck(t *testing.T, open Opener) {
	q := open(t, opts())
	want := Task(1, "public")
	publish(t, q, want)
	d := claim(t, q, "public")
	if diff := cmp.Diff(want, d.Task()); diff != "" {
		t.Errorf("claimed task differs from published (-want +got):\n%s", diff)
	}
	if got := d.Count(); got != 1 {
		t.Errorf("Count() = %d, want 1", got)
	}
	ack(t, d)
	noClaim(t, q, "public", nothing)
	if err := d.Ack(ctxT(t, patient)); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("second Ack = %v, want ErrLeaseLost", err)
	}
}

func testInvalidRefused(t *testing.T, open Opener) {
	q := open(t, opts())
	tests := []struct {
		name   string
		mutate func(*turtles.Task)
	}{
		{"unknown version", func(t *turtles.Task) { t.Version = 99 }},
		{"bad SHA", func(t *turtles.Task) { t.SHA = "HEAD" }},
		{"bad pool", func(t *turtles.Task) { t.Pool = "No Pool" }},
		{"priority too high", func(t *turtles.Task) { t.Priority = turtles.MaxPriority + 1 }},
		{"attempt zero", func(t *turtles.Task) { t.Attempt = 0 }},
	}
	for i, tt := range tests {
		task := Task(i, "public")
		tt.mutate(&task)
		err := q.Publish(ctxT(t, patient), task)
		if err == nil || errors.Is(err, queue.ErrDuplicate) {
			t.Errorf("%s: Publish = %v, want a validation error", tt.name, err)
		}
	}
	noClaim(t, q, "public", nothing)
}

func testDedupe(t *testing.T, open Opener) {
	q := open(t, opts())
	task := Task(1, "public")
	again := task
	again.Attempt = 3 // same key, another attempt: still the same work
	dup := func(state string) {
		t.Helper()
		if err := q.Publish(ctxT(t, patient), again); !errors.Is(err, queue.ErrDuplicate) {
			t.Fatalf("Publish while %s = %v, want ErrDuplicate", state, err)
		}
	}
	publish(t, q, task)
	dup("ready")
	d := claim(t, q, "public")
	dup("leased")
	if _, err := d.Nack(ctxT(t, patient), time.Hour, "later"); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	dup("delayed")

	// Another key is not a duplicate.
	other := Task(1, "public")
	other.Context = "lint"
	publish(t, q, other)
	d = claim(t, q, "public")
	if d.Task().Key() != other.Key() {
		t.Fatalf("claimed %s, want %s", d.Task().Key(), other.Key())
	}
	ack(t, d)
	publish(t, q, other) // acked: the same key may come again
	d = claim(t, q, "public")
	if d.Count() != 1 {
		t.Errorf("republished task Count() = %d, want 1", d.Count())
	}
	ack(t, d)
}

func testPriority(t *testing.T, open Opener) {
	q := open(t, opts())
	var tasks []turtles.Task
	for i, p := range []int{0, 5, 9, 5, 1} {
		task := Task(i, "public")
		task.Priority = p
		tasks = append(tasks, task)
	}
	publish(t, q, tasks...)
	var got []turtles.Task
	for range tasks {
		d := claim(t, q, "public")
		got = append(got, d.Task())
		ack(t, d)
	}
	want := []turtles.Task{tasks[2], tasks[1], tasks[3], tasks[4], tasks[0]}
	if diff := cmp.Diff(keys(want), keys(got)); diff != "" {
		t.Errorf("claim order (-want +got):\n%s", diff)
	}
}

func testPoolIsolation(t *testing.T, open Opener) {
	q := open(t, opts())
	publish(t, q, Task(1, "linux"))
	noClaim(t, q, "windows", nothing)
	d := claim(t, q, "linux")
	if got := d.Task().Pool; got != "linux" {
		t.Errorf("claimed task of pool %q from linux", got)
	}
	ack(t, d)
}

func testFIFO(t *testing.T, open Opener) {
	q := open(t, opts())
	var want []turtles.Task
	for i := range 10 {
		want = append(want, Task(i, "public"))
	}
	publish(t, q, want...)
	var got []turtles.Task
	for range want {
		d := claim(t, q, "public")
		got = append(got, d.Task())
		ack(t, d)
	}
	if diff := cmp.Diff(keys(want), keys(got)); diff != "" {
		t.Errorf("claim order (-want +got):\n%s", diff)
	}
}

func testClaimWakes(t *testing.T, open Opener) {
	q := open(t, opts())
	type result struct {
		d   queue.Delivery
		err error
	}
	ch := make(chan result, 1)
	go func() {
		d, err := q.Claim(ctxT(t, patient), "public")
		ch <- result{d, err}
	}()
	publish(t, q, Task(1, "public"))
	r := <-ch
	if r.err != nil {
		t.Fatalf("waiting Claim: %v", r.err)
	}
	ack(t, r.d)
}

func testClaimContext(t *testing.T, open Opener) {
	q := open(t, opts())
	returnsOnCancel(t, "Claim", func(ctx context.Context) error {
		_, err := q.Claim(ctx, "public")
		return err
	})
}

func testLeaseExpiry(t *testing.T, open Opener) {
	q := open(t, opts())
	publish(t, q, Task(1, "public"))
	old := claim(t, q, "public")
	// The holder "dies": the second claim gets the task once the lease ends.
	d := claim(t, q, "public")
	if got := d.Count(); got != 2 {
		t.Errorf("redelivered Count() = %d, want 2", got)
	}
	if got := d.Task().Attempt; got != 2 {
		t.Errorf("redelivered Attempt = %d, want 2", got)
	}
	if err := old.Heartbeat(ctxT(t, patient)); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("old holder's Heartbeat = %v, want ErrLeaseLost", err)
	}
	if err := old.Ack(ctxT(t, patient)); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("old holder's Ack = %v, want ErrLeaseLost", err)
	}
	if _, err := old.Nack(ctxT(t, patient), 0, "late"); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("old holder's Nack = %v, want ErrLeaseLost", err)
	}
	ack(t, d)
	noClaim(t, q, "public", nothing)
}

func testHeartbeat(t *testing.T, open Opener) {
	o := opts()
	o.Lease = 600 * time.Millisecond
	q := open(t, o)
	publish(t, q, Task(1, "public"))
	d := claim(t, q, "public")

	// While a rival waits for three leases, the holder beats every fifth of
	// one; the rival must get nothing.
	rival := make(chan error, 1)
	go func() {
		got, err := q.Claim(ctxT(t, 3*o.Lease), "public")
		if err == nil {
			err = fmt.Errorf("rival claimed %s during heartbeats", got.Task().Key())
		}
		rival <- err
	}()
	tick := time.NewTicker(o.Lease / 5)
	defer tick.Stop()
	for {
		select {
		case err := <-rival:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("rival Claim = %v, want context.DeadlineExceeded", err)
			}
			ack(t, d)
			return
		case <-tick.C:
			if err := d.Heartbeat(ctxT(t, patient)); err != nil {
				t.Fatalf("Heartbeat: %v", err)
			}
		}
	}
}

func testNackDelay(t *testing.T, open Opener) {
	q := open(t, opts())
	publish(t, q, Task(1, "public"))
	d := claim(t, q, "public")
	const delay = 600 * time.Millisecond
	nacked := time.Now()
	dead, err := d.Nack(ctxT(t, patient), delay, "infra: VM did not boot")
	if err != nil || dead {
		t.Fatalf("Nack = %v, %v; want false, nil", dead, err)
	}
	noClaim(t, q, "public", nothing)
	d = claim(t, q, "public")
	if waited := time.Since(nacked); waited < delay {
		t.Errorf("claimed %v after Nack with delay %v", waited, delay)
	}
	if got := d.Count(); got != 2 {
		t.Errorf("Count() after Nack = %d, want 2", got)
	}
	if got := d.Task().Attempt; got != 2 {
		t.Errorf("Attempt after Nack = %d, want 2", got)
	}
	ack(t, d)
}

func testMaxDeliveriesNack(t *testing.T, open Opener) {
	o := opts()
	o.MaxDeliveries = 3
	q := open(t, o)
	task := Task(1, "public")
	publish(t, q, task)
	for i := 1; i <= o.MaxDeliveries; i++ {
		d := claim(t, q, "public")
		if d.Count() != i {
			t.Fatalf("delivery %d: Count() = %d", i, d.Count())
		}
		dead, err := d.Nack(ctxT(t, patient), 0, "broken bot")
		if err != nil {
			t.Fatalf("Nack %d: %v", i, err)
		}
		if want := i == o.MaxDeliveries; dead != want {
			t.Fatalf("Nack %d: dead = %v, want %v", i, dead, want)
		}
	}
	noClaim(t, q, "public", nothing)
	checkDead(t, q, []string{task.Key()})
	publish(t, q, task) // dead is not live: the key may come again
}

func testMaxDeliveriesExpiry(t *testing.T, open Opener) {
	o := opts()
	o.MaxDeliveries = 2
	q := open(t, o)
	task := Task(1, "public")
	publish(t, q, task)
	for i := 1; i <= o.MaxDeliveries; i++ {
		if d := claim(t, q, "public"); d.Count() != i {
			t.Fatalf("delivery %d: Count() = %d", i, d.Count())
		} // and never acked: the bot died
	}
	noClaim(t, q, "public", 2*o.Lease)
	checkDead(t, q, []string{task.Key()})
}

// checkDead checks that the dead letters are the tasks with the given keys
// (newest first; "" for bodies that are not tasks) and have a reason.
func checkDead(t *testing.T, q queue.Queue, want []string) []queue.DeadLetter {
	t.Helper()
	dls, err := q.DeadLetters(ctxT(t, patient))
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	var got []string
	for _, dl := range dls {
		key := ""
		if dl.Task.Version != 0 {
			key = dl.Task.Key()
		}
		got = append(got, key)
		if dl.Reason == "" || dl.Pool == "" || dl.Time.IsZero() {
			t.Errorf("dead letter %q lacks reason, pool or time: %+v", key, dl)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("dead letters (-want +got):\n%s", diff)
	}
	return dls
}

func testMalformed(t *testing.T, open Opener) {
	q := open(t, opts())
	raw, ok := q.(RawPublisher)
	if !ok {
		t.Skip("backend cannot publish raw messages")
	}
	bad := []string{
		"not json at all",
		`{"version":99,"kind":"test","repo":{"name":"a/b","clone_url":"x"}}`,
	}
	for _, body := range bad {
		if err := raw.PublishRaw(ctxT(t, patient), "public", []byte(body)); err != nil {
			t.Fatalf("PublishRaw(%q): %v", body, err)
		}
	}
	good := Task(1, "public")
	publish(t, q, good)
	d := claim(t, q, "public")
	if d.Task().Key() != good.Key() {
		t.Fatalf("claimed %s, want the good task %s", d.Task().Key(), good.Key())
	}
	ack(t, d)
	dls := checkDead(t, q, []string{"", ""})
	var bodies []string
	for _, dl := range dls {
		bodies = append(bodies, dl.Body)
	}
	if diff := cmp.Diff([]string{bad[1], bad[0]}, bodies); diff != "" {
		t.Errorf("dead letter bodies (-want +got):\n%s", diff)
	}
}

func testRelease(t *testing.T, open Opener) {
	o := opts()
	o.MaxDeliveries = 2
	q := open(t, o)
	task := Task(1, "public")
	publish(t, q, task)
	for i := range o.MaxDeliveries + 2 {
		d := claim(t, q, "public")
		if d.Count() != 1 || d.Task().Attempt != 1 {
			t.Fatalf("claim %d after Release: Count() = %d, Attempt = %d, want 1, 1", i, d.Count(), d.Task().Attempt)
		}
		if err := d.Release(ctxT(t, patient)); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
	ack(t, claim(t, q, "public"))
	checkDead(t, q, nil)
}

func testDurability(t *testing.T, open Opener) {
	q := open(t, opts())
	leased, waiting := Task(1, "public"), Task(2, "public")
	publish(t, q, leased, waiting)
	if d := claim(t, q, "public"); d.Task().Key() != leased.Key() {
		t.Fatalf("claimed %s, want %s", d.Task().Key(), leased.Key())
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = open(t, opts())
	got := map[string]int{}
	for range 2 {
		d := claim(t, q, "public")
		got[d.Task().Key()] = d.Count()
		ack(t, d)
	}
	want := map[string]int{leased.Key(): 2, waiting.Key(): 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tasks after reopen, key -> Count (-want +got):\n%s", diff)
	}
}

func testClosed(t *testing.T, open Opener) {
	q := open(t, opts())
	publish(t, q, Task(1, "public"))
	d := claim(t, q, "public")
	waiting := make(chan error, 1)
	go func() {
		_, err := q.Claim(ctxT(t, patient), "public")
		waiting <- err
	}()
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waiting:
		if err == nil {
			t.Error("waiting Claim returned a task after Close")
		}
	case <-time.After(patient):
		t.Fatal("waiting Claim did not return after Close")
	}
	ctx := ctxT(t, patient)
	if err := q.Publish(ctx, Task(2, "public")); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Claim(ctx, "public"); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Claim after Close = %v, want ErrClosed", err)
	}
	if err := d.Ack(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Ack after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Stats(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Stats after Close = %v, want ErrClosed", err)
	}
}

// returnsOnCancel checks that call, blocked waiting, returns
// context.Canceled soon after its context is cancelled.
func returnsOnCancel(t *testing.T, what string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ch := make(chan error, 1)
	go func() { ch <- call(ctx) }()
	cancel()
	select {
	case err := <-ch:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s after cancel = %v, want context.Canceled", what, err)
		}
	case <-time.After(patient):
		t.Fatalf("%s did not return after its context was cancelled", what)
	}
}
