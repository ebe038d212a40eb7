package statetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Finals, approvals and ETags.

// finalEvent is a final event of attempt of context "unit".
func finalEvent(id string, attempt int, class turtles.Class) turtles.Event {
	return turtles.Event{ID: id, Type: turtles.EventFinished, Task: Task("unit", attempt), Bot: "bot-1",
		LogURL: fmt.Sprintf("http://x/tasks/t/%d", attempt), Time: t0.Add(time.Minute),
		Outcome: &turtles.Outcome{Class: class, Reason: "ended " + string(class)}}
}

func testFinals(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	key := Task("unit", 1).Key()
	if _, err := a.LastFinal(ctx, key); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("LastFinal before any = %v, want ErrNotFound", err)
	}
	win := finalEvent("f1", 1, turtles.Success)
	want := state.Final{Key: key, Attempt: 1, Event: win, Recorded: t0}
	steps := []struct {
		name      string
		db        state.DB
		ev        turtles.Event
		wantFirst bool
		want      state.Final
	}{
		{"first", a, win, true, want},
		{"the same event again", b, win, false, want},
		{"another final of the same attempt loses", b, finalEvent("f1-dup", 1, turtles.Failure), false, want},
		{"the next attempt has its own", a, finalEvent("f2", 2, turtles.Failure), true,
			state.Final{Key: key, Attempt: 2, Event: finalEvent("f2", 2, turtles.Failure), Recorded: t0.Add(3 * time.Second)}},
	}
	for _, s := range steps {
		got, first, err := s.db.RecordFinal(ctx, s.ev)
		if err != nil {
			t.Fatalf("%s: RecordFinal: %v", s.name, err)
		}
		if first != s.wantFirst {
			t.Errorf("%s: first = %v, want %v", s.name, first, s.wantFirst)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: winner (-want +got):\n%s", s.name, diff)
		}
		clock.Advance(time.Second)
	}
	last, err := b.LastFinal(ctx, key)
	if err != nil || last.Attempt != 2 || last.Event.ID != "f2" {
		t.Errorf("LastFinal = %+v, %v; want attempt 2's f2", last, err)
	}
	for _, ev := range []turtles.Event{
		{ID: "s", Type: turtles.EventStarted, Task: Task("unit", 3)},
		{ID: "n", Type: turtles.EventFinished, Task: Task("unit", 3)}, // no outcome
	} {
		if _, _, err := a.RecordFinal(ctx, ev); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("RecordFinal(%s) = %v, want ErrInvalid", ev.ID, err)
		}
	}
}

func testFinalsPosted(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	var evs []turtles.Event
	for i := 1; i <= 3; i++ {
		ev := finalEvent(fmt.Sprintf("f%d", i), i, turtles.Success)
		evs = append(evs, ev)
		if _, first, err := a.RecordFinal(ctx, ev); err != nil || !first {
			t.Fatalf("RecordFinal(%s) = %v, %v", ev.ID, first, err)
		}
		clock.Advance(time.Second)
	}
	unposted := func(want ...int) {
		t.Helper()
		got, err := b.Unposted(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		var attempts []int
		for _, f := range got {
			attempts = append(attempts, f.Attempt)
			if !f.Posted.IsZero() {
				t.Errorf("Unposted lists attempt %d, posted at %v", f.Attempt, f.Posted)
			}
		}
		if diff := cmp.Diff(want, attempts); diff != "" {
			t.Errorf("Unposted attempts (-want +got):\n%s", diff)
		}
	}
	key := evs[0].Task.Key()
	unposted(1, 2, 3)
	if err := b.MarkPosted(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	unposted(1, 3)
	if got, _ := b.Unposted(ctx, 1); len(got) != 1 || got[0].Attempt != 1 {
		t.Errorf("Unposted(limit 1) = %+v, want attempt 1", got)
	}
	postedAt := clock.Now()
	clock.Advance(time.Minute)
	if err := a.MarkPosted(ctx, key, 2); err != nil { // again: no error, first time kept
		t.Errorf("MarkPosted again: %v", err)
	}
	f, _, err := a.RecordFinal(ctx, evs[1])
	if err != nil || !f.Posted.Equal(postedAt) {
		t.Errorf("final of attempt 2 = %+v, %v; want posted at %v", f, err, postedAt)
	}
	if err := a.MarkPosted(ctx, key, 9); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("MarkPosted(unrecorded) = %v, want ErrNotFound", err)
	}
}

// testFinalsRace has 12 reporters on 3 handles record different final
// events of the same attempt at once: exactly one is first, and all are
// told the same winner.
func testFinalsRace(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 3, state.Options{})
	for attempt := 1; attempt <= 5; attempt++ {
		winners := make([]string, 12)
		var firsts atomic.Int32
		race(len(winners), func(i int) {
			class := turtles.Success
			if i%2 == 1 {
				class = turtles.Failure
			}
			f, first, err := dbs[i%len(dbs)].RecordFinal(ctx, finalEvent(fmt.Sprintf("a%d-r%d", attempt, i), attempt, class))
			if err != nil {
				t.Errorf("RecordFinal: %v", err)
				return
			}
			if first {
				firsts.Add(1)
			}
			winners[i] = f.Event.ID
		})
		if n := firsts.Load(); n != 1 {
			t.Errorf("attempt %d: %d callers were first, want exactly 1", attempt, n)
		}
		for i, w := range winners {
			if w != winners[0] {
				t.Errorf("attempt %d: caller %d was told %q won, caller 0 %q", attempt, i, w, winners[0])
			}
		}
	}
}

// testFinalsClaim: of several reporters, one claims the posting of a
// final; another takes it over only after the claim lapses, and is told
// whose claim lapsed.
func testFinalsClaim(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	key := Task("unit", 1).Key()
	if _, _, err := a.ClaimPost(ctx, key, 1, "rep-a", time.Minute); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("ClaimPost(unrecorded) = %v, want ErrNotFound", err)
	}
	if _, _, err := a.RecordFinal(ctx, finalEvent("f1", 1, turtles.Success)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		holder string
		lease  time.Duration
	}{{"", time.Minute}, {"rep-a", 0}, {"rep-a", -time.Second}} {
		if _, _, err := a.ClaimPost(ctx, key, 1, bad.holder, bad.lease); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("ClaimPost(%q, %s) = %v, want ErrInvalid", bad.holder, bad.lease, err)
		}
	}
	unposted := func(step string, want int) {
		t.Helper()
		got, err := b.Unposted(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("%s: Unposted lists %d finals, want %d: %+v", step, len(got), want, got)
		}
	}
	steps := []struct {
		name     string
		db       state.DB
		holder   string
		advance  time.Duration // before the claim
		wantOK   bool
		wantPrev string
		unposted int // listed after the claim
	}{
		{"first claim", a, "rep-a", 0, true, "", 0},
		{"another holder while it is live", b, "rep-b", 30 * time.Second, false, "", 0},
		{"its holder renews it", b, "rep-a", 0, true, "", 0},
		{"still live one second before it lapses", b, "rep-b", 59 * time.Second, false, "", 0},
		{"lapsed: taken over, naming the holder", b, "rep-b", 2 * time.Second, true, "rep-a", 0},
		{"the old holder is now the other one", a, "rep-a", 0, false, "", 0},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		ok, prev, err := s.db.ClaimPost(ctx, key, 1, s.holder, time.Minute)
		if err != nil || ok != s.wantOK || prev != s.wantPrev {
			t.Errorf("%s: ClaimPost(%s) = %v, %q, %v; want %v, %q", s.name, s.holder, ok, prev, err, s.wantOK, s.wantPrev)
		}
		unposted(s.name, s.unposted)
	}
	clock.Advance(2 * time.Minute)
	unposted("after the claim lapsed", 1)
	if got, err := a.LastFinal(ctx, key); err != nil || got.Poster != "rep-b" || !got.ClaimedUntil.Equal(clock.Now().Add(-time.Minute)) {
		t.Errorf("LastFinal = %+v, %v; want claimed by rep-b until %v", got, err, clock.Now().Add(-time.Minute))
	}
	if err := b.MarkPosted(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := a.ClaimPost(ctx, key, 1, "rep-a", time.Minute); err != nil || ok {
		t.Errorf("ClaimPost after MarkPosted = %v, %v; want not ok", ok, err)
	}
	unposted("posted", 0)

	// A race of 12 claimers on 3 handles: exactly one wins.
	dbs := o.handles(t, 3, state.Options{Now: clock.Now})
	for attempt := 2; attempt <= 4; attempt++ {
		if _, _, err := a.RecordFinal(ctx, finalEvent(fmt.Sprintf("f%d", attempt), attempt, turtles.Success)); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		race(12, func(i int) {
			ok, _, err := dbs[i%len(dbs)].ClaimPost(ctx, key, attempt, fmt.Sprintf("rep-%d", i), time.Minute)
			if err != nil {
				t.Errorf("ClaimPost: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
		if n := wins.Load(); n != 1 {
			t.Errorf("attempt %d: %d of 12 racing claims won, want exactly 1", attempt, n)
		}
	}
}

func testFinalsPrune(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	for i := 1; i <= 3; i++ {
		if _, _, err := db.RecordFinal(ctx, finalEvent(fmt.Sprintf("f%d", i), i, turtles.Success)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
	}
	got, err := db.Prune(ctx, state.Prune{Finals: t0.Add(90 * time.Minute)})
	if err != nil || got != (state.Pruned{Finals: 2}) {
		t.Fatalf("Prune = %+v, %v; want 2 finals", got, err)
	}
	left, err := db.Unposted(ctx, 0)
	if err != nil || len(left) != 1 || left[0].Attempt != 3 {
		t.Errorf("after pruning: %+v, %v; want attempt 3 only", left, err)
	}
}

func testApprovals(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	const repo, sha = "octo/hello", "0123456789abcdef0123456789abcdef01234567"
	if _, err := a.Approval(ctx, repo, sha); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Approval before any = %v, want ErrNotFound", err)
	}
	first := state.Approval{Repo: repo, SHA: sha, PR: 7, Approver: "maintainer"}
	if ok, err := a.Approve(ctx, first); err != nil || !ok {
		t.Fatalf("Approve = %v, %v; want first", ok, err)
	}
	clock.Advance(time.Minute)
	if ok, err := b.Approve(ctx, state.Approval{Repo: repo, SHA: sha, PR: 8, Approver: "other"}); err != nil || ok {
		t.Errorf("Approve again = %v, %v; want not first", ok, err)
	}
	first.Time = t0
	got, err := b.Approval(ctx, repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, got); diff != "" {
		t.Errorf("Approval (-want +got):\n%s", diff)
	}
	if _, err := b.Approval(ctx, repo, "1111111111111111111111111111111111111111"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Approval of another commit = %v, want ErrNotFound", err)
	}
	given := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	other := state.Approval{Repo: "octo/other", SHA: sha, Approver: "m", Time: given}
	if ok, err := a.Approve(ctx, other); err != nil || !ok {
		t.Fatalf("Approve in another repo = %v, %v", ok, err)
	}
	if got, err := b.Approval(ctx, other.Repo, sha); err != nil || !got.Time.Equal(given) {
		t.Errorf("Approval = %+v, %v; want the time given, %v", got, err, given)
	}
	for _, bad := range []state.Approval{{SHA: sha, Approver: "m"}, {Repo: repo, Approver: "m"}, {Repo: repo, SHA: sha}} {
		if _, err := a.Approve(ctx, bad); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("Approve(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	got2, err := a.Prune(ctx, state.Prune{Approvals: t0})
	if err != nil || got2 != (state.Pruned{Approvals: 1}) {
		t.Errorf("Prune approvals before t0 = %+v, %v; want the one given in 2023", got2, err)
	}
}

func testETags(t *testing.T, o opener) {
	ctx := t.Context()
	a, b := o.db(t), o.db(t)
	const url = "https://api.github.com/repos/octo/hello/branches"
	get := func(want string) {
		t.Helper()
		if got, err := b.ETag(ctx, url); err != nil || got != want {
			t.Errorf("ETag = %q, %v; want %q", got, err, want)
		}
	}
	get("")
	for _, etag := range []string{`W/"1"`, `"2"`} {
		if err := a.SetETag(ctx, url, etag); err != nil {
			t.Fatal(err)
		}
		get(etag)
	}
	if err := a.SetETag(ctx, url, ""); err != nil {
		t.Fatal(err)
	}
	get("")
	if err := a.SetETag(ctx, "", "x"); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("SetETag with no key = %v, want ErrInvalid", err)
	}
}
