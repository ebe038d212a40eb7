package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles/metrics"
	"github.com/turtles-ci/turtles/queue"
)

// Monitoring: the bots' heartbeats in the state database and the metrics
// no single part owns (package metrics), wired into every process that
// serves /metrics. deploy/prometheus has the rules and alerts built on
// them, docs/monitoring.md says what each means.

// monitoringOptions are the settings of bots' heartbeats.
func monitoringOptions() []option {
	return []option{
		opt("bot-heartbeat", "how often a bot tells the state database it is alive, with its pool, slots and tasks; the pages and turtles_pool_bots_alive count it dead after 3 missed", dur(func(s *Settings) *time.Duration { return &s.BotHeartbeat })),
		opt("retain-bots", "how long a bot that stopped heart-beating is remembered: the pages show it dead, and its pool stays on /metrics with 0 live bots (so the no-bot alert fires) until then", dur(func(s *Settings) *time.Duration { return &s.RetainBots })),
	}
}

// monitoringDefaults: a heartbeat every 5 s finds a dead bot within 15 s
// (3 missed), for a write of one row per bot every 5 s. A dead bot's pool
// is shown for a day: long enough to be noticed, short enough that a
// pool taken out of service stops alerting by itself.
func monitoringDefaults(s *Settings) {
	s.BotHeartbeat = 5 * time.Second
	s.RetainBots = 24 * time.Hour
}

func (s *Settings) validateMonitoring() error {
	switch {
	case s.BotHeartbeat < 100*time.Millisecond:
		return fmt.Errorf("bot-heartbeat: %s is shorter than 100ms", s.BotHeartbeat)
	case s.RetainBots < 0:
		return fmt.Errorf("retain-bots: negative")
	}
	return nil
}

// registerMonitoring registers the metrics of a process that serves the
// pages and /metrics from the state database (serve, the reporter): live
// bots per pool from their heartbeats, with the pools that have queued
// tasks. A hook, which has the database too, leaves them out, so that
// one scrape of each deployment counts each pool once.
func (sys *system) registerMonitoring() error {
	db, ok := sys.State.GetOK()
	if !ok || !sys.Results.isSet() {
		return nil
	}
	var pools func(ctx context.Context) ([]string, error)
	if q, ok := sys.Queue.GetOK(); ok {
		pools = func(ctx context.Context) ([]string, error) { return queuedPools(ctx, q) }
	}
	_, err := metrics.Register(sys.reg, metrics.NewBots(db, pools, time.Now))
	return err
}

// queuedPools lists the pools with tasks waiting for a bot (ready or
// delayed): such a pool needs a bot, whether one ever heartbeat or not.
func queuedPools(ctx context.Context, q queue.Queue) ([]string, error) {
	stats, err := q.Stats(ctx)
	if err != nil {
		return nil, err
	}
	var pools []string
	for _, st := range stats {
		if (st.State == "ready" || st.State == "delayed") && st.Count > 0 && !slices.Contains(pools, st.Pool) {
			pools = append(pools, st.Pool)
		}
	}
	return pools, nil
}

// forgeHTTPClient is the HTTP client of forge API calls, with the forge's
// rate limit read from every answer (turtles_forge_rate_limit_remaining).
func (sys *system) forgeHTTPClient(forge string) (*http.Client, error) {
	rate, err := metrics.NewForgeRate(forge, sys.reg)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: forgeTimeout, Transport: rate.Transport(nil)}, nil
}

// forgeTimeout bounds one forge API call, as the forge clients' own
// default does.
const forgeTimeout = 30 * time.Second

// registry is the process's Prometheus registry, which also remembers
// the collectors registered, so that what a process exports can be
// listed before any metric has a sample (the tests of the dashboard and
// the rules ask).
type registry struct {
	*prometheus.Registry
	mu         sync.Mutex
	collectors []prometheus.Collector
}

// Register implements prometheus.Registerer.
func (r *registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, c)
	return nil
}

// MustRegister implements prometheus.Registerer.
func (r *registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// descs returns the descriptions of every metric registered.
func (r *registry) descs() []*prometheus.Desc {
	r.mu.Lock()
	cs := slices.Clone(r.collectors)
	r.mu.Unlock()
	ch := make(chan *prometheus.Desc)
	go func() {
		defer close(ch)
		for _, c := range cs {
			c.Describe(ch)
		}
	}()
	var out []*prometheus.Desc
	for d := range ch {
		out = append(out, d)
	}
	return out
}
