package statetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/state"
)

// The webhook delivery log and task-key dedupe.

func testDeliveries(t *testing.T, o opener) {
	ctx := t.Context()
	a, b := o.db(t), o.db(t)
	steps := []struct {
		name     string
		db       state.DB
		call     string // "first" or "seen"
		id       string
		want     bool
		wantKind error
	}{
		{"unknown is not seen", a, "seen", "d1", false, nil},
		{"first time is new", a, "first", "d1", true, nil},
		{"seen after", a, "seen", "d1", true, nil},
		{"seen from another handle", b, "seen", "d1", true, nil},
		{"again from another handle is old", b, "first", "d1", false, nil},
		{"a body hash is just another key", b, "first", "sha256:0a1b", true, nil},
		{"others are untouched", a, "seen", "d2", false, nil},
		{"empty id", a, "first", "", false, state.ErrInvalid},
	}
	for _, s := range steps {
		var got bool
		var err error
		if s.call == "first" {
			got, err = s.db.FirstDelivery(ctx, s.id)
		} else {
			got, err = s.db.Seen(ctx, s.id)
		}
		if !errors.Is(err, s.wantKind) { // errors.Is(err, nil) is err == nil
			t.Fatalf("%s: %s(%q) error %v, want %v", s.name, s.call, s.id, err, s.wantKind)
		}
		if got != s.want {
			t.Errorf("%s: %s(%q) = %v, want %v", s.name, s.call, s.id, got, s.want)
		}
	}
}

func testDeliveriesPrune(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	mustFirst := func(id string) {
		t.Helper()
		if ok, err := db.FirstDelivery(ctx, id); err != nil || !ok {
			t.Fatalf("FirstDelivery(%s) = %v, %v; want new", id, ok, err)
		}
	}
	mustFirst("old")
	clock.Advance(2 * time.Hour)
	mustFirst("new")
	p := state.Prune{Deliveries: t0.Add(time.Hour), DryRun: true}
	if got, err := db.Prune(ctx, p); err != nil || got != (state.Pruned{Deliveries: 1}) {
		t.Fatalf("dry run Prune = %+v, %v; want 1 delivery", got, err)
	}
	if seen, _ := db.Seen(ctx, "old"); !seen {
		t.Fatal("a dry run forgot a delivery")
	}
	p.DryRun = false
	if got, err := db.Prune(ctx, p); err != nil || got != (state.Pruned{Deliveries: 1}) {
		t.Fatalf("Prune = %+v, %v; want 1 delivery", got, err)
	}
	for id, want := range map[string]bool{"old": false, "new": true} {
		if seen, err := db.Seen(ctx, id); err != nil || seen != want {
			t.Errorf("after pruning, Seen(%s) = %v, %v; want %v", id, seen, err, want)
		}
	}
	mustFirst("old") // forgotten: new again
}

// testDeliveriesRace delivers each webhook to 16 callers on 4 handles at
// once: exactly one of them handles it.
func testDeliveriesRace(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 4, state.Options{})
	for round := range 5 {
		id := fmt.Sprintf("delivery-%d", round)
		var news atomic.Int32
		race(16, func(i int) {
			ok, err := dbs[i%len(dbs)].FirstDelivery(ctx, id)
			if err != nil {
				t.Errorf("FirstDelivery: %v", err)
			}
			if ok {
				news.Add(1)
			}
		})
		if n := news.Load(); n != 1 {
			t.Errorf("%s: %d callers got a new delivery, want exactly 1", id, n)
		}
	}
}

func testReserve(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	const key = "octo/hello@0123:unit"
	first := state.Reservation{Key: key, Token: "hook-1", Since: t0}
	reserve := func(db state.DB, token string, wantOK bool, want state.Reservation) {
		t.Helper()
		ok, holder, err := db.Reserve(ctx, key, token)
		if err != nil {
			t.Fatalf("Reserve(%s): %v", token, err)
		}
		if ok != wantOK {
			t.Errorf("Reserve(%s) ok = %v, want %v", token, ok, wantOK)
		}
		if diff := cmp.Diff(want, holder); diff != "" {
			t.Errorf("Reserve(%s) holder (-want +got):\n%s", token, diff)
		}
	}
	live := func(want state.Reservation, wantLive bool) {
		t.Helper()
		r, isLive, err := b.Live(ctx, key)
		if err != nil || isLive != wantLive {
			t.Fatalf("Live = %+v, %v, %v; want live %v", r, isLive, err, wantLive)
		}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("Live (-want +got):\n%s", diff)
		}
	}
	free := func(token string, want bool) {
		t.Helper()
		if freed, err := a.Free(ctx, key, token); err != nil || freed != want {
			t.Fatalf("Free(%s) = %v, %v; want %v", token, freed, err, want)
		}
	}

	live(state.Reservation{}, false)
	reserve(a, "hook-1", true, first)
	clock.Advance(time.Second)
	reserve(a, "hook-1", true, first) // a retry of its own: still held since t0
	reserve(b, "hook-2", false, first)
	live(first, true)
	free("hook-2", false) // not the holder's
	live(first, true)
	if r, isLive, _ := a.Live(ctx, key+"-other"); isLive {
		t.Errorf("another key is live: %+v", r)
	}
	free("hook-1", true)
	live(state.Reservation{}, false)
	free("hook-1", false) // a late duplicate of the final event
	reserve(b, "hook-2", true, state.Reservation{Key: key, Token: "hook-2", Since: t0.Add(time.Second)})
	free("hook-1", false) // must not free hook-2's
	live(state.Reservation{Key: key, Token: "hook-2", Since: t0.Add(time.Second)}, true)
}

func testReserveInvalid(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	for _, c := range []struct{ key, token string }{{"", "t"}, {"k", ""}} {
		if _, _, err := db.Reserve(ctx, c.key, c.token); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("Reserve(%q, %q) = %v, want ErrInvalid", c.key, c.token, err)
		}
		if _, err := db.Free(ctx, c.key, c.token); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("Free(%q, %q) = %v, want ErrInvalid", c.key, c.token, err)
		}
	}
}

func testReservations(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	var want []state.Reservation
	for i, key := range []string{"c", "a", "b"} { // since t0, t0+1m, t0+2m
		if ok, _, err := db.Reserve(ctx, key, "tok-"+key); err != nil || !ok {
			t.Fatalf("Reserve(%s) = %v, %v", key, ok, err)
		}
		want = append(want, state.Reservation{Key: key, Token: "tok-" + key, Since: t0.Add(time.Duration(i) * time.Minute)})
		clock.Advance(time.Minute)
	}
	tests := []struct {
		name   string
		before time.Time
		limit  int
		want   []state.Reservation
	}{
		{"none that old", t0, 0, []state.Reservation{}},
		{"the two oldest", t0.Add(90 * time.Second), 0, want[:2]},
		{"all", t0.Add(time.Hour), 0, want},
		{"limited", t0.Add(time.Hour), 1, want[:1]},
	}
	for _, tt := range tests {
		got, err := db.Reservations(ctx, tt.before, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Reservations (-want +got):\n%s", tt.name, diff)
		}
	}
}

// testReserveRace races 16 hooks on 4 handles for each of 10 keys, all at
// once: exactly one wins each key, and every loser names the winner.
func testReserveRace(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 4, state.Options{})
	const keys, callers = 10, 16
	type result struct {
		ok     bool
		holder string
	}
	results := make([][]result, keys)
	for k := range results {
		results[k] = make([]result, callers)
	}
	race(keys*callers, func(i int) {
		k, c := i%keys, i/keys
		ok, holder, err := dbs[i%len(dbs)].Reserve(ctx, fmt.Sprintf("key-%d", k), fmt.Sprintf("token-%d", c))
		if err != nil {
			t.Errorf("Reserve: %v", err)
			return
		}
		results[k][c] = result{ok, holder.Token}
	})
	for k, rs := range results {
		var winners []string
		for c, r := range rs {
			if r.ok {
				winners = append(winners, fmt.Sprintf("token-%d", c))
			}
		}
		if len(winners) != 1 {
			t.Errorf("key-%d: winners %v, want exactly one", k, winners)
			continue
		}
		for c, r := range rs {
			if r.holder != winners[0] {
				t.Errorf("key-%d: caller token-%d was told the holder is %q, want %q", k, c, r.holder, winners[0])
			}
		}
		if r, live, err := dbs[0].Live(ctx, fmt.Sprintf("key-%d", k)); err != nil || !live || r.Token != winners[0] {
			t.Errorf("key-%d: Live = %+v, %v, %v; want held by %s", k, r, live, err, winners[0])
		}
	}
}

// testReserveChurn has 8 callers on 4 handles take turns on one key, each
// reserving, holding and freeing it 10 times: never two hold it at once
// (while one holds it, another handle sees it as the holder), and every
// turn is taken.
func testReserveChurn(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 4, state.Options{})
	const key = "churn"
	var holders, turns atomic.Int32
	var mu sync.Mutex
	var overlaps []string
	race(8, func(i int) {
		db, token := dbs[i%len(dbs)], fmt.Sprintf("caller-%d", i)
		for turn := 0; turn < 10; {
			ok, _, err := db.Reserve(ctx, key, token)
			if err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			if !ok {
				continue
			}
			n := holders.Add(1)
			r, live, err := dbs[(i+1)%len(dbs)].Live(ctx, key)
			if n != 1 || err != nil || !live || r.Token != token {
				mu.Lock()
				overlaps = append(overlaps, fmt.Sprintf("%s holds the key with %d others; another handle sees %+v, %v, %v", token, n-1, r, live, err))
				mu.Unlock()
			}
			holders.Add(-1)
			if freed, err := db.Free(ctx, key, token); err != nil || !freed {
				t.Errorf("Free by the holder = %v, %v", freed, err)
				return
			}
			turn++
			turns.Add(1)
		}
	})
	if len(overlaps) > 0 {
		t.Errorf("the key was held twice at once:\n%v", overlaps)
	}
	if n := turns.Load(); n != 80 {
		t.Errorf("%d turns taken, want 80", n)
	}
}

// testSettle: a reservation is settled once its task is published, by
// its holder only; Unsettled lists those left unsettled, oldest first.
func testSettle(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	for i, key := range []string{"k1", "k2", "k3"} {
		if ok, holder, err := a.Reserve(ctx, key, "tok-"+key); err != nil || !ok || holder.Settled {
			t.Fatalf("Reserve(%s) = %v, %+v, %v; want ok and unsettled", key, ok, holder, err)
		}
		clock.Advance(time.Duration(i+1) * time.Second)
	}
	unsettled := func(step string, want ...string) {
		t.Helper()
		rs, err := b.Unsettled(ctx, clock.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.Key)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: Unsettled (-want +got):\n%s", step, diff)
		}
	}
	unsettled("none settled", "k1", "k2", "k3")
	if err := b.Settle(ctx, "k2", "tok-k1"); err != nil { // not the holder
		t.Fatal(err)
	}
	unsettled("settled by another token", "k1", "k2", "k3")
	if err := b.Settle(ctx, "k2", "tok-k2"); err != nil {
		t.Fatal(err)
	}
	unsettled("k2 settled", "k1", "k3")
	if ok, holder, err := a.Reserve(ctx, "k2", "other"); err != nil || ok || !holder.Settled || holder.Token != "tok-k2" {
		t.Errorf("Reserve of a settled key = %v, %+v, %v; want its settled holder", ok, holder, err)
	}
	if r, live, err := a.Live(ctx, "k2"); err != nil || !live || !r.Settled {
		t.Errorf("Live(k2) = %+v, %v, %v; want settled", r, live, err)
	}
	if rs, err := b.Unsettled(ctx, t0.Add(time.Second), 0); err != nil || len(rs) != 1 || rs[0].Key != "k1" {
		t.Errorf("Unsettled before t0+1s = %+v, %v; want k1 only", rs, err)
	}
	if all, err := b.Reservations(ctx, clock.Now(), 0); err != nil || len(all) != 3 || !all[1].Settled {
		t.Errorf("Reservations = %+v, %v; want all three, k2 settled", all, err)
	}
	for _, bad := range []struct{ key, token string }{{"", "t"}, {"k", ""}} {
		if err := a.Settle(ctx, bad.key, bad.token); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("Settle(%q, %q) = %v, want ErrInvalid", bad.key, bad.token, err)
		}
	}
}
