package statetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/state"
)

// What people did from the dashboard.

// testActions records actions through two handles: each task lists its
// own, oldest first, with the time given or the handle's clock; a repeat
// is a second action; an empty task, kind or user is refused.
func testActions(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	a := o.handle(t, state.Options{Now: clock.Now})
	b := o.handle(t, state.Options{Now: clock.Now})
	if got, err := b.Actions(ctx, "t1"); err != nil || len(got) != 0 {
		t.Fatalf("Actions before any = %v, %v; want none", got, err)
	}
	given := t0.Add(-time.Hour)
	record := []state.Action{
		{Task: "t1", Kind: "rerun", User: "github:alice", Result: "queued as attempt 2"},
		{Task: "t2", Kind: "cancel", User: "github:bob", Result: "cancelled"},
		{Task: "t1", Kind: "cancel", User: "gitlab:carol", At: given, Result: "refused: the task has finished"},
		{Task: "t1", Kind: "rerun", User: "github:alice", Result: "queued as attempt 2"}, // clicked twice
	}
	for i, x := range record {
		db := a
		if i%2 == 1 {
			db = b
		}
		if err := db.RecordAction(ctx, x); err != nil {
			t.Fatalf("RecordAction(%+v): %v", x, err)
		}
		clock.Advance(time.Second)
	}
	want := []state.Action{record[2], record[0], record[3]}
	want[0].At, want[1].At, want[2].At = given, t0, t0.Add(3*time.Second)
	got, err := a.Actions(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Actions of t1 (-want +got):\n%s", diff)
	}
	if got, err := b.Actions(ctx, "t2"); err != nil || len(got) != 1 || got[0].User != "github:bob" {
		t.Errorf("Actions of t2 = %+v, %v; want bob's cancel", got, err)
	}
	for _, bad := range []state.Action{{Kind: "rerun", User: "u"}, {Task: "t", User: "u"}, {Task: "t", Kind: "rerun"}} {
		if err := a.RecordAction(ctx, bad); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("RecordAction(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

// testActionsOrder: actions at one millisecond are listed in the order
// recorded, and a task with more than Actions returns keeps its newest.
func testActionsOrder(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	const n = 1005
	for i := range n {
		if i == n-3 {
			clock.Advance(time.Millisecond)
		}
		if err := db.RecordAction(ctx, state.Action{Task: "busy", Kind: "rerun", User: "github:alice", Result: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.Actions(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1000 {
		t.Fatalf("Actions returned %d, want the newest 1000", len(got))
	}
	for i, x := range got {
		if want := fmt.Sprint(i + 5); x.Result != want {
			t.Fatalf("Actions[%d] is action %s, want %s: listed out of the order recorded", i, x.Result, want)
		}
	}
}

// testActionsPrune forgets actions taken before the cutoff, and only
// with a cutoff.
func testActionsPrune(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	for _, task := range []string{"old", "new"} {
		if err := db.RecordAction(ctx, state.Action{Task: task, Kind: "approve", User: "github:alice"}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
	}
	if n, err := db.Prune(ctx, state.Prune{Tasks: t0.Add(time.Minute)}); err != nil || n.Actions != 0 {
		t.Errorf("Prune without an actions cutoff = %+v, %v; want no actions pruned", n, err)
	}
	n, err := db.Prune(ctx, state.Prune{Actions: t0.Add(time.Minute), DryRun: true})
	if err != nil || n != (state.Pruned{Actions: 1}) {
		t.Errorf("dry Prune = %+v, %v; want 1 action", n, err)
	}
	n, err = db.Prune(ctx, state.Prune{Actions: t0.Add(time.Minute)})
	if err != nil || n != (state.Pruned{Actions: 1}) {
		t.Errorf("Prune = %+v, %v; want 1 action", n, err)
	}
	if got, _ := db.Actions(ctx, "old"); len(got) != 0 {
		t.Errorf("old actions after Prune: %+v", got)
	}
	if got, _ := db.Actions(ctx, "new"); len(got) != 1 {
		t.Errorf("new actions after Prune: %+v, want 1", got)
	}
}
