package amqp_test

import (
	"flag"
	"fmt"
	"os"
	"sync"
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
	flag.Parse()
	if testing.Short() {
		fmt.Println("queue/amqp: -short starts no broker; every test here needs one")
		os.Exit(0)
	}
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

func openEvents(t *testing.T, prefix string) *amqp.Events {
	e, err := amqp.OpenEvents(amqp.Config{URL: broker.URL, Prefix: prefix})
	if err != nil {
		t.Fatalf("OpenEvents: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestContract(t *testing.T) {
	var (
		mu       sync.Mutex
		prefixOf = map[queue.Queue]string{}
	)
	queuetest.Run(t, queuetest.Backend{
		Queue: func(t *testing.T) queuetest.Opener {
			prefix := freshPrefix(t)
			return func(t *testing.T, opts queue.Options) queue.Queue {
				q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix, Options: opts})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Cleanup(func() { q.Close() })
				mu.Lock()
				prefixOf[q] = prefix
				mu.Unlock()
				return q
			}
		},
		EventsOf: func(t *testing.T, q queue.Queue) queue.Events {
			mu.Lock()
			defer mu.Unlock()
			return openEvents(t, prefixOf[q])
		},
		Events: func(t *testing.T) queuetest.EventsOpener {
			prefix := freshPrefix(t)
			return func(t *testing.T) queue.Events { return openEvents(t, prefix) }
		},
	})
}
