package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// Queue is a queue.Queue on RabbitMQ. It is safe for concurrent use.
type Queue struct {
	c     *client
	n     names
	opts  queue.Options
	clock clockwork.Clock // opts.Clock

	mu     sync.Mutex
	pools  map[string]bool    // pools this handle used, for Stats
	held   map[*delivery]bool // unacked or parked deliveries of this handle
	wake   queue.Wakeups      // keyed by pool, and inboxKey
	reaper sync.Once

	cancels  *cancelSet
	listener sync.Once

	sender wakeSender

	events consumer // Receive's (events.go)
}

var _ queue.Queue = (*Queue)(nil)

// Open connects to the broker and declares the fixed topology. It fails
// if cfg lacks a required field or the broker cannot be reached now;
// later outages are waited out.
func Open(cfg Config) (*Queue, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	q := &Queue{c: c, n: c.n, opts: c.cfg.Options, clock: c.cfg.Options.Clock, pools: map[string]bool{},
		held: map[*delivery]bool{}, cancels: newCancelSet()}
	for _, p := range cfg.Pools {
		q.pools[p] = true
	}
	c.onUp = q.reconnected
	return q, nil
}

// Close implements queue.Queue. Unacked deliveries go back to the broker
// with the connection and are counted as deliveries; parked ones come
// back when their parked copy finds the lease queue gone.
func (q *Queue) Close() error {
	err := q.c.close()
	if err != nil {
		return err
	}
	q.mu.Lock()
	held := q.held
	q.held = map[*delivery]bool{}
	q.mu.Unlock()
	for d := range held {
		d.stopTimers()
	}
	return nil
}

func (q *Queue) usePool(l *link, pool string) error {
	q.mu.Lock()
	q.pools[pool] = true
	q.mu.Unlock()
	return l.declare(q.n.workSpec(pool))
}

func (q *Queue) wakeChan(pool string) <-chan struct{} { return q.wake.Chan(pool) }
func (q *Queue) wakeUp(pool string)                   { q.wake.Wake(pool) }

// Publish implements queue.Queue and waits for the broker's confirm. It
// dedupes nothing: queue.Dedupe does, in the state database, so the
// broker holds work only.
func (q *Queue) Publish(ctx context.Context, t turtles.Task) error {
	if q.c.closed() {
		return queue.ErrClosed
	}
	body, err := queue.EncodeTask(t)
	if err != nil {
		return fmt.Errorf("publish %s: %w", t.Key(), err)
	}
	return q.publishTask(ctx, t.Pool, t.Priority, body)
}

// PublishRaw queues body as it is, for tools and tests of malformed
// messages. A body that is not a valid task is dead-lettered by the Claim
// that meets it.
func (q *Queue) PublishRaw(ctx context.Context, pool string, body []byte) error {
	if q.c.closed() {
		return queue.ErrClosed
	}
	prio := 0
	if t, err := turtles.DecodeTask(body); err == nil {
		prio = t.Priority
	}
	return q.publishTask(ctx, pool, prio, body)
}

func (q *Queue) publishTask(ctx context.Context, pool string, prio int, body []byte) error {
	err := q.c.retry(ctx, func(l *link) error {
		// A token per try: a try whose confirm was lost with the
		// connection may have queued its copy all the same.
		msg := taskMessage(body, 2*prio, 0, newToken())
		if err := q.usePool(l, pool); err != nil {
			return err
		}
		ok, err := l.publish(ctx, q.n.workExchange(), pool, msg)
		if err == nil && !ok {
			err = errors.New("broker refused the message")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("publish to pool %s: %w", pool, err)
	}
	q.signal(pool)
	return nil
}

func taskMessage(body []byte, prio, deliveries int, token string) amqp.Publishing {
	h := amqp.Table{hDeliveries: int32(deliveries)}
	if token != "" {
		h[hToken] = token
	}
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Priority:     uint8(min(prio, maxPriority)),
		Timestamp:    time.Now(),
		Headers:      h,
		Body:         body,
	}
}

func headerInt(h amqp.Table, k string) int {
	switch v := h[k].(type) {
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int16:
		return int(v)
	case int8:
		return int(v)
	case int:
		return v
	}
	return 0
}

func headerString(h amqp.Table, k string) string {
	s, _ := h[k].(string)
	return s
}

// Claim implements queue.Queue. It polls the pool's work queue with
// basic.get, so a bot takes a message only when it has a free slot
// (nothing sits prefetched in a bot that may die), and wakes early on a
// publish through this handle.
func (q *Queue) Claim(ctx context.Context, pool string) (queue.Delivery, error) {
	q.reaper.Do(func() { go q.reap() })
	q.listener.Do(func() {
		go q.listenCancels()
		go q.listenWakes()
	})
	if err := q.waitCancels(ctx); err != nil {
		return nil, err
	}
	for {
		if q.c.closed() {
			return nil, queue.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wake := q.wakeChan(pool)
		l, err := q.c.link(ctx)
		if err != nil {
			if errors.Is(err, queue.ErrClosed) || ctx.Err() != nil {
				return nil, q.ctxOr(ctx, err)
			}
			return nil, err
		}
		var m amqp.Delivery
		var wc *workChan
		ok := false
		err = q.usePool(l, pool)
		if err == nil {
			m, wc, ok, err = l.get(q.n.work(pool))
		}
		if err != nil {
			if q.c.closed() {
				return nil, queue.ErrClosed
			}
			if !l.broken(err) {
				return nil, fmt.Errorf("claim from pool %s: %w", pool, queue.Unavailable(err))
			}
			continue // reconnecting
		}
		if ok {
			d, err := q.accept(ctx, l, wc, pool, m)
			if err != nil {
				q.c.log.Warn("claim: handling a message failed; it returns with the connection", "pool", pool, "err", err)
				l.conn.Close() // unacked messages go back to the queue
				continue
			}
			if d != nil {
				return d, nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.c.done:
			return nil, queue.ErrClosed
		case <-wake:
		case <-l.dead:
		case <-time.After(q.opts.Poll):
		}
	}
}

func (q *Queue) ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !q.c.closed() {
		return ctx.Err()
	}
	return err
}

// accept turns a fetched message into a delivery, or handles it and
// returns nil: a message redelivered by the broker (its holder died
// without acking) goes back counted; a malformed or exhausted one is
// dead-lettered.
func (q *Queue) accept(ctx context.Context, l *link, wc *workChan, pool string, m amqp.Delivery) (*delivery, error) {
	prev := headerInt(m.Headers, hDeliveries)
	t, decodeErr := turtles.DecodeTask(m.Body)
	if decodeErr != nil {
		q.c.log.Warn("dead-lettering a malformed message", "pool", pool, "reason", decodeErr.Error())
		pubs, err := q.deadLettered(pool, m.Body, decodeErr.Error(), nil)
		if err != nil {
			return nil, err
		}
		return nil, wc.commit(ctx, m.DeliveryTag, pubs)
	}
	token := headerString(m.Headers, hToken)
	if rec, ok := q.cancels.match(t); ok {
		r, err := q.n.eventOf(queue.CancelledEvent(t, rec.Reason, q.clock.Now()))
		if err != nil {
			return nil, err
		}
		return nil, wc.commit(ctx, m.DeliveryTag, []routed{r})
	}
	if m.Redelivered {
		// RabbitMQ put it back because a holder's connection ended: that
		// was a delivery, and its holder reports nothing more. Its
		// attempt ends here, with the message that replaces it.
		end := q.opts.Lost(t, prev+1, "the bot's connection to the broker ended")
		pubs, err := q.replaced(l, pool, m.Body, t, prev+1, end, 0, token)
		if err == nil {
			if end.Dead {
				q.c.log.Warn("dead-lettering a task", "task", t.Key(), "reason", end.Reason)
			}
			err = wc.commit(ctx, m.DeliveryTag, pubs)
		}
		if err == nil {
			q.signalRouted(pubs)
		}
		return nil, err
	}
	if q.opts.Exhausted(prev) {
		// Only when MaxDeliveries was lowered: every other path
		// dead-letters a task at its last delivery.
		reason := queue.GaveUp(prev, "no delivery left")
		q.c.log.Warn("dead-lettering a task", "task", t.Key(), "reason", reason)
		final := queue.DeadEvent(t, reason, q.clock.Now())
		pubs, err := q.deadLettered(pool, m.Body, reason, &final)
		if err != nil {
			return nil, err
		}
		return nil, wc.commit(ctx, m.DeliveryTag, pubs)
	}
	d := &delivery{q: q, pool: pool, task: t, body: m.Body, count: prev + 1, token: token,
		state: stateHeld, link: l, wc: wc, tag: m.DeliveryTag, beat: q.clock.Now()}
	q.mu.Lock()
	q.held[d] = true
	q.mu.Unlock()
	d.arm()
	return d, nil
}

// requeued returns the message that queues t again with prev earlier
// deliveries, after delay (0: at once), ahead of fresh tasks of its
// priority; it declares the delay queue on l.
func (q *Queue) requeued(l *link, pool string, t turtles.Task, prev int, delay time.Duration, token string) (routed, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return routed{}, err
	}
	r := routed{q.n.workExchange(), pool, taskMessage(body, 2*t.Priority+1, prev, token)}
	if delay > 0 {
		spec := q.n.delaySpec(pool, delayStep(delay))
		if err := l.declare(spec); err != nil {
			return routed{}, err
		}
		r.exchange, r.key = "", spec.name
	}
	return r, nil
}

// replaced returns the messages that replace the count-th delivery of t
// (body as it came) once it ended without an ack, as end decided: its
// dead letter, or its next attempt after delay; with end's event.
func (q *Queue) replaced(l *link, pool string, body []byte, t turtles.Task, count int, end queue.End, delay time.Duration, token string) ([]routed, error) {
	if end.Dead {
		return q.deadLettered(pool, body, end.Reason, end.Event)
	}
	next := t
	next.Attempt++
	r, err := q.requeued(l, pool, next, count, delay, token)
	if err != nil {
		return nil, err
	}
	pubs := []routed{r}
	if end.Event != nil {
		ev, err := q.n.eventOf(*end.Event)
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, ev)
	}
	return pubs, nil
}

// deadLettered returns the messages that store body on the dead-letter
// queue with reason, and the task's final event (nil for a body that is
// no task).
func (q *Queue) deadLettered(pool string, body []byte, reason string, final *turtles.Event) ([]routed, error) {
	now := q.clock.Now()
	dead := routed{"", q.n.dead(), amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		Timestamp:    now,
		Headers: amqp.Table{hPool: pool, hReason: reason,
			hTime: now.UnixNano()},
		Body: body,
	}}
	if final == nil {
		return []routed{dead}, nil
	}
	ev, err := q.n.eventOf(*final)
	if err != nil {
		return nil, err
	}
	return []routed{dead, ev}, nil
}

// reconnected runs after a reconnect, before the link is handed out:
// parked deliveries take their lease queues again, so that the reaper
// sees their holder alive.
func (q *Queue) reconnected(l *link) {
	q.mu.Lock()
	var parked []*delivery
	for d := range q.held {
		parked = append(parked, d)
	}
	q.mu.Unlock()
	for _, d := range parked {
		d.relink(l)
	}
}
