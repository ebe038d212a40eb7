package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
)

func init() { register("queue-amqp", queueAMQP) }

// queueAMQP measures no-op task dispatch through turtles over RabbitMQ
// (publish with confirm, claim, ack) against a raw amqp091-go loop doing
// the same publish-confirm/consume/ack with the same durability (durable
// queue, persistent messages, confirms, manual acks), on one private
// broker in the same run, and prints turtles' rate over the raw one.
func queueAMQP(ctx context.Context) error {
	const (
		tasks      = 2000
		rounds     = 3
		lockSlots  = 4096
		publishers = 4
		claimers   = 8
	)
	b, err := amqptest.Start(amqptest.Options{})
	if err != nil {
		return err
	}
	defer b.Stop()

	// The machine is shared: rounds interleave the loops, and the
	// medians are compared, so that a burst of load hits all alike.
	var raw, rawLocked, rawHTTP, noDedupe, perKey, slots []float64
	rate := func(d time.Duration) float64 { return tasks / d.Seconds() }
	for round := range rounds {
		d, err := rawLoop(ctx, b.URL, tasks, publishers, claimers, lockNone)
		if err != nil {
			return fmt.Errorf("raw loop: %w", err)
		}
		raw = append(raw, rate(d))
		// The ceiling of any lock kept in the broker: the raw loop plus
		// the least such a lock costs, one transient marker per message
		// published beside it and taken when the message is acked.
		if round == 0 {
			if err := declareMarkerSlots(b.URL, tasks); err != nil {
				return err
			}
		}
		if d, err = rawLoop(ctx, b.URL, tasks, publishers, claimers, lockMarkers); err != nil {
			return fmt.Errorf("raw loop with markers: %w", err)
		}
		rawLocked = append(rawLocked, rate(d))
		// The ceiling of a lock kept outside the broker: the raw loop
		// plus the least such a lock costs, an HTTP round trip to a lock
		// server on loopback to take the key before the publish and one
		// to free it before the ack.
		if d, err = rawLoop(ctx, b.URL, tasks, publishers, claimers, lockHTTP); err != nil {
			return fmt.Errorf("raw loop with an HTTP lock: %w", err)
		}
		rawHTTP = append(rawHTTP, rate(d))
		// Without the dedupe lock, for the record: it shows what the
		// locks cost.
		if d, err = turtlesLoop(ctx, b.URL, amqp.Config{Prefix: "bench-nodedupe", NoDedupe: true}, tasks, publishers, claimers); err != nil {
			return err
		}
		noDedupe = append(noDedupe, rate(d))
		// The default: a lock queue per task key. A prefix per round, so
		// that every round creates its lock queues, as new tasks do,
		// rather than finding those of the round before.
		if d, err = turtlesLoop(ctx, b.URL, amqp.Config{Prefix: fmt.Sprintf("bench-perkey%d", round)}, tasks, publishers, claimers); err != nil {
			return err
		}
		perKey = append(perKey, rate(d))
		// Locks in 4096 shared slots: a transient marker per task, a
		// look into the slot at claim, its removal with the ack.
		if d, err = turtlesLoop(ctx, b.URL, amqp.Config{Prefix: "bench", LockSlots: lockSlots}, tasks, publishers, claimers); err != nil {
			return err
		}
		slots = append(slots, rate(d))
	}
	fmt.Printf("tasks/s per round: raw amqp091-go %.0f; raw with a lock marker per message %.0f; turtles queue/amqp with LockSlots %d %.0f; default (a lock queue per key) %.0f; NoDedupe %.0f\n",
		raw, rawLocked, lockSlots, slots, perKey, noDedupe)
	r := medianRate(raw)
	fmt.Printf("ceiling of a broker-side lock: raw with markers %.0f (ratio %.2f)\n", medianRate(rawLocked), medianRate(rawLocked)/r)
	fmt.Printf("ceiling of a lock outside the broker: raw with an HTTP lock %.0f (ratio %.2f) %.0f\n", medianRate(rawHTTP), medianRate(rawHTTP)/r, rawHTTP)
	fmt.Printf("medians: raw %.0f; LockSlots %d %.0f (ratio %.2f); default %.0f (ratio %.2f); NoDedupe %.0f (ratio %.2f)\n",
		r, lockSlots, medianRate(slots), medianRate(slots)/r, medianRate(perKey), medianRate(perKey)/r, medianRate(noDedupe), medianRate(noDedupe)/r)
	// The result is what a user gets: the default, exact dedupe.
	result("queue-amqp", fmt.Sprintf("%.2f", medianRate(perKey)/r), "ratio", ">= 0.8")
	return nil
}

func medianRate(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func turtlesLoop(ctx context.Context, url string, cfg amqp.Config, n, publishers, claimers int) (time.Duration, error) {
	cfg.URL = url
	cfg.Options = queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: 20 * time.Millisecond, Clock: clockwork.NewRealClock()}
	cfg.ParkAfter = 5 * time.Minute
	q, err := amqp.Open(cfg)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	// The lock slots are topology, like the raw loop's queue: created
	// before the clock starts (a fresh broker creates them once).
	if err := q.DeclareLocks(ctx); err != nil {
		return 0, err
	}
	elapsed, err := pumpTasks(ctx, q, n, publishers, claimers)
	if err != nil {
		return 0, fmt.Errorf("turtles (%s): %w", cfg.Prefix, err)
	}
	return elapsed, nil
}

// markerSlot is the lock queue of raw message i: one per message, so
// that no two messages share one.
func markerSlot(i int) string { return fmt.Sprintf("raw.bench.lock.%d", i) }

// declareMarkerSlots creates the lock queues of n raw messages, before
// any clock starts: like turtles' lock slots, they are topology.
func declareMarkerSlots(url string, n int) error {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	for i := range n {
		if _, err := ch.QueueDeclare(markerSlot(i), true, false, false, false, amqp091.Table{
			"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
			return err
		}
	}
	return nil
}

// rawLoop is the baseline: publishers publish persistent messages with
// confirms to a durable queue; consumers with prefetch 1 ack each. With
// markers, each publish also publishes a transient marker to the
// message's own lock queue (confirmed together), and each consumer takes
// the marker (basic.get and ack) before acking the message: the least
// work a lock kept in the broker adds. With lockHTTP, each publisher
// takes the message's key on a lock server over HTTP first, and each
// consumer frees it before the ack: the least a lock outside the broker
// adds.
func rawLoop(ctx context.Context, url string, n, publishers, claimers int, lock rawLock) (time.Duration, error) {
	r := rawRun{n: n, markers: lock == lockMarkers}
	if lock == lockHTTP {
		l, err := startHTTPLocks()
		if err != nil {
			return 0, err
		}
		defer l.close()
		r.locks = l
	}
	conn, err := amqp091.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	setup, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	if _, err := setup.QueueDeclare(rawQueue, true, false, false, false, nil); err != nil {
		return 0, err
	}
	ctx, r.cancel = context.WithCancelCause(ctx)
	defer r.cancel(nil)
	var wg sync.WaitGroup
	start := time.Now()
	for p := range publishers {
		ch, err := conn.Channel()
		if err != nil {
			return 0, err
		}
		if err := ch.Confirm(false); err != nil {
			return 0, err
		}
		wg.Go(func() {
			for i := p; i < n; i += publishers {
				if err := r.publish(ctx, ch, i); err != nil {
					r.cancel(err)
					return
				}
			}
		})
	}
	for range claimers {
		ch, err := conn.Channel()
		if err != nil {
			return 0, err
		}
		if err := ch.Qos(1, 0, false); err != nil {
			return 0, err
		}
		msgs, err := ch.Consume(rawQueue, "", false, false, false, false, nil)
		if err != nil {
			return 0, err
		}
		wg.Go(func() { r.claim(ctx, ch, msgs) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	return elapsed, nil
}

// rawQueue is the raw loop's work queue.
const rawQueue = "raw.bench"

// rawRun is one run of the raw loop: n messages, with the lock of its kind.
type rawRun struct {
	n       int
	markers bool       // a marker per message, in its own lock queue
	locks   *httpLocks // an HTTP lock server; nil for none
	acked   atomic.Int64
	cancel  context.CancelCauseFunc
}

// publish sends message i with its lock, and waits for the confirms.
func (r *rawRun) publish(ctx context.Context, ch *amqp091.Channel, i int) error {
	body := []byte(strconv.Itoa(i))
	// The marker goes first: the broker routes a channel's publishes in
	// order, so it is there when the message is.
	var mc, dc *amqp091.DeferredConfirmation
	var err error
	if r.locks != nil {
		err = r.locks.acquire(ctx, i)
	}
	if r.markers {
		mc, err = ch.PublishWithDeferredConfirmWithContext(ctx, "", markerSlot(i), false, false, amqp091.Publishing{
			DeliveryMode: amqp091.Transient, Body: body})
	}
	if err == nil {
		dc, err = ch.PublishWithDeferredConfirmWithContext(ctx, "", rawQueue, false, false, amqp091.Publishing{
			DeliveryMode: amqp091.Persistent, ContentType: "application/json", Body: body})
	}
	for _, c := range []*amqp091.DeferredConfirmation{mc, dc} {
		if c == nil || err != nil {
			continue
		}
		var ok bool
		ok, err = c.WaitContext(ctx)
		if err == nil && !ok {
			err = errors.New("nacked")
		}
	}
	return err
}

// claim frees each message's lock and acks it, until ctx ends; the last
// ack of the run ends it.
func (r *rawRun) claim(ctx context.Context, ch *amqp091.Channel, msgs <-chan amqp091.Delivery) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			var err error
			switch {
			case r.markers:
				err = takeMarker(ch, markerSlot(atoi(m.Body)))
			case r.locks != nil:
				err = r.locks.release(ctx, atoi(m.Body))
			}
			if err == nil {
				err = m.Ack(false)
			}
			if err != nil {
				r.cancel(err)
				return
			}
			if r.acked.Add(1) == int64(r.n) {
				r.cancel(nil)
			}
		}
	}
}

func atoi(b []byte) int {
	i, _ := strconv.Atoi(string(b))
	return i
}

// takeMarker removes the marker from slot; it was routed before its
// message, so it is there.
func takeMarker(ch *amqp091.Channel, slot string) error {
	m, ok, err := ch.Get(slot, false)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no marker in %s", slot)
	}
	return m.Ack(false)
}
