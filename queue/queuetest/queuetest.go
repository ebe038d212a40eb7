// Package queuetest is the contract suite for queue.Queue: every backend
// (queue/sqlite, queue/amqp) runs the same tests from its own _test.go
// file, so that the rest of turtles can rely on the documented behaviour
// whatever the backend. Only tests import it.
//
// Time is the queue's Options.Clock, a fake one that the tests advance:
// leases end and Nack delays pass when a test says so, never because the
// machine was slow. What a broker times itself (RabbitMQ's delay queues)
// runs on real time; those tests wait for it with a generous bound. A
// check that something does not happen waits for a later thing that must
// happen after it (a barrier: a task published or an event emitted
// afterwards, which must come first), never for a while.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// Backend is how the suite makes storage and handles of backend Q.
type Backend[Q queue.Queue] struct {
	// Storage makes new, empty storage and returns a function that opens
	// a handle on it. Each call opens another handle on the same storage,
	// as a restarted or second process would; it closes the handle at
	// the end of the test (tests may close it earlier) and fails t if
	// the handle cannot be opened.
	Storage func(t *testing.T) func(t *testing.T, opts queue.Options) Q
	// PublishRaw queues body as it is through q, for the malformed-message
	// tests: a body that is a valid task is deduplicated like Publish,
	// any other is dead-lettered by the Claim that meets it. Both
	// backends have such a method for tools; nil skips those tests.
	PublishRaw func(q Q, ctx context.Context, pool string, body []byte) error
}

// handle is a handle of the backend under test, with its raw publish.
type handle struct {
	queue.Queue
	raw func(ctx context.Context, pool string, body []byte) error // nil: none
}

// opener opens a handle on one storage.
type opener func(t *testing.T, opts queue.Options) *handle

func (b Backend[Q]) storage(t *testing.T) opener {
	open := b.Storage(t)
	return func(t *testing.T, opts queue.Options) *handle {
		q := open(t, opts)
		h := &handle{Queue: q}
		if b.PublishRaw != nil {
			h.raw = func(ctx context.Context, pool string, body []byte) error { return b.PublishRaw(q, ctx, pool, body) }
		}
		return h
	}
}

// Timing shared by the tests. The lease is on the fake clock, so it can
// be long: only an Advance ends it.
const (
	lease   = time.Minute
	poll    = 20 * time.Millisecond // real time: finds other handles' work
	patient = 20 * time.Second      // bound for things that must happen
)

// opts returns the options of one test and its fake clock; handles of
// one storage in one test share them.
func opts() (queue.Options, *clockwork.FakeClock) {
	clock := clockwork.NewFakeClock()
	return queue.Options{Lease: lease, MaxDeliveries: 5, Poll: poll, Clock: clock}, clock
}

// Options are queue options for tests of other packages that run a real
// queue: a real clock, a lease no test outlives, a short poll.
func Options() queue.Options {
	return queue.Options{Lease: 2 * time.Minute, MaxDeliveries: 5, Poll: 10 * time.Millisecond, Clock: clockwork.NewRealClock()}
}

// Run runs the whole contract suite against b.
func Run[Q queue.Queue](t *testing.T, b Backend[Q]) {
	t.Run("Queue", func(t *testing.T) { RunQueue(t, b) })
	t.Run("Events", func(t *testing.T) { runTests(t, b, eventTests) })
	t.Run("Cancel", func(t *testing.T) { runTests(t, b, cancelTests) })
}

// RunQueue runs the tests of publishing, claiming and ending deliveries.
func RunQueue[Q queue.Queue](t *testing.T, b Backend[Q]) {
	runTests(t, b, queueTests)
}

type contractTest struct {
	name string
	fn   func(t *testing.T, open opener)
}

var queueTests = []contractTest{
	{"PublishClaimAck", testPublishClaimAck},
	{"InvalidTaskRefused", testInvalidRefused},
	{"NoDedupe", testNoDedupe},
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
	{"RemoveDead", testRemoveDead},
	{"LostLeaseEvents", testLost},
	{"Malformed", testMalformed},
	{"ReleaseNotCounted", testRelease},
	{"Spawn", testSpawn},
	{"SpawnLeaseLost", testSpawnLeaseLost},
	{"Durability", testDurability},
	{"Closed", testClosed},
	{"ConcurrentClaimers", testConcurrent},
	{"Stats", testStats},
}

func runTests[Q queue.Queue](t *testing.T, b Backend[Q], tests []contractTest) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, b.storage(t))
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
		// The reservation token must travel with the task, into the
		// final events the queue emits itself (cancel, dead letter).
		Token: fmt.Sprintf("token-%d", i),
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

// ack ends d with a plain ack (AckWithTasks of nothing).
func ack(t *testing.T, d queue.Delivery) {
	t.Helper()
	if _, err := d.AckWithTasks(ctxT(t, patient), nil, nil); err != nil {
		t.Fatalf("ack of %s: %v", d.Task().Key(), err)
	}
}

// Ack ends d with a plain ack, for tests of other packages: AckWithTasks
// of nothing.
func Ack(ctx context.Context, d queue.Delivery) error {
	_, err := d.AckWithTasks(ctx, nil, nil)
	return err
}

var barriers atomic.Int64

// claimBarrier checks that nothing claimable from pool is ahead of a task
// published now: it publishes a fresh task of priority 0 and claims, and
// fails with why if the claim returns anything else. Backends hand out
// the oldest available task of the highest priority first (one that
// comes back after a lost lease or a Nack ahead of fresh ones), so
// whatever was claimable before the barrier would come first.
func claimBarrier(t *testing.T, q queue.Queue, pool, why string) {
	t.Helper()
	b := Task(int(1_000_000+barriers.Add(1)), pool)
	b.Context = "barrier"
	publish(t, q, b)
	d := claim(t, q, pool)
	if d.Task().Key() != b.Key() {
		t.Fatalf("claimed %s (count %d) before the barrier task: %s", d.Task().Key(), d.Count(), why)
	}
	ack(t, d)
}

// eventually polls cond until it returns nil, failing with its last error
// after patient: for what a backend does in the background (RabbitMQ's
// handles end expired leases on a timer of their own).
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(patient)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(poll)
	}
}

func keys(tasks []turtles.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.Key())
	}
	return out
}

func testPublishClaimAck(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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
	claimBarrier(t, q, "public", "an acked task came back")
	if _, err := d.AckWithTasks(ctxT(t, patient), nil, nil); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("second ack = %v, want ErrLeaseLost", err)
	}
}

func testInvalidRefused(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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
		if !errors.Is(err, queue.ErrInvalid) || errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("%s: Publish = %v, want an error wrapping ErrInvalid", tt.name, err)
		}
	}
	claimBarrier(t, q, "public", "an invalid task was queued")
}

// testNoDedupe: a backend dedupes nothing (queue.Dedupe does, in the
// state database, in front of it): a key published while live is queued
// again, as two tasks, each delivered once.
func testNoDedupe(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
	task := Task(1, "public")
	again := task
	again.Token = "another run"
	publish(t, q, task, again)
	var got []string
	for range 2 {
		d := claim(t, q, "public")
		if d.Task().Key() != task.Key() || d.Count() != 1 {
			t.Fatalf("claimed %s (count %d), want %s, count 1", d.Task().Key(), d.Count(), task.Key())
		}
		got = append(got, d.Task().Token)
		ack(t, d)
	}
	if diff := cmp.Diff([]string{task.Token, again.Token}, got); diff != "" {
		t.Errorf("tokens of the claimed tasks (-want +got):\n%s", diff)
	}
	claimBarrier(t, q, "public", "a task was delivered twice")
}

func testPriority(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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

func testPoolIsolation(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
	publish(t, q, Task(1, "linux"))
	claimBarrier(t, q, "windows", "a task of pool linux was claimed from windows")
	d := claim(t, q, "linux")
	if got := d.Task().Pool; got != "linux" {
		t.Errorf("claimed task of pool %q from linux", got)
	}
	ack(t, d)
}

func testFIFO(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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

func testClaimWakes(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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

func testClaimContext(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
	returnsOnCancel(t, "Claim", func(ctx context.Context) error {
		_, err := q.Claim(ctx, "public")
		return err
	})
}

func testLeaseExpiry(t *testing.T, open opener) {
	o, clock := opts()
	q := open(t, o)
	publish(t, q, Task(1, "public"))
	old := claim(t, q, "public")
	// The holder "dies": once the lease ends, the task is claimed again.
	clock.Advance(o.Lease + time.Second)
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
	if _, err := old.AckWithTasks(ctxT(t, patient), nil, nil); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("old holder's ack = %v, want ErrLeaseLost", err)
	}
	if _, err := old.Nack(ctxT(t, patient), 0, "late"); !errors.Is(err, queue.ErrLeaseLost) {
		t.Errorf("old holder's Nack = %v, want ErrLeaseLost", err)
	}
	ack(t, d)
	claimBarrier(t, q, "public", "the task came back after its second holder acked it")
}

// testHeartbeat: a holder that beats every half lease keeps the task for
// three leases; a task whose lease had run out would be claimable (or be
// queued again) ahead of a task published after it.
func testHeartbeat(t *testing.T, open opener) {
	o, clock := opts()
	q := open(t, o)
	publish(t, q, Task(1, "public"))
	d := claim(t, q, "public")
	for range 6 {
		clock.Advance(o.Lease / 2)
		if err := d.Heartbeat(ctxT(t, patient)); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
	}
	claimBarrier(t, q, "public", "the task was taken from a holder that kept heart-beating")
	ack(t, d)
}

func testNackDelay(t *testing.T, open opener) {
	o, clock := opts()
	q := open(t, o)
	task := Task(1, "public")
	publish(t, q, task)
	d := claim(t, q, "public")
	// RabbitMQ times delays itself, in real time and rounded up to a step
	// of its ladder: 2s leaves the barrier below that much time to pass.
	const delay = 2 * time.Second
	dead, err := d.Nack(ctxT(t, patient), delay, "infra: VM did not boot")
	if err != nil || dead {
		t.Fatalf("Nack = %v, %v; want false, nil", dead, err)
	}
	claimBarrier(t, q, "public", "a task nacked with a delay was claimable before it")
	clock.Advance(delay)
	d = claim(t, q, "public")
	if d.Task().Key() != task.Key() {
		t.Fatalf("claimed %s, want the nacked %s", d.Task().Key(), task.Key())
	}
	if got := d.Count(); got != 2 {
		t.Errorf("Count() after Nack = %d, want 2", got)
	}
	if got := d.Task().Attempt; got != 2 {
		t.Errorf("Attempt after Nack = %d, want 2", got)
	}
	ack(t, d)
}

func testMaxDeliveriesNack(t *testing.T, open opener) {
	o, _ := opts()
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
	claimBarrier(t, q, "public", "a task was delivered after its last Nack")
	checkDead(t, q, []string{task.Key()})
	publish(t, q, task) // dead is not live: the key may come again
}

func testMaxDeliveriesExpiry(t *testing.T, open opener) {
	o, clock := opts()
	o.MaxDeliveries = 2
	q := open(t, o)
	task := Task(1, "public")
	publish(t, q, task)
	for i := 1; i <= o.MaxDeliveries; i++ {
		if d := claim(t, q, "public"); d.Count() != i {
			t.Fatalf("delivery %d: Count() = %d", i, d.Count())
		} // and never acked: the bot died
		clock.Advance(o.Lease + time.Second)
	}
	claimBarrier(t, q, "public", "a task was delivered past MaxDeliveries")
	eventually(t, func() error { return deadAre(q, []string{task.Key()}) })
}

// testRemoveDead: a dead letter a person dealt with is gone from the
// list and the counts, once; the others stay.
func testRemoveDead(t *testing.T, open opener) {
	o, _ := opts()
	o.MaxDeliveries = 1
	q := open(t, o)
	tasks := []turtles.Task{Task(1, "public"), Task(2, "public"), Task(3, "public")}
	for _, task := range tasks {
		publish(t, q, task)
		d := claim(t, q, "public")
		if dead, err := d.Nack(ctxT(t, patient), 0, "broken bot"); err != nil || !dead {
			t.Fatalf("Nack: dead %v, %v", dead, err)
		}
	}
	dls := checkDead(t, q, []string{tasks[2].Key(), tasks[1].Key(), tasks[0].Key()})
	for _, c := range []struct {
		name string
		dl   queue.DeadLetter
		want bool
	}{
		{"the middle one", dls[1], true},
		{"the same again", dls[1], false},
		{"another time", queue.DeadLetter{Body: dls[0].Body, Time: dls[0].Time.Add(-time.Hour)}, false},
		{"another body", queue.DeadLetter{Body: dls[0].Body + " ", Time: dls[0].Time}, false},
	} {
		got, err := q.RemoveDead(ctxT(t, patient), c.dl)
		if err != nil || got != c.want {
			t.Errorf("RemoveDead(%s) = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	checkDead(t, q, []string{tasks[2].Key(), tasks[0].Key()})
	stats, err := q.Stats(ctxT(t, patient))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.State == "dead" && st.Pool == "public" && st.Count != 2 {
			t.Errorf("Stats counts %d dead in public, want 2", st.Count)
		}
	}
}

// checkDead checks that the dead letters are the tasks with the given keys
// (newest first; "" for bodies that are not tasks) and have a reason.
func checkDead(t *testing.T, q queue.Queue, want []string) []queue.DeadLetter {
	t.Helper()
	dls, err := q.DeadLetters(ctxT(t, patient))
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	if err := deadLettersAre(dls, want); err != nil {
		t.Fatal(err)
	}
	return dls
}

// deadAre is checkDead as an error, for eventually.
func deadAre(q queue.Queue, want []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), patient)
	defer cancel()
	dls, err := q.DeadLetters(ctx)
	if err != nil {
		return fmt.Errorf("DeadLetters: %w", err)
	}
	return deadLettersAre(dls, want)
}

func deadLettersAre(dls []queue.DeadLetter, want []string) error {
	var got []string
	for _, dl := range dls {
		key := ""
		if dl.Task.Version != 0 {
			key = dl.Task.Key()
		}
		got = append(got, key)
		if dl.Reason == "" || dl.Pool == "" || dl.Time.IsZero() {
			return fmt.Errorf("dead letter %q lacks reason, pool or time: %+v", key, dl)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		return fmt.Errorf("dead letters (-want +got):\n%s", diff)
	}
	return nil
}

func testMalformed(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
	if q.raw == nil {
		t.Skip("backend cannot publish raw messages")
	}
	bad := []string{
		"not json at all",
		`{"version":99,"kind":"test","repo":{"name":"a/b","clone_url":"x"}}`,
	}
	for _, body := range bad {
		if err := q.raw(ctxT(t, patient), "public", []byte(body)); err != nil {
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

func testRelease(t *testing.T, open opener) {
	o, _ := opts()
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

func testDurability(t *testing.T, open opener) {
	o, clock := opts()
	q := open(t, o)
	leased, waiting := Task(1, "public"), Task(2, "public")
	publish(t, q, leased, waiting)
	if d := claim(t, q, "public"); d.Task().Key() != leased.Key() {
		t.Fatalf("claimed %s, want %s", d.Task().Key(), leased.Key())
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The leased task comes back once its lease is over (or at once).
	clock.Advance(o.Lease + time.Second)
	q = open(t, o)
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

func testClosed(t *testing.T, open opener) {
	o, _ := opts()
	q := open(t, o)
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
	if _, err := d.AckWithTasks(ctx, nil, nil); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("ack after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Stats(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Stats after Close = %v, want ErrClosed", err)
	}
	if err := q.Emit(ctx, Event("a1", 1, turtles.EventQueued)); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Emit after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Receive(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Receive after Close = %v, want ErrClosed", err)
	}
	if err := q.Put(ctx, []byte("x")); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Take(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Take after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Cancel(ctx, "turtles/example", Task(1, "public").SHA, 0, "closed"); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Cancel after Close = %v, want ErrClosed", err)
	}
	if err := q.Close(); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
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
