package amqp

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Wake-ups across processes. A claim finds the work queue empty and waits
// for a publish in this process or for Options.Poll (a broker cannot
// push to basic.get). A task published by another process (a hook, a
// plan's bot) would wait up to Poll to be claimed, so every publish of
// work also sends a transient message with the pool's name to a fanout
// exchange, and every handle that claims listens there on an exclusive
// queue of its own: a waiting claim looks again at once. Wake-ups are
// best effort: one lost (an outage, a listener not yet bound) costs at
// most Poll, as before. A handle sends at most one per pool per wakeGap,
// plus one at the end of the gap, so that a burst of publishes costs a
// few messages, and the last task of a burst is never left to the poll.

// wakeGap is the least time between two wake-ups a handle sends for one
// pool.
const wakeGap = 10 * time.Millisecond

// wakeTimeout bounds sending one wake-up: a publish never waits for it.
const wakeTimeout = time.Second

// wakeSender coalesces a handle's wake-ups per pool.
type wakeSender struct {
	mu       sync.Mutex
	last     map[string]time.Time // when one was last sent, per pool
	trailing map[string]bool      // one is due at the end of the gap
}

// signal wakes the claims of pool in this process at once, and in other
// processes through the broker.
func (q *Queue) signal(pool string) {
	q.wakeUp(pool)
	w := &q.sender
	w.mu.Lock()
	if w.last == nil {
		w.last, w.trailing = map[string]time.Time{}, map[string]bool{}
	}
	since := time.Since(w.last[pool])
	if since >= wakeGap {
		w.last[pool] = time.Now()
		w.mu.Unlock()
		go q.sendWake(pool)
		return
	}
	if w.trailing[pool] {
		w.mu.Unlock()
		return
	}
	w.trailing[pool] = true
	w.mu.Unlock()
	time.AfterFunc(wakeGap-since, func() {
		w.mu.Lock()
		w.trailing[pool], w.last[pool] = false, time.Now()
		w.mu.Unlock()
		q.sendWake(pool)
	})
}

// signalRouted signals the pools that pubs put work in at once.
func (q *Queue) signalRouted(pubs []routed) {
	seen := map[string]bool{}
	for _, r := range pubs {
		if r.exchange == q.n.workExchange() && !seen[r.key] {
			seen[r.key] = true
			q.signal(r.key)
		}
	}
}

// sendWake publishes one wake-up for pool, if the broker is there.
func (q *Queue) sendWake(pool string) {
	ctx, cancel := context.WithTimeout(context.Background(), wakeTimeout)
	defer cancel()
	l, err := q.c.link(ctx)
	if err == nil {
		var ch *amqp.Channel
		if ch, err = l.wakeChannel(); err == nil {
			err = ch.PublishWithContext(ctx, q.n.wakeExchange(), "", false, false,
				amqp.Publishing{DeliveryMode: amqp.Transient, Body: []byte(pool)})
		}
	}
	if err != nil {
		q.c.log.Debug("wake-up not sent; claims elsewhere find the task at their next poll", "pool", pool, "err", err)
	}
}

// wakeChannel returns l's channel for wake-ups, opened on first use and
// reopened if an error closed it.
func (l *link) wakeChannel() (*amqp.Channel, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake != nil && !l.wake.IsClosed() {
		return l.wake, nil
	}
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, err
	}
	l.wake = ch
	return ch, nil
}

// listenWakes wakes this handle's claims on every wake-up, on every link,
// until the handle is closed.
func (q *Queue) listenWakes() {
	ctx := q.c.untilClosed()
	for ctx.Err() == nil {
		l, err := q.c.link(ctx)
		if err != nil {
			return
		}
		msgs, err := q.subscribeWakes(l)
		if err != nil {
			q.c.log.Debug("wake-ups: subscribe failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-l.dead:
			case <-time.After(time.Second):
			}
			continue
		}
		for m := range msgs {
			q.wakeUp(string(m.Body))
		}
	}
}

// subscribeWakes binds an exclusive queue of l's connection to the wake
// exchange and consumes it.
func (q *Queue) subscribeWakes(l *link) (<-chan amqp.Delivery, error) {
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (<-chan amqp.Delivery, error) {
		ch.Close()
		return nil, fmt.Errorf("subscribe to wake-ups: %w", err)
	}
	sub, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fail(err)
	}
	if err := ch.QueueBind(sub.Name, "", q.n.wakeExchange(), false, nil); err != nil {
		return fail(err)
	}
	msgs, err := ch.Consume(sub.Name, "", true, true, false, false, nil)
	if err != nil {
		return fail(err)
	}
	return msgs, nil
}
