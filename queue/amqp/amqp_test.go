package amqp_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

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

// parkAfter is the tests' Config.ParkAfter where they do not test
// parking: past any test, below the broker's consumer timeout.
const parkAfter = 50 * time.Second

func TestContract(t *testing.T) {
	queuetest.Run(t, queuetest.Backend[*amqp.Queue]{
		Storage: func(t *testing.T) func(t *testing.T, opts queue.Options) *amqp.Queue {
			prefix := freshPrefix(t)
			return func(t *testing.T, opts queue.Options) *amqp.Queue {
				q, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: prefix, Options: opts, ParkAfter: parkAfter})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Cleanup(func() { q.Close() })
				return q
			}
		},
		PublishRaw: (*amqp.Queue).PublishRaw,
	})
}

// Open refuses a configuration that cmd/turtles did not fill in, naming
// the field, before it dials.
func TestOpenRequiresConfig(t *testing.T) {
	good := amqp.Config{URL: broker.URL, Prefix: freshPrefix(t), ParkAfter: parkAfter, Options: realOpts()}
	tests := []struct {
		name   string
		mutate func(*amqp.Config)
		want   string
	}{
		{"no URL", func(c *amqp.Config) { c.URL = "" }, "URL"},
		{"no prefix", func(c *amqp.Config) { c.Prefix = "" }, "Prefix"},
		{"no park after", func(c *amqp.Config) { c.ParkAfter = 0 }, "ParkAfter"},
		{"zero options", func(c *amqp.Config) { c.Options = queue.Options{} }, "Lease"},
		{"no clock", func(c *amqp.Config) { c.Options.Clock = nil }, "Clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			q, err := amqp.Open(cfg)
			if err == nil {
				q.Close()
				t.Fatalf("Open succeeded, want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// realOpts are queue options on real time, for the tests of this package
// that are about the broker's own timing.
func realOpts() queue.Options {
	return queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: 20 * time.Millisecond, Clock: clockwork.NewRealClock()}
}
