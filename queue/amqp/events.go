package amqp

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// The event log: one durable queue behind the events exchange, with a
// single active consumer so that a task's events are handled in the order
// emitted even with several reporters running (the others stand by). The
// queue's own events (a dead task's, a cancelled one's, a lost attempt's)
// go to the same exchange in the transaction that causes them.

// eventPrefetch bounds the events a receiver holds unacked; they come back
// if it dies, and consumers drop duplicates by Event.ID.
const eventPrefetch = 16

// consumer is Receive's subscription to the events queue, consumed anew
// after a reconnect.
type consumer struct {
	mu   sync.Mutex
	ch   *amqp.Channel
	msgs <-chan amqp.Delivery
}

func eventMessage(ev turtles.Event) (amqp.Publishing, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	return amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: ev.ID, Body: body}, nil
}

// eventOf encodes ev and routes it to the events exchange.
func (n names) eventOf(ev turtles.Event) (routed, error) {
	msg, err := eventMessage(ev)
	if err != nil {
		return routed{}, err
	}
	return n.event(msg), nil
}

// Emit implements queue.Queue.
func (q *Queue) Emit(ctx context.Context, ev turtles.Event) error {
	if q.c.closed() {
		return queue.ErrClosed
	}
	r, err := q.n.eventOf(ev)
	if err != nil {
		return fmt.Errorf("emit event %s: %w", ev.ID, err)
	}
	if err := q.c.retry(ctx, func(l *link) error { return l.publishAll(ctx, []routed{r}) }); err != nil {
		return fmt.Errorf("emit event %s: %w", ev.ID, err)
	}
	return nil
}

// subscription returns the current delivery channel, consuming anew
// after a reconnect.
func (q *Queue) subscription(ctx context.Context) (<-chan amqp.Delivery, error) {
	e := &q.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch != nil && !e.ch.IsClosed() {
		return e.msgs, nil
	}
	l, err := q.c.link(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := l.conn.Channel()
	if err == nil {
		err = ch.Qos(eventPrefetch, 0, false)
	}
	var msgs <-chan amqp.Delivery
	if err == nil {
		msgs, err = ch.Consume(q.n.events(), "", false, false, false, false, nil)
	}
	if err != nil {
		if ch != nil {
			ch.Close()
		}
		return nil, err
	}
	e.ch, e.msgs = ch, msgs
	return msgs, nil
}

// Receive implements queue.Queue. An event received and not acked comes
// back when this handle's connection ends (not after a lease: RabbitMQ
// has no per-message lease).
func (q *Queue) Receive(ctx context.Context) (queue.EventDelivery, error) {
	for {
		if q.c.closed() {
			return nil, queue.ErrClosed
		}
		msgs, err := q.subscription(ctx)
		if err != nil {
			if q.c.closed() {
				return nil, queue.ErrClosed
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			q.c.log.Warn("events: consume failed; retrying", "err", err)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.c.done:
			return nil, queue.ErrClosed
		case m, ok := <-msgs:
			if !ok {
				continue // channel closed; subscription() starts another
			}
			var ev turtles.Event
			if err := json.Unmarshal(m.Body, &ev); err != nil {
				q.c.log.Error("events: dropping an event that does not decode", "err", err, "id", m.MessageId)
				m.Nack(false, false)
				continue
			}
			return &eventDelivery{m: m, ev: ev}, nil
		}
	}
}

type eventDelivery struct {
	m  amqp.Delivery
	ev turtles.Event
}

func (d *eventDelivery) Event() turtles.Event { return d.ev }

// Ack implements queue.EventDelivery. If the connection that received the
// event is gone, the event comes again (consumers drop duplicates).
func (d *eventDelivery) Ack(ctx context.Context) error {
	if err := d.m.Ack(false); err != nil {
		return fmt.Errorf("ack event %s: %w", d.ev.ID, queue.Unavailable(err))
	}
	return nil
}
