package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
		tasks      = 1000
		publishers = 4
		claimers   = 8
	)
	b, err := amqptest.Start(amqptest.Options{})
	if err != nil {
		return err
	}
	defer b.Stop()

	raw, err := rawLoop(ctx, b.URL, tasks, publishers, claimers)
	if err != nil {
		return fmt.Errorf("raw loop: %w", err)
	}
	// Without the dedupe lock first, for the record: it shows what the
	// lock (a queue created and deleted per task) costs.
	noDedupe, err := turtlesLoop(ctx, b.URL, "bench-nodedupe", true, tasks, publishers, claimers)
	if err != nil {
		return err
	}
	elapsed, err := turtlesLoop(ctx, b.URL, "bench", false, tasks, publishers, claimers)
	if err != nil {
		return err
	}
	rate := func(d time.Duration) float64 { return tasks / d.Seconds() }
	fmt.Printf("raw amqp091-go: %.0f tasks/s; turtles queue/amqp: %.0f tasks/s (%.0f tasks/s, ratio %.2f, with NoDedupe)\n",
		rate(raw), rate(elapsed), rate(noDedupe), rate(noDedupe)/rate(raw))
	result("queue-amqp", fmt.Sprintf("%.2f", rate(elapsed)/rate(raw)), "ratio", ">= 0.8")
	return nil
}

func turtlesLoop(ctx context.Context, url, prefix string, noDedupe bool, n, publishers, claimers int) (time.Duration, error) {
	q, err := amqp.Open(amqp.Config{URL: url, Prefix: prefix, NoDedupe: noDedupe,
		Options: queue.Options{Lease: time.Minute, Poll: 20 * time.Millisecond}})
	if err != nil {
		return 0, err
	}
	defer q.Close()
	elapsed, err := pumpTasks(ctx, q, n, publishers, claimers)
	if err != nil {
		return 0, fmt.Errorf("turtles (NoDedupe %v): %w", noDedupe, err)
	}
	return elapsed, nil
}

// rawLoop is the baseline: publishers publish persistent messages with
// confirms to a durable queue; consumers with prefetch 1 ack each.
func rawLoop(ctx context.Context, url string, n, publishers, claimers int) (time.Duration, error) {
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
		acked atomic.Int64
		wg    sync.WaitGroup
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
					DeliveryMode: amqp091.Persistent, ContentType: "application/json", Body: []byte(fmt.Sprintf(`{"i":%d}`, i))})
				if err == nil {
					var ok bool
					ok, err = dc.WaitContext(ctx)
					if err == nil && !ok {
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
