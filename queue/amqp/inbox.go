package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles/queue"
)

// inboxLease is how long a taken inbox message may stay unacked before
// it goes back to the queue (as in queue/sqlite).
const inboxLease = time.Minute

// inboxKey is the Wakeups key of the inbox (pools cannot contain spaces).
const inboxKey = "inbox messages"

// Put implements queue.Queue: a persistent message on the durable inbox
// queue, confirmed by the broker.
func (q *Queue) Put(ctx context.Context, body []byte) error {
	if q.c.closed() {
		return queue.ErrClosed
	}
	msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: body}
	err := q.c.retry(ctx, func(l *link) error {
		ok, err := l.publish(ctx, "", q.n.inbox(), msg)
		if err == nil && !ok {
			err = errors.New("broker refused the message")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("put inbox message: %w", err)
	}
	q.wake.Wake(inboxKey)
	return nil
}

// Take implements queue.Queue. It polls with basic.get on a channel of
// its own; a message not acked within the lease is rejected back to the
// queue (and any taken message comes back when the connection ends).
func (q *Queue) Take(ctx context.Context) (queue.InboxMessage, error) {
	for {
		if q.c.closed() {
			return nil, queue.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wake := q.wake.Chan(inboxKey)
		l, err := q.c.link(ctx)
		if err != nil {
			return nil, q.ctxOr(ctx, err)
		}
		ch, err := l.inboxChannel()
		var m amqp.Delivery
		ok := false
		if err == nil {
			m, ok, err = ch.Get(q.n.inbox(), false)
		}
		if err != nil {
			if q.c.closed() {
				return nil, queue.ErrClosed
			}
			if l.alive() && !ch.IsClosed() {
				return nil, fmt.Errorf("take inbox message: %w", queue.Unavailable(err))
			}
			select { // reconnecting, or the channel is reopened next time
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(q.opts.Poll):
			}
			continue
		}
		if ok {
			im := &inboxMessage{m: m}
			im.timer = q.clock.AfterFunc(inboxLease, func() { im.settle(func() error { return m.Reject(true) }) })
			return im, nil
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

// inboxChannel returns the link's channel for inbox gets, opening it on
// first use or after an error closed it.
func (l *link) inboxChannel() (*amqp.Channel, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inbox != nil && !l.inbox.IsClosed() {
		return l.inbox, nil
	}
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, err
	}
	l.inbox = ch
	return ch, nil
}

type inboxMessage struct {
	m     amqp.Delivery
	timer clockwork.Timer

	mu      sync.Mutex
	settled bool
}

func (m *inboxMessage) Body() []byte { return m.m.Body }

// settle runs op (an ack or a reject) once.
func (m *inboxMessage) settle(op func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.settled {
		return queue.ErrLeaseLost
	}
	m.settled = true
	m.timer.Stop()
	return op()
}

// Ack implements queue.InboxMessage. After the lease, or when the
// connection it came on has ended, the message is back in the queue and
// Ack returns an error wrapping queue.ErrLeaseLost.
func (m *inboxMessage) Ack(ctx context.Context) error {
	err := m.settle(func() error { return m.m.Ack(false) })
	if err != nil && !errors.Is(err, queue.ErrLeaseLost) {
		err = fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
	}
	if err != nil {
		return fmt.Errorf("ack inbox message: %w", err)
	}
	return nil
}
