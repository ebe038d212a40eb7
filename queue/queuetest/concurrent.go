package queuetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/queue"
)

// ClaimAll runs claimers goroutines that claim from pool and ack until n
// tasks were acked in total, and returns how often each key was delivered.
// Leases are long in the callers, so a key delivered twice means two
// holders at once. The queues are used round robin by the claimers, so
// that several handles (processes) can share the work.
func ClaimAll(t *testing.T, qs []queue.Queue, pool string, claimers, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		seen  = map[string]int{}
		acked int
		errs  []error
		wg    sync.WaitGroup
	)
	for i := range claimers {
		q := qs[i%len(qs)]
		wg.Go(func() {
			for {
				d, err := q.Claim(ctx, pool)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					return
				}
				mu.Lock()
				seen[d.Task().Key()]++
				mu.Unlock()
				if err := Ack(ctx, d); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				acked++
				if acked == n {
					cancel() // everything is done; stop the others
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("claimers: %v", err)
	}
	if acked != n {
		t.Fatalf("acked %d tasks before the deadline, want %d", acked, n)
	}
	return seen
}

func testConcurrent(t *testing.T, open opener) {
	o, _ := opts() // leases end only when the test says: any duplicate is a bug
	q := open(t, o)
	const n = 200
	want := map[string]int{}
	var wg sync.WaitGroup
	// Publish while claimers already wait, from a few publishers.
	const publishers = 4
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < n; i += publishers {
				if err := q.Publish(t.Context(), Task(i, "public")); err != nil {
					t.Errorf("Publish(%d): %v", i, err)
				}
			}
		})
	}
	for i := range n {
		want[Task(i, "public").Key()] = 1
	}
	got := ClaimAll(t, []queue.Queue{q}, "public", 8, n)
	wg.Wait()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries per key (-want +got):\n%s", diff)
	}
}

func testStats(t *testing.T, open opener) {
	o, _ := opts()
	o.MaxDeliveries = 2
	q := open(t, o)
	publish(t, q, Task(1, "a"), Task(2, "a"), Task(3, "a"), Task(4, "a"), Task(5, "b"))
	claim(t, q, "a") // task 1 stays leased
	nack := func(d queue.Delivery, delay time.Duration) {
		t.Helper()
		if _, err := d.Nack(ctxT(t, patient), delay, "stats test"); err != nil {
			t.Fatalf("Nack: %v", err)
		}
	}
	nack(claim(t, q, "a"), time.Hour) // task 2 delayed
	nack(claim(t, q, "a"), 0)         // task 3 ready again...
	nack(claim(t, q, "a"), 0)         // ...and dead after its second delivery
	stats, err := q.Stats(ctxT(t, patient))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	got := map[string]int{}
	for _, s := range stats {
		if s.Count != 0 {
			got[s.Pool+"/"+s.State] += s.Count
		}
	}
	want := map[string]int{"a/ready": 1, "a/leased": 1, "a/delayed": 1, "a/dead": 1, "b/ready": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats, pool/state -> count (-want +got):\n%s", diff)
	}
}
