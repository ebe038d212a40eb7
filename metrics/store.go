package metrics

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles/store"
)

// storeMetrics count a store's operations and failures by operation.
type storeMetrics struct {
	ops, errs *prometheus.CounterVec
}

// Store returns st counting its operations in turtles_store_operations_total
// and its failures in turtles_store_errors_total, by operation. A missing
// key (store.ErrNotExist), a taken one (store.ErrExist) and a cancelled
// context are answers, not failures. The result implements store.Creator
// and store.Composer exactly when st does, so that what looks for them
// (the bot's live log) finds the same store.
func Store(st store.Store, reg prometheus.Registerer) (store.Store, error) {
	m := storeMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_store_operations_total",
			Help: "Operations on the log and artifact store, by operation.",
		}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_store_errors_total",
			Help: "Operations on the log and artifact store that failed, by operation (a missing key is no failure).",
		}, []string{"op"}),
	}
	var err error
	if m.ops, err = Register(reg, m.ops); err != nil {
		return nil, err
	}
	if m.errs, err = Register(reg, m.errs); err != nil {
		return nil, err
	}
	s := countedStore{st: st, m: m}
	cr, isCreator := st.(store.Creator)
	co, isComposer := st.(store.Composer)
	switch {
	case isCreator && isComposer:
		return struct {
			countedStore
			countedCreator
			countedComposer
		}{s, countedCreator{cr, m}, countedComposer{co, m}}, nil
	case isCreator:
		return struct {
			countedStore
			countedCreator
		}{s, countedCreator{cr, m}}, nil
	case isComposer:
		return struct {
			countedStore
			countedComposer
		}{s, countedComposer{co, m}}, nil
	}
	return s, nil
}

// count counts one operation op that ended with err, and returns err.
func (m storeMetrics) count(op string, err error) error {
	m.ops.WithLabelValues(op).Inc()
	if err != nil && !errors.Is(err, store.ErrNotExist) && !errors.Is(err, store.ErrExist) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		m.errs.WithLabelValues(op).Inc()
	}
	return err
}

type countedStore struct {
	st store.Store
	m  storeMetrics
}

func (s countedStore) Put(ctx context.Context, key string, r io.Reader, contentType string) error {
	return s.m.count("put", s.st.Put(ctx, key, r, contentType))
}

func (s countedStore) PutNew(ctx context.Context, key string, r io.Reader, contentType string) error {
	return s.m.count("put_new", s.st.PutNew(ctx, key, r, contentType))
}

func (s countedStore) Get(ctx context.Context, key string) (io.ReadCloser, store.Info, error) {
	rc, info, err := s.st.Get(ctx, key)
	return rc, info, s.m.count("get", err)
}

func (s countedStore) Stat(ctx context.Context, key string) (store.Info, error) {
	info, err := s.st.Stat(ctx, key)
	return info, s.m.count("stat", err)
}

func (s countedStore) List(ctx context.Context, prefix string) ([]store.Info, error) {
	infos, err := s.st.List(ctx, prefix)
	return infos, s.m.count("list", err)
}

func (s countedStore) Delete(ctx context.Context, key string) error {
	return s.m.count("delete", s.st.Delete(ctx, key))
}

// String is the store's own description, for logs.
func (s countedStore) String() string {
	if str, ok := s.st.(interface{ String() string }); ok {
		return str.String()
	}
	return "store"
}

type countedCreator struct {
	c store.Creator
	m storeMetrics
}

func (c countedCreator) Create(ctx context.Context, key, contentType string) (*os.File, error) {
	f, err := c.c.Create(ctx, key, contentType)
	return f, c.m.count("create", err)
}

type countedComposer struct {
	c store.Composer
	m storeMetrics
}

func (c countedComposer) Compose(ctx context.Context, key string, parts []store.Part, contentType string) error {
	return c.m.count("compose", c.c.Compose(ctx, key, parts, contentType))
}
