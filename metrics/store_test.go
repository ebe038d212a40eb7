package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/storetest"
)

// TestStoreContract: the counted store is a store like any other.
func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		d, err := store.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		st, err := Store(d, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// composer is a store that composes, as S3 does, and cannot create.
type composer struct{ store.Store }

func (composer) Compose(context.Context, string, []store.Part, string) error {
	return errors.New("no part copy here")
}

func TestStoreKeepsOptionalInterfaces(t *testing.T) {
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name                  string
		st                    store.Store
		creator, composerWant bool
	}{
		{"dir", d, true, false},
		{"composer", composer{struct{ store.Store }{d}}, false, true},
		{"plain", struct{ store.Store }{d}, false, false},
	} {
		st, err := Store(tt.st, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		_, cr := st.(store.Creator)
		_, co := st.(store.Composer)
		if cr != tt.creator || co != tt.composerWant {
			t.Errorf("%s: counted store is Creator %v, Composer %v; want %v, %v", tt.name, cr, co, tt.creator, tt.composerWant)
		}
	}
}

func TestStoreCountsFailures(t *testing.T) {
	ctx := t.Context()
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	st, err := Store(composer{d}, reg)
	if err != nil {
		t.Fatal(err)
	}
	st.Put(ctx, "a/log", strings.NewReader("x"), "text/plain")
	if err := st.PutNew(ctx, "a/log", strings.NewReader("x"), "text/plain"); !errors.Is(err, store.ErrExist) {
		t.Fatalf("PutNew of a taken key = %v", err)
	}
	if _, _, err := st.Get(ctx, "a/missing"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Get of a missing key = %v", err)
	}
	if err := st.Put(ctx, "../escape", strings.NewReader("x"), "text/plain"); err == nil {
		t.Fatal("Put of a bad key succeeded")
	}
	if err := st.(store.Composer).Compose(ctx, "a/b", nil, ""); err == nil {
		t.Fatal("Compose succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	st.List(cancelled, "a/")
	const want = `
# HELP turtles_store_errors_total Operations on the log and artifact store that failed, by operation (a missing key is no failure).
# TYPE turtles_store_errors_total counter
turtles_store_errors_total{op="compose"} 1
turtles_store_errors_total{op="put"} 1
# HELP turtles_store_operations_total Operations on the log and artifact store, by operation.
# TYPE turtles_store_operations_total counter
turtles_store_operations_total{op="compose"} 1
turtles_store_operations_total{op="get"} 1
turtles_store_operations_total{op="list"} 1
turtles_store_operations_total{op="put"} 2
turtles_store_operations_total{op="put_new"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
