package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/sqlite"
)

func init() { register("queue-embedded", queueEmbedded) }

// queueEmbedded measures the embedded queue's throughput for no-op tasks:
// publishers (webhooks) and claimers (bots) run at once on a fresh file,
// and a task counts when it is published, claimed and acked.
func queueEmbedded(ctx context.Context) error {
	const (
		tasks      = 4000
		publishers = 4
		claimers   = 8
	)
	dir, err := os.MkdirTemp("", "turtles-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(filepath.Join(dir, "queue.db"), queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: 200 * time.Millisecond, Clock: clockwork.NewRealClock()}, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	elapsed, err := pumpTasks(ctx, db, tasks, publishers, claimers, nil)
	if err != nil {
		return err
	}
	result("queue-embedded", fmt.Sprintf("%.0f", tasks/elapsed.Seconds()), "tasks/s", ">= 1000")
	return nil
}

// pumpTasks publishes n no-op tasks from publishers goroutines while
// claimers goroutines claim and ack them through q, and returns the time
// until the last ack. done, if set, is called with each task after its
// ack (what the recorder does with its final event: free its key). Other
// queue backends' benchmarks use it too.
func pumpTasks(ctx context.Context, q queue.Queue, n, publishers, claimers int, done func(context.Context, turtles.Task) error) (time.Duration, error) {
	// Publishes end on the caller's ctx, not when the last task is acked:
	// a claim can ack a task before its publish has its confirm.
	pubCtx := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		acked atomic.Int64
		wg    sync.WaitGroup
		fail  = func(err error) { cancel(err) }
	)
	start := time.Now()
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < n && ctx.Err() == nil; i += publishers {
				if err := q.Publish(pubCtx, benchTask(i)); err != nil {
					fail(fmt.Errorf("publish %d: %w", i, err))
					return
				}
			}
		})
	}
	for range claimers {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := q.Claim(ctx, "bench")
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("claim: %w", err))
					}
					return
				}
				if _, err := d.AckWithTasks(ctx, nil, nil); err != nil {
					fail(fmt.Errorf("ack %s: %w", d.Task().Key(), err))
					return
				}
				if done != nil {
					if err := done(ctx, d.Task()); err != nil {
						fail(fmt.Errorf("after the ack of %s: %w", d.Task().Key(), err))
						return
					}
				}
				if acked.Add(1) == int64(n) {
					cancel(nil) // all done; stop the waiting claimers
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	if got := acked.Load(); got != int64(n) {
		return 0, fmt.Errorf("acked %d of %d tasks: %w", got, n, context.Cause(ctx))
	}
	return elapsed, nil
}

func benchTask(i int) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion,
		Kind:    turtles.KindTest,
		Repo:    turtles.Repo{Name: "bench/noop", CloneURL: "file:///dev/null"},
		SHA:     fmt.Sprintf("%040x", i),
		Context: "noop",
		Command: "true",
		Pool:    "bench",
		Attempt: 1,
		Created: time.Now(),
	}
}
