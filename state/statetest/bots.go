package statetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Bot heartbeats: what each bot last said of itself.

// testBots heartbeats two bots through two handles (a bot process and
// the process that serves the pages): the second sees what the first
// wrote, Seen is the database's clock, and a zero Started keeps the start
// of the bot's first heartbeat.
func testBots(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	dbs := o.handles(t, 2, state.Options{Now: clock.Now})
	bot, reader := dbs[0], dbs[1]
	beat := func(b state.Bot) {
		t.Helper()
		if err := bot.Heartbeat(ctx, b); err != nil {
			t.Fatalf("Heartbeat(%+v): %v", b, err)
		}
	}
	every := turtles.Duration(5 * time.Second)
	// Seen in the bot is ignored: the database's clock decides.
	beat(state.Bot{Name: "b1", Pool: "public", Slots: 2, Every: every, Seen: t0.Add(-time.Hour)})
	clock.Advance(5 * time.Second)
	beat(state.Bot{Name: "b1", Pool: "public", Slots: 2, Busy: 1, Tasks: []string{"t1"}, Every: every})
	restart := t0.Add(time.Minute)
	beat(state.Bot{Name: "a9", Pool: "vm", Slots: 4, Busy: 2, Tasks: []string{"t2", "t3"}, Started: restart, Every: every})
	want := []state.Bot{
		{Name: "b1", Pool: "public", Slots: 2, Busy: 1, Tasks: []string{"t1"}, Started: t0, Seen: t0.Add(5 * time.Second), Every: every},
		{Name: "a9", Pool: "vm", Slots: 4, Busy: 2, Tasks: []string{"t2", "t3"}, Started: restart, Seen: t0.Add(5 * time.Second), Every: every},
	}
	got, err := reader.Bots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Bots (-want +got):\n%s", diff)
	}

	// A bot that restarts says when; one that moves pools and goes idle
	// says so too.
	clock.Advance(time.Second)
	beat(state.Bot{Name: "b1", Pool: "vm", Slots: 1, Started: t0.Add(6 * time.Second), Every: turtles.Duration(time.Second)})
	want[0] = state.Bot{Name: "b1", Pool: "vm", Slots: 1, Started: t0.Add(6 * time.Second), Seen: t0.Add(6 * time.Second), Every: turtles.Duration(time.Second)}
	want[0], want[1] = want[1], want[0] // a9 sorts before b1 in pool vm
	if got, err = reader.Bots(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Bots after b1 moved (-want +got):\n%s", diff)
	}

	for _, b := range []state.Bot{
		{Pool: "public", Slots: 1, Every: every},
		{Name: "x", Slots: 1, Every: every},
		{Name: "x", Pool: "public", Slots: -1, Every: every},
		{Name: "x", Pool: "public", Slots: 1, Busy: -1, Every: every},
		{Name: "x", Pool: "public", Slots: 1},
	} {
		if err := bot.Heartbeat(ctx, b); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("Heartbeat(%+v) = %v, want ErrInvalid", b, err)
		}
	}
	if got, _ := reader.Bots(ctx); len(got) != 2 {
		t.Errorf("Bots after invalid heartbeats = %+v, want the 2 bots only", got)
	}
}

// testBotsPrune forgets bots not seen since the cutoff, and only those.
func testBotsPrune(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	for _, name := range []string{"gone", "alive"} {
		if err := db.Heartbeat(ctx, state.Bot{Name: name, Pool: "public", Slots: 1, Every: turtles.Duration(time.Second)}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Hour)
	}
	p := state.Prune{Bots: t0.Add(time.Hour)}
	for _, dry := range []bool{true, false} {
		p.DryRun = dry
		if got, err := db.Prune(ctx, p); err != nil || got != (state.Pruned{Bots: 1}) {
			t.Errorf("Prune(dry run %v) = %+v, %v; want 1 bot", dry, got, err)
		}
	}
	got, err := db.Bots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "alive" {
		t.Errorf("Bots after pruning = %+v, want alive only", got)
	}
}

// testBotsRace heartbeats 8 bots, each from 4 handles at once: every
// heartbeat succeeds, and each bot has one row.
func testBotsRace(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 4, state.Options{})
	errs := make([]error, 32)
	race(len(errs), func(i int) {
		b := state.Bot{Name: fmt.Sprintf("bot-%d", i%8), Pool: "public", Slots: 4, Busy: i % 4, Every: turtles.Duration(time.Second)}
		errs[i] = dbs[i%len(dbs)].Heartbeat(ctx, b)
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("heartbeat %d: %v", i, err)
		}
	}
	got, err := dbs[0].Bots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Errorf("Bots = %d rows, want 8: %+v", len(got), got)
	}
}
