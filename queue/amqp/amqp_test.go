package amqp_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// broker is the private node shared by every test of this binary.
var broker *amqptest.Broker

func TestMain(m *testing.M) {
	b, err := amqptest.Start(amqptest.Options{ConsumerTimeout: time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start broker:", err)
		os.Exit(1)
	}
	broker = b
	code := m.Run()
	b.Stop()
	os.Exit(code)
}

var prefixes atomic.Int64

// freshPrefix separates the tests' topologies on the shared broker.
func freshPrefix(t *testing.T) string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), prefixes.Add(1))
}

func TestContract(t *testing.T) {
	queuetest.Run(t, queuetest.Backend{
		Queue: func(t *testing.T) queuetest.Opener {
			prefix := freshPrefix(t)
			return func(t *testing.T, opts queue.Options) queue.Queue {
				q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix, Options: opts})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Cleanup(func() { q.Close() })
				return q
			}
		},
		Events: func(t *testing.T) queuetest.EventsOpener {
			prefix := freshPrefix(t)
			return func(t *testing.T) queue.Events {
				e, err := amqp.OpenEvents(amqp.Config{URL: broker.URL, Prefix: prefix})
				if err != nil {
					t.Fatalf("OpenEvents: %v", err)
				}
				t.Cleanup(func() { e.Close() })
				return e
			}
		},
	})
}
