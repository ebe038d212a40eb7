package amqp

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// AckWithTasks implements queue.Delivery. A held task's spawns, the events
// and the ack go in one AMQP transaction on the channel the task came on:
// a bot killed before the commit leaves the task to run again with nothing
// queued, one killed after it leaves nothing to run again. It dedupes
// nothing (queue.Dedupe reserved the spawns' keys before): dups is always
// empty.
//
// A parked task (a plan that ran past ParkAfter) has no message to ack
// with: its spawns are published one by one, then its events, then its
// lease ends. A bot killed midway runs it again, as before this existed
// (its spawns' reservations are its own: see queue.SpawnToken).
func (d *delivery) AckWithTasks(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	if err := queue.ValidateSpawns(spawns); err != nil {
		return nil, fmt.Errorf("ack %s with its tasks: %w", d.task.Key(), err)
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
	var evs []routed
	for _, ev := range events {
		r, err := d.q.n.eventOf(ev)
		if err != nil {
			return nil, err
		}
		evs = append(evs, r)
	}
	l := d.link
	pubs, err := d.q.spawned(l, spawns)
	if err != nil {
		if !l.alive() {
			d.finish(stateLost)
			return nil, fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
		}
		return nil, queue.Unavailable(err)
	}
	if err := d.wc.commit(ctx, d.tag, append(pubs, evs...)); err != nil {
		d.finish(stateLost)
		return nil, fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
	}
	return nil, nil
}

// spawned returns the messages that queue spawns (each task and its
// Queued event), declaring what they need on l.
func (q *Queue) spawned(l *link, spawns []queue.Spawn) ([]routed, error) {
	var pubs []routed
	for _, s := range spawns {
		t := s.Task
		body, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", t.Key(), err)
		}
		if err := q.usePool(l, t.Pool); err != nil {
			return nil, err
		}
		ev, err := q.n.eventOf(s.Queued)
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, routed{q.n.workExchange(), t.Pool, taskMessage(body, 2*t.Priority, 0, newToken())}, ev)
	}
	return pubs, nil
}

// spawnParked is AckWithTasks of a parked task. d.mu is held.
func (d *delivery) spawnParked(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	for _, s := range spawns {
		err := d.q.Publish(ctx, s.Task)
		if err == nil {
			err = d.q.Emit(ctx, s.Queued)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, ev := range events {
		if err := d.q.Emit(ctx, ev); err != nil {
			return nil, err
		}
	}
	return nil, d.settle(ctx, nil)
}
