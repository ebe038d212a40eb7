package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// AckWithTasks implements queue.Delivery. A held task's spawns, their
// dedupe markers, the events and the ack go in one AMQP transaction on the
// channel the task came on: a bot killed before the commit leaves the
// task to run again with nothing queued, one killed after it leaves
// nothing to run again.
//
// A transaction has no confirms, so it cannot learn that a lock refused
// a marker: keys are looked up first, and those whose lock holds a marker
// are skipped (dups). A key published elsewhere between the look and the
// commit is queued twice; its lock queue drops the second marker, and the
// claimers keep one copy (lock.go).
//
// A parked task (a plan that ran past ParkAfter) has no message to ack
// with: its spawns are published one by one, then its events, then its
// lease ends. A bot killed midway runs it again, as before this existed.
func (d *delivery) AckWithTasks(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	for _, s := range spawns {
		if err := s.Task.Validate(); err != nil {
			return nil, fmt.Errorf("ack %s with its tasks: %s: %w", d.task.Key(), s.Task.Key(), err)
		}
	}
	spawn := d.spawnHeld
	if d.state == stateParked {
		spawn = d.spawnParked
	}
	dups, err := spawn(ctx, spawns, events)
	if err != nil {
		return nil, fmt.Errorf("ack %s with its tasks: %w", d.task.Key(), err)
	}
	d.finish(stateDone)
	return dups, nil
}

// spawnHeld is AckWithTasks of a held task. d.mu is held.
func (d *delivery) spawnHeld(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	l := d.link
	pubs, dups, err := d.q.spawned(l, spawns)
	if err == nil {
		for _, ev := range events {
			msg, e := eventMessage(ev)
			if e != nil {
				return nil, e
			}
			pubs = append(pubs, d.q.n.event(msg))
		}
	}
	if err != nil {
		if !l.alive() {
			d.finish(stateLost)
			return nil, fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
		}
		return nil, turtles.MarkInfra(err)
	}
	if err := d.wc.commit(ctx, d.tag, pubs, &d.lock); err != nil {
		d.finish(stateLost)
		return nil, fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
	}
	return dups, nil
}

// spawned returns the messages that queue spawns whose keys are not live
// (each task, its marker, its Queued event), declaring what they need on
// l, and the keys that are live.
func (q *Queue) spawned(l *link, spawns []queue.Spawn) (pubs []routed, dups []string, err error) {
	for _, s := range spawns {
		t := s.Task
		body, err := json.Marshal(t)
		if err != nil {
			return nil, nil, fmt.Errorf("encode %s: %w", t.Key(), err)
		}
		if err := q.usePool(l, t.Pool); err != nil {
			return nil, nil, err
		}
		lock := lockRef{token: newToken()}
		if !q.c.cfg.NoDedupe {
			lock.key, lock.slot = t.Key(), q.n.slotOf(t.Key(), q.c.cfg.LockSlots)
			if err := l.declare(slotSpec(lock.slot)); err != nil {
				return nil, nil, err
			}
			// No marker carries an empty token: any marker of the key
			// is another publish's.
			st, err := l.look(lockRef{slot: lock.slot, key: lock.key}, false)
			if err != nil {
				return nil, nil, err
			}
			if st == lockOther {
				dups = append(dups, t.Key())
				continue
			}
		}
		ev, err := eventMessage(s.Queued)
		if err != nil {
			return nil, nil, err
		}
		pubs = append(pubs, routed{q.n.workExchange(), t.Pool, taskMessage(body, 2*t.Priority, 0, lock.token)})
		if lock.slot != "" {
			pubs = append(pubs, routed{"", lock.slot, lock.marker()})
		}
		pubs = append(pubs, q.n.event(ev))
	}
	return pubs, dups, nil
}

// spawnParked is AckWithTasks of a parked task. d.mu is held.
func (d *delivery) spawnParked(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	var dups []string
	emit := func(ev turtles.Event) error {
		msg, err := eventMessage(ev)
		if err != nil {
			return err
		}
		return d.emit(ctx, msg)
	}
	for _, s := range spawns {
		err := d.q.Publish(ctx, s.Task)
		if errors.Is(err, queue.ErrDuplicate) {
			dups = append(dups, s.Task.Key())
			continue
		}
		if err == nil {
			err = emit(s.Queued)
		}
		if err != nil {
			return nil, turtles.MarkInfra(err)
		}
	}
	for _, ev := range events {
		if err := emit(ev); err != nil {
			return nil, turtles.MarkInfra(err)
		}
	}
	if err := d.settle(ctx, nil, true); err != nil {
		return nil, err
	}
	return dups, nil
}

// emit publishes the event message msg with a confirm, through
// reconnects.
func (d *delivery) emit(ctx context.Context, msg amqp.Publishing) error {
	return d.q.c.retry(ctx, func(l *link) error { return publishEvent(ctx, l, d.q.n, msg) })
}
