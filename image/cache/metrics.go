package cache

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus collectors.
type metrics struct {
	hits, misses prometheus.Counter
	bytes        *prometheus.CounterVec
	corrupt      *prometheus.CounterVec
	duration     prometheus.Histogram
	pruned       prometheus.Counter
	prunedBytes  prometheus.Counter
	served       *prometheus.CounterVec
	servedBytes  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turtles_image_cache_hits_total",
			Help: "Images asked for that the cache had complete.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turtles_image_cache_misses_total",
			Help: "Images asked for that the cache had to fetch.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_image_fetch_bytes_total",
			Help: "Bytes of image files fetched, by source.",
		}, []string{"source"}),
		corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_image_fetch_corrupt_total",
			Help: "Files a source sent whose sha256 did not match, by source.",
		}, []string{"source"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "turtles_image_fetch_duration_seconds",
			Help:    "Wall time of successful image fetches.",
			Buckets: prometheus.ExponentialBuckets(0.1, 3, 10), // 0.1s .. 33min
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turtles_image_prune_removed_total",
			Help: "Images removed by prune.",
		}),
		prunedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turtles_image_prune_bytes_total",
			Help: "Bytes freed by prune.",
		}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_image_serve_requests_total",
			Help: "Requests to the image server, by status code.",
		}, []string{"code"}),
		servedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "turtles_image_serve_bytes_total",
			Help: "Bytes of image files the server was asked for (body sizes of GETs).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, f := range []func() error{
		func() error { m.hits, err = register(reg, m.hits); return err },
		func() error { m.misses, err = register(reg, m.misses); return err },
		func() error { m.bytes, err = register(reg, m.bytes); return err },
		func() error { m.corrupt, err = register(reg, m.corrupt); return err },
		func() error { m.duration, err = register(reg, m.duration); return err },
		func() error { m.pruned, err = register(reg, m.pruned); return err },
		func() error { m.prunedBytes, err = register(reg, m.prunedBytes); return err },
		func() error { m.served, err = register(reg, m.served); return err },
		func() error { m.servedBytes, err = register(reg, m.servedBytes); return err },
	} {
		if err := f(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (several caches in one process share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
