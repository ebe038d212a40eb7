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

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/postgres"
	"github.com/turtles-ci/turtles/state/postgres/pgtest"
)

func init() { register("queue-amqp", queueAMQP) }

// queueAMQP measures no-op task dispatch through turtles over RabbitMQ
// with exact dedupe of task keys in PostgreSQL (queue.Dedupe: reserve the
// key, publish with confirm, claim with basic.get, ack in a transaction,
// free the key as the recorder does on the final event, beside the
// loop) against a raw
// amqp091-go loop with the same protocol (persistent messages published
// with confirms through a direct exchange to a durable queue with the
// same arguments, basic.get, ack in a transaction), on one private broker
// and one private PostgreSQL in the same run. Rounds interleave the
// loops; the medians are compared. It also prints, for information, the
// backend without dedupe and a plain push-consumer raw loop.
func queueAMQP(ctx context.Context) error {
	const (
		tasks      = 2000
		rounds     = 3
		publishers = 4
		claimers   = 8
	)
	b, err := amqptest.Start(amqptest.Options{})
	if err != nil {
		return err
	}
	defer b.Stop()
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return err
	}
	defer pg.Stop()
	_, url, err := pg.CreateDatabase(ctx, "")
	if err != nil {
		return err
	}
	// A connection per publisher and freer, as a hook sized for its
	// concurrency would have (pgx defaults to max(4, cores)).
	db, err := postgres.Open(ctx, url+"?pool_max_conns=16", state.Options{})
	if err != nil {
		return err
	}
	defer db.Close()

	var raw, push, backend, deduped []float64
	rate := func(d time.Duration) float64 { return tasks / d.Seconds() }
	for round := range rounds {
		d, err := rawGetLoop(ctx, b.URL, fmt.Sprintf("raw%d", round), tasks, publishers, claimers)
		if err != nil {
			return fmt.Errorf("raw loop: %w", err)
		}
		raw = append(raw, rate(d))
		if d, err = rawPushLoop(ctx, b.URL, tasks, publishers, claimers); err != nil {
			return fmt.Errorf("raw push loop: %w", err)
		}
		push = append(push, rate(d))
		if d, err = turtlesLoop(ctx, b.URL, fmt.Sprintf("bench-backend%d", round), nil, tasks, publishers, claimers); err != nil {
			return err
		}
		backend = append(backend, rate(d))
		if d, err = turtlesLoop(ctx, b.URL, fmt.Sprintf("bench-dedupe%d", round), db, tasks, publishers, claimers); err != nil {
			return err
		}
		deduped = append(deduped, rate(d))
	}
	fmt.Printf("tasks/s per round: raw (basic.get, tx ack) %.0f; raw push consumer %.0f; turtles without dedupe %.0f; turtles with dedupe in PostgreSQL %.0f\n",
		raw, push, backend, deduped)
	r := medianRate(raw)
	fmt.Printf("medians: raw %.0f; push %.0f; turtles without dedupe %.0f (ratio %.2f); with dedupe %.0f (ratio %.2f; %.2f of the push loop)\n",
		r, medianRate(push), medianRate(backend), medianRate(backend)/r, medianRate(deduped), medianRate(deduped)/r, medianRate(deduped)/medianRate(push))
	result("queue-amqp", fmt.Sprintf("%.2f", medianRate(deduped)/r), "ratio", ">= 0.8")
	return nil
}

func medianRate(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// turtlesLoop pumps n tasks through queue/amqp, deduped in db unless it
// is nil.
func turtlesLoop(ctx context.Context, url, prefix string, db state.DB, n, publishers, claimers int) (time.Duration, error) {
	aq, err := amqp.Open(amqp.Config{URL: url, Prefix: prefix, ParkAfter: 5 * time.Minute,
		Options: queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: 20 * time.Millisecond, Clock: clockwork.NewRealClock()}})
	if err != nil {
		return 0, err
	}
	defer aq.Close()
	if db == nil {
		elapsed, err := pumpTasks(ctx, aq, n, publishers, claimers, nil)
		if err != nil {
			return 0, fmt.Errorf("turtles (%s): %w", prefix, err)
		}
		return elapsed, nil
	}
	// The keys are freed as the recorder frees them, off the bots' path:
	// by freers beside the loop, on the final events (here: the acked
	// tasks). The time counts until the last key is free.
	q := queue.Dedupe(aq, state.Reserver{DB: db}, 5*time.Second)
	ended := make(chan turtles.Task, n)
	errs := make(chan error, freers)
	var wg sync.WaitGroup
	for range freers {
		wg.Go(func() {
			for t := range ended {
				freed, err := db.Free(ctx, t.Key(), t.Token)
				if err == nil && !freed {
					err = fmt.Errorf("key %s was not held by its token", t.Key())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	start := time.Now()
	_, err = pumpTasks(ctx, q, n, publishers, claimers, func(_ context.Context, t turtles.Task) error {
		ended <- t
		return nil
	})
	close(ended)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err == nil {
		err = <-errs
	}
	if err != nil {
		return 0, fmt.Errorf("turtles (%s): %w", prefix, err)
	}
	return elapsed, nil
}

// freers is how many goroutines free keys in the dedupe loop: a
// reporter's recorder frees one event at a time; two stand for two
// reporters, or the recorder's pipelining.
const freers = 2

// rawGetLoop is the baseline, turtles' protocol without turtles: each
// publisher publishes persistent messages with confirms to a direct
// exchange bound to a durable queue with x-max-priority as turtles'
// work queues have; each claimer takes one message with basic.get on a
// transactional channel and acks it with a commit. A claimer that finds
// the queue empty waits for a publish in this process, or 20 ms, as a
// turtles claim does. prefix names the round's exchange and queue.
func rawGetLoop(ctx context.Context, url, prefix string, n, publishers, claimers int) (time.Duration, error) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	setup, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	exchange, name := prefix+".work", prefix+".work.bench"
	if err := setup.ExchangeDeclare(exchange, amqp091.ExchangeDirect, true, false, false, false, nil); err != nil {
		return 0, err
	}
	if _, err := setup.QueueDeclare(name, true, false, false, false, amqp091.Table{"x-max-priority": int32(19)}); err != nil {
		return 0, err
	}
	if err := setup.QueueBind(name, "bench", exchange, false, nil); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		acked atomic.Int64
		wake  = make(chan struct{}, claimers)
	)
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
				body := []byte(strconv.Itoa(i))
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "bench", false, false, amqp091.Publishing{
					DeliveryMode: amqp091.Persistent, ContentType: "application/json",
					Headers: amqp091.Table{"x-turtles-deliveries": int32(0)}, Body: body})
				if err == nil {
					var ok bool
					if ok, err = dc.WaitContext(ctx); err == nil && !ok {
						err = errors.New("nacked")
					}
				}
				if err != nil {
					cancel(err)
					return
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		})
	}
	for range claimers {
		ch, err := conn.Channel()
		if err != nil {
			return 0, err
		}
		if err := ch.Tx(); err != nil {
			return 0, err
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				m, ok, err := ch.Get(name, false)
				if err == nil && !ok {
					select {
					case <-ctx.Done():
					case <-wake:
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				if err == nil {
					err = ch.Ack(m.DeliveryTag, false)
				}
				if err == nil {
					err = ch.TxCommit()
				}
				if err != nil {
					cancel(err)
					return
				}
				if acked.Add(1) == int64(n) {
					cancel(nil)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	return elapsed, nil
}

// rawPushLoop is the plain loop of before, for information: publishers
// publish persistent messages with confirms to a durable queue;
// consumers with prefetch 1 ack each.
func rawPushLoop(ctx context.Context, url string, n, publishers, claimers int) (time.Duration, error) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	setup, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	const name = "raw.bench"
	if _, err := setup.QueueDeclare(name, true, false, false, false, nil); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		acked atomic.Int64
	)
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
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", name, false, false, amqp091.Publishing{
					DeliveryMode: amqp091.Persistent, ContentType: "application/json", Body: []byte(strconv.Itoa(i))})
				if err == nil {
					var ok bool
					if ok, err = dc.WaitContext(ctx); err == nil && !ok {
						err = errors.New("nacked")
					}
				}
				if err != nil {
					cancel(err)
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
		msgs, err := ch.Consume(name, "", false, false, false, false, nil)
		if err != nil {
			return 0, err
		}
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-msgs:
					if err := m.Ack(false); err != nil {
						cancel(err)
						return
					}
					if acked.Add(1) == int64(n) {
						cancel(nil)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	return elapsed, nil
}
