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

// eventPrefetch bounds the events a receiver holds unacked; they come back
// if it dies, and consumers drop duplicates by Event.ID.
const eventPrefetch = 16

// Events is a queue.Events on RabbitMQ: one durable queue behind the
// events exchange, with a single active consumer so that a task's events
// are handled in the order emitted even with several reporters running
// (the others stand by).
type Events struct {
	c *client
	n names

	mu   sync.Mutex
	ch   *amqp.Channel
	msgs <-chan amqp.Delivery
}

var _ queue.Events = (*Events)(nil)

// OpenEvents connects to the broker for emitting and receiving events.
func OpenEvents(cfg Config) (*Events, error) {
	c, err := newClient(cfg, "events")
	if err != nil {
		return nil, err
	}
	return &Events{c: c, n: c.n}, nil
}

// Emit implements queue.Events.
func (e *Events) Emit(ctx context.Context, ev turtles.Event) error {
	if e.c.closed() {
		return queue.ErrClosed
	}
	err := e.c.retry(ctx, func(l *link) error { return emitOn(ctx, l, e.n, ev) })
	if err != nil {
		return fmt.Errorf("emit event %s: %w", ev.ID, queue.Unavailable(err))
	}
	return nil
}

func emitOn(ctx context.Context, l *link, n names, ev turtles.Event) error {
	msg, err := eventMessage(ev)
	if err != nil {
		return err
	}
	return publishEvent(ctx, l, n, msg)
}

// publishEvent publishes an encoded event and waits for its confirm.
func publishEvent(ctx context.Context, l *link, n names, msg amqp.Publishing) error {
	return l.publishAll(ctx, []routed{n.event(msg)})
}

// consumer returns the current delivery channel, consuming anew after a
// reconnect.
func (e *Events) consumer(ctx context.Context) (<-chan amqp.Delivery, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch != nil && !e.ch.IsClosed() {
		return e.msgs, nil
	}
	l, err := e.c.link(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := l.conn.Channel()
	if err == nil {
		err = ch.Qos(eventPrefetch, 0, false)
	}
	var msgs <-chan amqp.Delivery
	if err == nil {
		msgs, err = ch.Consume(e.n.events(), "", false, false, false, false, nil)
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

// Receive implements queue.Events. An event received and not acked comes
// back when this handle's connection ends (not after a lease: RabbitMQ
// has no per-message lease).
func (e *Events) Receive(ctx context.Context) (queue.EventDelivery, error) {
	for {
		if e.c.closed() {
			return nil, queue.ErrClosed
		}
		msgs, err := e.consumer(ctx)
		if err != nil {
			if e.c.closed() {
				return nil, queue.ErrClosed
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			e.c.log.Warn("events: consume failed; retrying", "err", err)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.c.done:
			return nil, queue.ErrClosed
		case m, ok := <-msgs:
			if !ok {
				continue // channel closed; consumer() starts another
			}
			var ev turtles.Event
			if err := json.Unmarshal(m.Body, &ev); err != nil {
				e.c.log.Error("events: dropping an event that does not decode", "err", err, "id", m.MessageId)
				m.Nack(false, false)
				continue
			}
			return &eventDelivery{m: m, ev: ev}, nil
		}
	}
}

// Close implements queue.Events.
func (e *Events) Close() error { return e.c.close() }

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
