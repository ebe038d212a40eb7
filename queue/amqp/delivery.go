package amqp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// A delivery starts held: an unacked message on its link's work channel,
// which RabbitMQ hands out again if the connection dies. Before the
// broker's consumer_timeout could close the channel (ParkAfter), it is
// parked: a lease queue named after it is declared exclusive to this
// connection (so it vanishes when the holder does), a copy of the task is
// parked in a TTL queue as insurance, and the message is acked. The reaper
// of any process finds the parked copy when its TTL ends and parks it
// again while the lease queue exists; when the lease queue is gone it
// either sees the done marker (the holder finished) or queues the task
// again (the holder died). See docs/distributed.md.
const (
	stateHeld = iota
	stateParked
	stateDone
	stateLost
	stateCancelled
)

type delivery struct {
	q     *Queue
	pool  string
	task  turtles.Task
	body  []byte
	count int
	token string // the publish's token, carried by every copy

	mu      sync.Mutex
	state   int
	link    *link     // held: the link of the unacked message
	wc      *workChan // held: the channel it came on
	tag     uint64    // held: its delivery tag
	leaseID string    // parked
	beat    time.Time // the claim or last heartbeat, on the queue's clock
	expiry  clockwork.Timer
	park    *time.Timer // real time: the broker's consumer_timeout is
}

var _ queue.Delivery = (*delivery)(nil)

func (d *delivery) Task() turtles.Task { return d.task }
func (d *delivery) Count() int         { return d.count }

func (d *delivery) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expiry = d.q.clock.AfterFunc(d.q.opts.Lease, d.expire)
	d.park = time.AfterFunc(d.q.c.cfg.ParkAfter, d.parkNow)
}

func (d *delivery) stopTimers() {
	d.expiry.Stop()
	d.park.Stop()
}

// finish ends the delivery in state; d.mu is held.
func (d *delivery) finish(state int) {
	d.state = state
	d.stopTimers()
	d.q.mu.Lock()
	delete(d.q.held, d)
	d.q.mu.Unlock()
}

// check returns the error for a delivery that can no longer be used,
// ending it first if its commit was cancelled; d.mu is held.
func (d *delivery) check(ctx context.Context) error {
	if err := d.usable(); err != nil {
		return err
	}
	return d.cancelled(ctx)
}

func (d *delivery) usable() error {
	if d.q.c.closed() {
		return queue.ErrClosed
	}
	if d.state == stateHeld && !d.link.alive() {
		// RabbitMQ requeued the message when the connection ended.
		d.finish(stateLost)
	}
	if d.state == stateDone || d.state == stateLost {
		return fmt.Errorf("task %s: %w", d.task.Key(), queue.ErrLeaseLost)
	}
	return nil
}

// Heartbeat implements queue.Delivery: the lease is kept by this process,
// so a heartbeat only pushes the expiry back.
func (d *delivery) Heartbeat(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return err
	}
	d.expiry.Reset(d.q.opts.Lease)
	d.beat = d.q.clock.Now()
	return nil
}

// endWith publishes the task's final event ev and ends the delivery: a
// held task's event and ack in one transaction (ErrLeaseLost if it
// failed: the broker hands the task out again and the event was not
// published); a parked task's event first, then its lease. The caller
// sets the final state. d.mu is held.
func (d *delivery) endWith(ctx context.Context, ev routed) error {
	if d.state == stateHeld {
		if err := d.wc.commit(ctx, d.tag, []routed{ev}); err != nil {
			d.finish(stateLost)
			return fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
		}
		return nil
	}
	err := d.q.c.retry(ctx, func(l *link) error { return l.publishAll(ctx, []routed{ev}) })
	if err == nil {
		err = d.settle(ctx, nil)
	}
	return err
}

// Nack implements queue.Delivery.
func (d *delivery) Nack(ctx context.Context, delay time.Duration, reason string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return false, err
	}
	end := d.q.opts.Nacked(d.task, d.count, reason)
	err := d.settle(ctx, d.next(end, delay))
	if err != nil {
		return false, fmt.Errorf("nack %s: %w", d.task.Key(), err)
	}
	d.finish(stateDone)
	if end.Dead {
		d.q.c.log.Warn("dead-lettering a task", "task", d.task.Key(), "reason", end.Reason)
	}
	return end.Dead, nil
}

// Release implements queue.Delivery.
func (d *delivery) Release(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return err
	}
	err := d.settle(ctx, func(l *link) ([]routed, error) {
		r, err := d.q.requeued(l, d.pool, d.task, d.count-1, 0, d.token)
		return []routed{r}, err
	})
	if err != nil {
		return fmt.Errorf("release %s: %w", d.task.Key(), err)
	}
	d.finish(stateDone)
	return nil
}

// next returns what replaces the task after a failed delivery, as end
// decided: its next attempt after delay, or its dead letter.
func (d *delivery) next(end queue.End, delay time.Duration) func(l *link) ([]routed, error) {
	return func(l *link) ([]routed, error) {
		return d.q.replaced(l, d.pool, d.body, d.task, d.count, end, delay, d.token)
	}
}

// settle publishes what replaces the task (if then is set: it returns
// the messages, declaring what they need on l) and lets go of the
// original: when held, both in one transaction with the ack; when
// parked, the done marker and lease queue after the publishes. d.mu is
// held.
func (d *delivery) settle(ctx context.Context, then func(l *link) ([]routed, error)) error {
	if d.state == stateHeld {
		// The ack must go on the channel the message came on.
		l := d.link
		var pubs []routed
		if then != nil {
			var err error
			if pubs, err = then(l); err != nil {
				if !l.alive() {
					d.finish(stateLost)
					return queue.ErrLeaseLost
				}
				return queue.Unavailable(err)
			}
		}
		if err := d.wc.commit(ctx, d.tag, pubs); err != nil {
			d.finish(stateLost)
			return fmt.Errorf("%w: %v", queue.ErrLeaseLost, err)
		}
		d.q.signalRouted(pubs)
		return nil
	}
	err := d.q.c.retry(ctx, func(l *link) error {
		if then != nil {
			pubs, err := then(l)
			if err == nil {
				err = l.publishAll(ctx, pubs)
			}
			if err != nil {
				return err
			}
			then = nil // done once; a retry only ends the lease
			d.q.signalRouted(pubs)
		}
		return d.endLease(l)
	})
	return err
}

// endLease marks a parked delivery done and drops its lease queue, in
// that order: the reaper looks at the lease queue first, then the marker.
func (d *delivery) endLease(l *link) error {
	if err := l.declare(d.q.n.doneSpec(d.leaseID)); err != nil {
		return err
	}
	return l.deleteQueue(d.q.n.lease(d.leaseID))
}

// expire runs when the lease ran out without a heartbeat: the task goes
// back to the queue (counted) or, at MaxDeliveries, to the dead letters.
func (d *delivery) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateHeld && d.state != stateParked {
		return
	}
	log := d.q.c.log.With("task", d.task.Key(), "delivery", d.count)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d.state == stateParked {
		// The parked copy comes back through the reaper, counted.
		err := d.q.c.retry(ctx, func(l *link) error { return l.deleteQueue(d.q.n.lease(d.leaseID)) })
		if err != nil {
			log.Warn("lease expired; dropping its lease queue failed (it goes with the connection)", "err", err)
		}
		d.finish(stateLost)
		return
	}
	l := d.link
	// This holder reports nothing more (its Heartbeat returns
	// ErrLeaseLost): its attempt ends here, with what replaces it.
	end := d.q.opts.Lost(d.task, d.count, queue.StoppedBeating(d.beat))
	dead := end.Dead
	var err error
	if l.alive() {
		err = d.settle(ctx, d.next(end, 0))
	}
	if err != nil {
		// The broker hands the message out again, counted, when the
		// connection ends; end it now rather than hold the task forever.
		log.Warn("lease expired; requeueing through a reconnect", "err", err)
		l.conn.Close()
	} else {
		log.Info("lease expired; task queued again", "dead", dead)
	}
	d.finish(stateLost)
}

// parkNow turns a held delivery into a parked one (see the top of this
// file), before the broker's consumer_timeout takes it away.
func (d *delivery) parkNow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != stateHeld {
		return
	}
	l := d.link
	if !l.alive() {
		d.finish(stateLost)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := newToken()
	parked, err := d.parkOn(l, id)
	if err == nil {
		// The parked copy and the ack in one transaction: a death in
		// between must not leave both the message and its copy queued.
		err = d.wc.commit(ctx, d.tag, []routed{parked})
	}
	if err != nil {
		d.q.c.log.Warn("parking a long task failed; trying again", "task", d.task.Key(), "err", err)
		d.park.Reset(10 * time.Second)
		return
	}
	d.state, d.leaseID, d.link = stateParked, id, nil
	d.q.c.log.Info("long task parked", "task", d.task.Key(), "lease", id)
}

// parkOn takes the lease queue id on l and returns the parked copy of
// the task, to be published with the ack.
func (d *delivery) parkOn(l *link, id string) (routed, error) {
	n := d.q.n
	if err := l.declare(queueSpec{name: n.lease(id), exclusive: true}); err != nil {
		return routed{}, err
	}
	spec := n.parkedSpec(d.pool, d.q.opts.Lease)
	if err := l.declare(spec); err != nil {
		return routed{}, err
	}
	msg := taskMessage(d.body, 2*d.task.Priority, d.count, d.token)
	msg.Headers[hLease] = id
	msg.Headers[hPool] = d.pool
	return routed{"", spec.name, msg}, nil
}

// relink runs after a reconnect: a held message went back to the broker
// with the old connection; a parked delivery takes its lease queue again.
func (d *delivery) relink(l *link) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateHeld:
		d.finish(stateLost)
	case stateParked:
		if err := l.declare(queueSpec{name: d.q.n.lease(d.leaseID), exclusive: true}); err != nil {
			d.q.c.log.Error("retaking the lease of a parked task failed", "task", d.task.Key(), "err", err)
		}
	}
}

// reap runs in every handle that claims: it takes parked copies whose
// TTL ended and decides their fate. Its channel is in tx mode, so that a
// copy's replacement and its ack go together (reaper.commit).
func (q *Queue) reap() {
	ctx := q.c.untilClosed()
	for ctx.Err() == nil {
		l, err := q.c.link(ctx)
		if err != nil {
			return
		}
		ch, err := l.conn.Channel()
		if err == nil {
			err = ch.Qos(1, 0, false)
		}
		if err == nil {
			err = ch.Tx()
		}
		var msgs <-chan amqp.Delivery
		if err == nil {
			msgs, err = ch.Consume(q.n.reap(), "", false, false, false, false, nil)
		}
		if err != nil {
			q.c.log.Warn("reaper: consume failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		r := reaper{ch: ch}
		for m := range msgs {
			q.reapOne(ctx, l, r, m)
		}
	}
}

// reaper is the reaper's channel, in tx mode.
type reaper struct{ ch *amqp.Channel }

// commit publishes pubs and acks m (or, with requeue, puts it back) in
// one transaction.
func (r reaper) commit(ctx context.Context, m amqp.Delivery, pubs []routed, requeue bool) error {
	if err := publishTx(ctx, r.ch, pubs); err != nil {
		return err
	}
	var err error
	if requeue {
		err = m.Nack(false, true)
	} else {
		err = m.Ack(false)
	}
	if err != nil {
		return err
	}
	return r.ch.TxCommit()
}

func (q *Queue) reapOne(ctx context.Context, l *link, r reaper, m amqp.Delivery) {
	id, pool := headerString(m.Headers, hLease), headerString(m.Headers, hPool)
	count := headerInt(m.Headers, hDeliveries)
	t, err := turtles.DecodeTask(m.Body)
	if err != nil || id == "" || pool == "" {
		q.c.log.Error("reaper: dropping a message that is not a parked task", "err", err)
		r.commit(ctx, m, nil, false)
		return
	}
	log := q.c.log.With("task", t.Key(), "lease", id)
	fail := func(err error) {
		log.Warn("reaper: deciding a parked task failed; it comes back", "err", err)
		r.commit(ctx, m, nil, true)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	_, held, err := l.exists(q.n.lease(id))
	if err != nil {
		fail(err)
		return
	}
	// Right after a reconnect, holders may not have taken their lease
	// queues again yet: wait a lease before calling anyone dead.
	if held || time.Since(l.up) < q.opts.Lease {
		spec := q.n.parkedSpec(pool, q.opts.Lease)
		msg := taskMessage(m.Body, int(m.Priority), count, headerString(m.Headers, hToken))
		msg.Headers[hLease], msg.Headers[hPool] = id, pool
		err := l.declare(spec)
		if err == nil {
			err = r.commit(ctx, m, []routed{{"", spec.name, msg}}, false)
		}
		if err != nil {
			fail(err)
		}
		return
	}
	_, done, err := l.exists(q.n.done(id))
	if err != nil {
		fail(err)
		return
	}
	if done {
		if err := l.deleteQueue(q.n.done(id)); err != nil {
			log.Warn("reaper: removing a done marker failed; it expires", "err", err)
		}
		r.commit(ctx, m, nil, false)
		return
	}
	end := q.opts.Lost(t, count, "the bot holding the long task is gone")
	dead := end.Dead
	if !dead {
		log.Warn("reaper: holder of a parked task is gone; queueing it again")
	}
	pubs, err := q.replaced(l, pool, m.Body, t, count, end, 0, headerString(m.Headers, hToken))
	if err == nil {
		err = r.commit(ctx, m, pubs, false)
	}
	if err != nil {
		fail(err)
		return
	}
	q.signalRouted(pubs)
}
