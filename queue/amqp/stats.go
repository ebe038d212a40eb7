package amqp

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// maxDeadScan bounds how many dead letters DeadLetters and Stats read.
const maxDeadScan = 10000

// DeadLetters implements queue.Queue. It reads the dead-letter queue
// without consuming it (basic.get, then the channel's close puts every
// message back), so two readers at the same moment may each see part.
func (q *Queue) DeadLetters(ctx context.Context) ([]queue.DeadLetter, error) {
	l, err := q.c.link(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	defer ch.Close()
	var out []queue.DeadLetter
	for range maxDeadScan {
		m, ok, err := ch.Get(q.n.dead(), false)
		if err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		if !ok {
			break
		}
		dl := queue.DeadLetter{
			Body:   string(m.Body),
			Reason: headerString(m.Headers, hReason),
			Pool:   headerString(m.Headers, hPool),
			Time:   time.Unix(0, headerInt64(m.Headers, hTime)),
		}
		if t, err := turtles.DecodeTask(m.Body); err == nil {
			dl.Task = t
		}
		out = append(out, dl)
	}
	// The queue holds them oldest first; messages put back by an earlier
	// reader may have moved, so the times decide, and among equal times
	// the queue's order, reversed.
	slices.Reverse(out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

// RemoveDead implements queue.Queue: it reads the dead-letter queue as
// DeadLetters does and acks the first message with dl's body and time;
// closing the channel puts the others back.
func (q *Queue) RemoveDead(ctx context.Context, dl queue.DeadLetter) (bool, error) {
	l, err := q.c.link(ctx)
	if err != nil {
		return false, err
	}
	ch, err := l.conn.Channel()
	if err != nil {
		return false, fmt.Errorf("remove a dead letter: %w", err)
	}
	defer ch.Close()
	for range maxDeadScan {
		m, ok, err := ch.Get(q.n.dead(), false)
		if err != nil {
			return false, fmt.Errorf("remove a dead letter: %w", err)
		}
		if !ok {
			return false, nil
		}
		if string(m.Body) == dl.Body && headerInt64(m.Headers, hTime) == dl.Time.UnixNano() {
			if err := m.Ack(false); err != nil {
				return false, fmt.Errorf("remove a dead letter: %w", err)
			}
			return true, nil
		}
	}
	return false, nil
}

func headerInt64(h map[string]any, k string) int64 {
	if v, ok := h[k].(int64); ok {
		return v
	}
	return int64(headerInt(h, k))
}

// Stats implements queue.Queue: ready and delayed from the broker's queue
// depths; leased is the tasks held by this handle plus the parked copies
// of long tasks in the broker (held deliveries of other processes are
// invisible without the management plugin); dead from the dead letters.
// Pools are those of Config.Pools, this handle's and the dead letters'.
func (q *Queue) Stats(ctx context.Context) ([]queue.Stat, error) {
	if q.c.closed() {
		return nil, queue.ErrClosed
	}
	dls, err := q.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	dead := map[string]int{}
	for _, dl := range dls {
		dead[dl.Pool]++
	}
	q.mu.Lock()
	pools := map[string]bool{}
	for p := range q.pools {
		pools[p] = true
	}
	held := map[string]int{}
	for d := range q.held {
		d.mu.Lock()
		if d.state == stateHeld {
			held[d.pool]++
		}
		d.mu.Unlock()
	}
	q.mu.Unlock()
	for p := range dead {
		pools[p] = true
	}
	l, err := q.c.link(ctx)
	if err != nil {
		return nil, err
	}
	count := func(name string) (int, error) {
		n, _, err := l.exists(name)
		return n, err
	}
	var out []queue.Stat
	for _, pool := range slices.Sorted(mapKeys(pools)) {
		ready, err := count(q.n.work(pool))
		if err != nil {
			return nil, fmt.Errorf("stats of pool %s: %w", pool, err)
		}
		delayed := 0
		for _, step := range delayLadder {
			n, err := count(q.n.delay(pool, step))
			if err != nil {
				return nil, fmt.Errorf("stats of pool %s: %w", pool, err)
			}
			delayed += n
		}
		parked, err := count(q.n.parked(pool, q.opts.Lease))
		if err != nil {
			return nil, fmt.Errorf("stats of pool %s: %w", pool, err)
		}
		out = append(out,
			queue.Stat{Pool: pool, State: "ready", Count: ready},
			queue.Stat{Pool: pool, State: "delayed", Count: delayed},
			queue.Stat{Pool: pool, State: "leased", Count: held[pool] + parked},
			queue.Stat{Pool: pool, State: "dead", Count: dead[pool]},
		)
	}
	return out, nil
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
