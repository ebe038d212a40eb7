package cache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles/metrics"
)

// cacheMetrics are the cache's Prometheus collectors.
type cacheMetrics struct {
	hits, misses prometheus.Counter
	bytes        *prometheus.CounterVec
	corrupt      *prometheus.CounterVec
	duration     prometheus.Histogram
	pruned       prometheus.Counter
	prunedBytes  prometheus.Counter
	served       *prometheus.CounterVec
	servedBytes  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*cacheMetrics, error) {
	m := &cacheMetrics{
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
		func() error { m.hits, err = metrics.Register(reg, m.hits); return err },
		func() error { m.misses, err = metrics.Register(reg, m.misses); return err },
		func() error { m.bytes, err = metrics.Register(reg, m.bytes); return err },
		func() error { m.corrupt, err = metrics.Register(reg, m.corrupt); return err },
		func() error { m.duration, err = metrics.Register(reg, m.duration); return err },
		func() error { m.pruned, err = metrics.Register(reg, m.pruned); return err },
		func() error { m.prunedBytes, err = metrics.Register(reg, m.prunedBytes); return err },
		func() error { m.served, err = metrics.Register(reg, m.served); return err },
		func() error { m.servedBytes, err = metrics.Register(reg, m.servedBytes); return err },
	} {
		if err := f(); err != nil {
			return nil, err
		}
	}
	return m, nil
}
