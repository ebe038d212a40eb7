// Package metrics holds what every part that exports Prometheus metrics
// shares (Register), and the metrics no single part owns: tasks' queue
// wait and outcomes read from their events, live bots per pool read from
// the state database's heartbeats, the store's failures, the disk of the
// image cache and the forge's rate limit. docs/monitoring.md lists them
// all, with the alerts of deploy/prometheus built on them.
//
// Anyone may import it but the packages it imports (state, store and
// the domain types).
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg, or returns the collector already
// registered under its name, so that several instances in one process (the
// bots of `turtles serve`, two reporters, caches) share their metrics. It
// fails when the name is taken by a collector of another kind.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}
