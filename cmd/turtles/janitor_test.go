package main

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
)

// TestJanitor: reservations older than the bound are freed, for their own
// token, and unsettled ones (a publish that never ended) older than the
// shorter bound; younger ones, and one made again meanwhile, stay. The
// janitor sweeps at start and then every janitorEvery, on its clock.
func TestJanitor(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), state.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const bound, unsettled = 48 * time.Hour, 5 * time.Minute
	reserve := func(key, token string) {
		t.Helper()
		if ok, _, err := db.Reserve(t.Context(), key, token); err != nil || !ok {
			t.Fatalf("Reserve(%s, %s) = %v, %v", key, token, ok, err)
		}
		if key == "unsettled" {
			return
		}
		if err := db.Settle(t.Context(), key, token); err != nil {
			t.Fatal(err)
		}
	}
	live := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		for _, k := range []string{"old", "young", "again", "unsettled"} {
			r, ok, err := db.Live(t.Context(), k)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				got[k] = r.Token
			}
		}
		return got
	}
	reserve("old", "t-old")
	reserve("again", "t-again-1")
	clock.Advance(time.Hour)
	reserve("young", "t-young")
	reserve("unsettled", "t-unsettled")

	j := janitor{db: db, bound: bound, unsettled: unsettled, clock: clock, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { j.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// The sweep at start frees nothing: all are younger than the bound.
	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got, want := live(), map[string]string{"old": "t-old", "young": "t-young", "again": "t-again-1", "unsettled": "t-unsettled"}; !maps.Equal(got, want) {
		t.Fatalf("after the first sweep: live %v, want %v", got, want)
	}
	// Past the unsettled bound: only the unsettled one is freed.
	for range (unsettled + janitorEvery) / janitorEvery {
		clock.Advance(janitorEvery)
		if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := live(), map[string]string{"old": "t-old", "young": "t-young", "again": "t-again-1"}; !maps.Equal(got, want) {
		t.Fatalf("after the unsettled bound: live %v, want %v", got, want)
	}

	// "again" is freed by its final event and reserved anew by a new run.
	if ok, err := db.Free(t.Context(), "again", "t-again-1"); err != nil || !ok {
		t.Fatalf("Free(again) = %v, %v", ok, err)
	}
	reserve("again", "t-again-2")
	// Past the bound of the first two, not of the third or the new one.
	clock.Advance(bound - time.Hour)
	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got, want := live(), map[string]string{"young": "t-young", "again": "t-again-2"}; !maps.Equal(got, want) {
		t.Errorf("after the bound: live %v, want %v", got, want)
	}
}
