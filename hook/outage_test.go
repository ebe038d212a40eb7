package hook

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

// outageQueue is a queue whose broker is away while down is set: like
// the real backends, its Publish waits for the broker until its context
// ends.
type outageQueue struct {
	fakeQueue
	down atomic.Bool
}

func (q *outageQueue) Publish(ctx context.Context, t turtles.Task) error {
	if q.down.Load() {
		<-ctx.Done()
		return fmt.Errorf("waiting for the broker: %w", ctx.Err())
	}
	return q.fakeQueue.Publish(ctx, t)
}

// TestGitHubQueueOutage: during a queue outage a delivery is answered 503
// by the publish timeout, although the request's own context never ends
// (a forge waits 10 s, curl for ever), and it is not recorded as
// handled: the same delivery sent again once the queue is back is queued.
func TestGitHubQueueOutage(t *testing.T) {
	const timeout = 100 * time.Millisecond
	q := &outageQueue{}
	h, err := NewGitHub(Config{Secret: testSecret, Queue: q, Deliveries: &MemoryDeliveries{}, Budget: testBudget(t),
		PublishTimeout: timeout, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	push := fixture(t, "push.payload.json")

	q.down.Store(true)
	began := time.Now()
	send(t, h, 0, request{event: "push", body: push, delivery: "d1", wantCode: 503, wantMessage: "retry later"})
	if took := time.Since(began); took > timeout+2*time.Second {
		t.Errorf("answered after %s, want about the publish timeout, %s", took, timeout)
	}

	q.down.Store(false)
	send(t, h, 1, request{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "queued 1 task"})
	send(t, h, 2, request{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "already handled"})
	if diff := cmp.Diff([]turtles.Task{pushMainTask}, q.tasks); diff != "" {
		t.Errorf("tasks queued (-want +got):\n%s", diff)
	}
}
