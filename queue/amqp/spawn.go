package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// AckWithTasks implements queue.Delivery. A held task's spawns, the events
// and the ack go in one AMQP transaction on the channel the task came on:
// a bot killed before the commit leaves the task to run again with nothing
// queued, one killed after it leaves nothing to run again.
//
// The spawns' dedupe markers cannot go in the transaction: a lock queue
// that refuses one fails the whole commit with "partial tx completion"
// after applying the rest, and closes the channel
// (TestTxMarkerToHeldLock). So the keys are looked up first, and those
// whose lock holds a marker are skipped (dups); the markers follow the
// commit, with confirms, as in Publish (task first, then marker). A marker
// refused then (the key was published elsewhere meanwhile) withdraws its
// copy; one never sent (the bot died right after the commit) leaves its
// task to take the lock when it is claimed (lock.go).
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
	pubs, locks, dups, err := d.q.spawned(l, spawns)
	if err != nil {
		if !l.alive() {
			d.finish(stateLost)
			return nil, fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
		}
		return nil, queue.Unavailable(err)
	}
	if err := d.wc.commit(ctx, d.tag, append(pubs, evs...), &d.lock); err != nil {
		d.finish(stateLost)
		return nil, fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
	}
	d.q.lockSpawned(ctx, locks)
	return dups, nil
}

// lockSpawned publishes the markers of tasks just queued, with confirms.
// The tasks are queued already: a failure is logged, and their claimers
// take the locks.
func (q *Queue) lockSpawned(ctx context.Context, locks []lockRef) {
	if len(locks) == 0 {
		return
	}
	markers := make([]routed, len(locks))
	for i, lock := range locks {
		markers[i] = routed{"", lock.slot, lock.marker()}
	}
	var refused []lockRef
	err := q.c.retry(ctx, func(l *link) error {
		ok, err := l.publishMany(ctx, markers)
		if err != nil {
			return err
		}
		refused = refused[:0]
		for i := range ok {
			if !ok[i] {
				refused = append(refused, locks[i])
			}
		}
		return nil
	})
	if err != nil {
		q.c.log.Warn("locking spawned tasks failed; their claimers take the locks", "err", err)
		return
	}
	for _, lock := range refused {
		if q.withdrawIfLive(ctx, lock) {
			q.c.log.Info("a spawned task's key was published meanwhile; its copy is withdrawn", "task", lock.key)
		}
	}
}

// spawned returns the messages that queue spawns whose keys are not live
// (each task and its Queued event) and their locks, declaring what they
// need on l, and the keys that are live.
func (q *Queue) spawned(l *link, spawns []queue.Spawn) (pubs []routed, locks []lockRef, dups []string, err error) {
	for _, s := range spawns {
		t := s.Task
		body, err := json.Marshal(t)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("encode %s: %w", t.Key(), err)
		}
		if err := q.usePool(l, t.Pool); err != nil {
			return nil, nil, nil, err
		}
		lock := lockRef{token: newToken()}
		if !q.c.cfg.NoDedupe {
			lock.key, lock.slot = t.Key(), q.n.slotOf(t.Key(), q.c.cfg.LockSlots)
			if err := l.declare(slotSpec(lock.slot)); err != nil {
				return nil, nil, nil, err
			}
			// No marker carries an empty token: any marker of the key
			// is another publish's.
			st, err := l.look(lockRef{slot: lock.slot, key: lock.key}, false)
			if err != nil {
				return nil, nil, nil, err
			}
			if st == lockOther {
				dups = append(dups, t.Key())
				continue
			}
		}
		ev, err := q.n.eventOf(s.Queued)
		if err != nil {
			return nil, nil, nil, err
		}
		pubs = append(pubs, routed{q.n.workExchange(), t.Pool, taskMessage(body, 2*t.Priority, 0, lock.token)}, ev)
		if lock.slot != "" {
			locks = append(locks, lock)
		}
	}
	return pubs, locks, dups, nil
}

// spawnParked is AckWithTasks of a parked task. d.mu is held.
func (d *delivery) spawnParked(ctx context.Context, spawns []queue.Spawn, events []turtles.Event) ([]string, error) {
	var dups []string
	for _, s := range spawns {
		err := d.q.Publish(ctx, s.Task)
		if errors.Is(err, queue.ErrDuplicate) {
			dups = append(dups, s.Task.Key())
			continue
		}
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
	if err := d.settle(ctx, nil, true); err != nil {
		return nil, err
	}
	return dups, nil
}
