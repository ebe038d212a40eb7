package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// Cancellation. RabbitMQ cannot take a message out of the middle of a
// queue, so Cancel does not remove anything: it publishes a record of the
// cancelled commit (CancelTask: of the cancelled task key) on the fanout
// exchange PREFIX.cancel. Every handle that
// claims keeps the records in memory, fed by an exclusive queue of its
// connection bound to that exchange, and seeded at every connect from the
// durable, bounded queue PREFIX.cancels (read without consuming), so that
// a bot started after the Cancel knows it too. A claimer that meets a task
// of a cancelled commit acks it together with its final cancelled event,
// in one transaction, instead of returning it; a holder learns it at its
// next Heartbeat, which does the same and returns queue.ErrCancelled.

const (
	// cancelsKept bounds PREFIX.cancels; older records are dropped first.
	cancelsKept = 10000
	// cancelTTL is how long a record is kept: a task of a cancelled commit
	// met later than that runs.
	cancelTTL = 24 * time.Hour
)

type cancelRecord struct {
	Repo string `json:"repo,omitempty"`
	SHA  string `json:"sha,omitempty"`
	PR   int    `json:"pr,omitempty"`
	// Key, when set, cancels the one task of that key (CancelTask)
	// instead of a commit's.
	Key    string    `json:"key,omitempty"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

func cancelKey(repo, sha string, pr int) string { return fmt.Sprintf("%s@%s#%d", repo, sha, pr) }

// taskCancelKey is the key of a CancelTask record: task keys hold a ':'
// before the context and commit keys a '#', so the two never meet.
func taskCancelKey(key string) string { return "task " + key }

func (r cancelRecord) key() string {
	if r.Key != "" {
		return taskCancelKey(r.Key)
	}
	return cancelKey(r.Repo, r.SHA, r.PR)
}

// cancelSet is a handle's view of the cancelled commits.
type cancelSet struct {
	mu    sync.Mutex
	m     map[string]cancelRecord
	ready chan struct{} // closed once the durable records were read
	once  sync.Once
}

func newCancelSet() *cancelSet {
	return &cancelSet{m: map[string]cancelRecord{}, ready: make(chan struct{})}
}

func (s *cancelSet) add(r cancelRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, old := range s.m {
		if time.Since(old.Time) > cancelTTL {
			delete(s.m, k)
		}
	}
	s.m[r.key()] = r
}

// match returns the record that cancels t: one of its commit and pull
// request, or of its key, made after t was created (a retest of the
// commit published after the Cancel runs).
func (s *cancelSet) match(t turtles.Task) (cancelRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range []string{cancelKey(t.Repo.Name, t.SHA, t.PR), taskCancelKey(t.Key())} {
		if r, ok := s.m[k]; ok && !t.Created.After(r.Time) {
			return r, true
		}
	}
	return cancelRecord{}, false
}

// Cancel implements queue.Queue. The count is of the running tasks
// this handle holds; tasks queued or held by other processes are cancelled
// too, when a bot meets them, but cannot be counted here.
func (q *Queue) Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error) {
	if q.c.closed() {
		return 0, queue.ErrClosed
	}
	// Real time, not the queue's clock: tasks are matched by their
	// creation time, which the webhook receiver stamps.
	n, err := q.cancel(ctx, cancelRecord{Repo: repo, SHA: sha, PR: pr, Reason: reason, Time: time.Now()})
	if err != nil {
		return 0, fmt.Errorf("cancel tasks of %s@%s: %w", repo, sha, err)
	}
	return n, nil
}

// CancelTask implements queue.Queue, as Cancel does.
func (q *Queue) CancelTask(ctx context.Context, key, reason string) (int, error) {
	if q.c.closed() {
		return 0, queue.ErrClosed
	}
	n, err := q.cancel(ctx, cancelRecord{Key: key, Reason: reason, Time: time.Now()})
	if err != nil {
		return 0, fmt.Errorf("cancel task %s: %w", key, err)
	}
	return n, nil
}

// cancel publishes rec and counts the held deliveries it cancels.
func (q *Queue) cancel(ctx context.Context, rec cancelRecord) (int, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	msg := amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Timestamp: rec.Time, Body: body}
	err = q.c.retry(ctx, func(l *link) error {
		ok, err := l.publish(ctx, q.n.cancelExchange(), "", msg)
		if err == nil && !ok {
			err = errors.New("broker refused the message")
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	q.cancels.add(rec)
	n := 0
	q.mu.Lock()
	for d := range q.held {
		if _, ok := q.cancels.match(d.task); ok {
			n++
		}
	}
	q.mu.Unlock()
	return n, nil
}

// listenCancels keeps q.cancels up to date until the handle is closed.
func (q *Queue) listenCancels() {
	ctx := q.c.untilClosed()
	for ctx.Err() == nil {
		l, err := q.c.link(ctx)
		if err != nil {
			return
		}
		msgs, err := q.subscribeCancels(l)
		if err == nil {
			err = q.seedCancels(l)
		}
		if err != nil {
			q.c.log.Warn("cancellations: subscribe failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		q.cancels.once.Do(func() { close(q.cancels.ready) })
		for m := range msgs {
			var rec cancelRecord
			if err := json.Unmarshal(m.Body, &rec); err != nil {
				q.c.log.Error("cancellations: dropping a record that does not decode", "err", err)
				continue
			}
			q.cancels.add(rec)
		}
	}
}

// subscribeCancels binds an exclusive queue of l's connection to the
// cancel exchange and consumes it.
func (q *Queue) subscribeCancels(l *link) (<-chan amqp.Delivery, error) {
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (<-chan amqp.Delivery, error) {
		ch.Close()
		return nil, fmt.Errorf("subscribe to cancellations: %w", err)
	}
	sub, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fail(err)
	}
	if err := ch.QueueBind(sub.Name, "", q.n.cancelExchange(), false, nil); err != nil {
		return fail(err)
	}
	msgs, err := ch.Consume(sub.Name, "", true, true, false, false, nil)
	if err != nil {
		return fail(err)
	}
	return msgs, nil
}

// seedCancels reads the durable records without consuming them: they are
// taken unacked and go back when the channel closes.
func (q *Queue) seedCancels(l *link) error {
	ch, err := l.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for range cancelsKept {
		m, ok, err := ch.Get(q.n.cancels(), false)
		if err != nil {
			return fmt.Errorf("read cancellations: %w", err)
		}
		if !ok {
			return nil
		}
		var rec cancelRecord
		if err := json.Unmarshal(m.Body, &rec); err == nil {
			q.cancels.add(rec)
		}
	}
	return nil
}

// waitCancels waits until the durable records were read once, so that a
// fresh bot does not run what was cancelled before it started.
func (q *Queue) waitCancels(ctx context.Context) error {
	select {
	case <-q.cancels.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-q.c.done:
		return queue.ErrClosed
	}
}

// cancelled ends a held or parked delivery whose commit was cancelled,
// with its final cancelled event, and returns ErrCancelled; it returns
// nil for a delivery that is not cancelled. d.mu is held.
func (d *delivery) cancelled(ctx context.Context) error {
	if d.state == stateCancelled {
		return fmt.Errorf("task %s: %w", d.task.Key(), queue.ErrCancelled)
	}
	rec, ok := d.q.cancels.match(d.task)
	if !ok {
		return nil
	}
	r, err := d.q.n.eventOf(queue.CancelledEvent(d.task, rec.Reason, d.q.clock.Now()))
	if err != nil {
		return err
	}
	if err := d.endWith(ctx, r); err != nil {
		return fmt.Errorf("cancel %s: %w", d.task.Key(), err)
	}
	d.finish(stateCancelled)
	return fmt.Errorf("task %s: %w: %s", d.task.Key(), queue.ErrCancelled, rec.Reason)
}
