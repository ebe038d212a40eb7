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

// Per-test results, pruning, and the handles' life.

func pass(name string) turtles.TestResult {
	return turtles.TestResult{Name: name, Outcome: turtles.TestPassed, Source: "log", Duration: 2}
}

func fail(name string, line int) turtles.TestResult {
	return turtles.TestResult{Name: name, Outcome: turtles.TestFailed, Source: "log", Line: line, Message: "boom"}
}

// attemptResult is attempt n of context "unit", finished n minutes after
// t0.
func attemptResult(n int, tests ...turtles.TestResult) turtles.Result {
	return turtles.Result{Task: Task("unit", n), Finished: t0.Add(time.Duration(n) * time.Minute),
		LogURL: fmt.Sprintf("http://x/tasks/t/%d", n), Tests: tests}
}

// testTests records two attempts of a commit: attempt 1 fails "login" and
// "db", attempt 2 (a retry) passes "login" and fails "db" again. Login is
// a flake.
func testTests(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	// Recorded twice (a redelivered event): the second replaces the first.
	for range 2 {
		for _, res := range []turtles.Result{
			attemptResult(1, fail("login", 12), fail("db", 20), pass("ok")),
			attemptResult(2, pass("login"), fail("db", 30), pass("ok"),
				turtles.TestResult{Name: "later", Outcome: turtles.TestSkipped, Source: "artifacts/junit.xml"}),
		} {
			if err := db.RecordTests(ctx, res); err != nil {
				t.Fatal(err)
			}
		}
	}
	other := attemptResult(1, fail("login", 1))
	other.Task.Repo.Name = "octo/other"
	if err := db.RecordTests(ctx, other); err != nil {
		t.Fatal(err)
	}
	sha := Task("unit", 1).SHA
	all := []state.TestStats{
		{Repo: "octo/hello", Context: "unit", Name: "login", Runs: 2, Tasks: 1, Failures: 1, RetriedThenPassed: 1, MeanDuration: 2,
			LastFailure: &state.Failure{SHA: sha, Attempt: 1, Time: t0.Add(time.Minute), Message: "boom", LogURL: "http://x/tasks/t/1#L12"}},
		{Repo: "octo/hello", Context: "unit", Name: "db", Runs: 2, Tasks: 1, Failures: 2,
			LastFailure: &state.Failure{SHA: sha, Attempt: 2, Time: t0.Add(2 * time.Minute), Message: "boom", LogURL: "http://x/tasks/t/2#L30"}},
		{Repo: "octo/other", Context: "unit", Name: "login", Runs: 1, Tasks: 1, Failures: 1,
			LastFailure: &state.Failure{SHA: sha, Attempt: 1, Time: t0.Add(time.Minute), Message: "boom", LogURL: "http://x/tasks/t/1#L1"}},
		{Repo: "octo/hello", Context: "unit", Name: "later", Skipped: 1},
		{Repo: "octo/hello", Context: "unit", Name: "ok", Runs: 2, Tasks: 1, MeanDuration: 2},
	}
	tests := []struct {
		name string
		f    state.TestFilter
		want []state.TestStats
	}{
		{"all", state.TestFilter{}, all},
		{"one repo", state.TestFilter{Repo: "octo/hello", Since: t0}, []state.TestStats{all[0], all[1], all[3], all[4]}},
		{"flaky only", state.TestFilter{FlakyOnly: true}, all[:1]},
		{"another context", state.TestFilter{Context: "lint"}, []state.TestStats{}},
		{"since later", state.TestFilter{Since: t0.Add(time.Hour)}, []state.TestStats{}},
		{"limited", state.TestFilter{Limit: 2}, all[:2]},
	}
	for _, tt := range tests {
		got, err := db.Tests(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Tests (-want +got):\n%s", tt.name, diff)
		}
	}
}

// testTestsRace records the same attempt's tests from 6 recorders on 3
// handles at once: the attempt's tests are there once, not six times.
func testTestsRace(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 3, state.Options{})
	res := attemptResult(1, pass("a"), fail("b", 3), pass("c"))
	race(6, func(i int) {
		if err := dbs[i%len(dbs)].RecordTests(ctx, res); err != nil {
			t.Errorf("RecordTests: %v", err)
		}
	})
	got, err := dbs[0].Tests(ctx, state.TestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, s := range got {
		runs[s.Name] = s.Runs
	}
	if diff := cmp.Diff(map[string]int{"a": 1, "b": 1, "c": 1}, runs); diff != "" {
		t.Errorf("runs per test (-want +got):\n%s", diff)
	}
}

func testPruneHistory(t *testing.T, o opener) {
	ctx := t.Context()
	clock := NewClock(t0)
	db := o.handle(t, state.Options{Now: clock.Now})
	record := func(e turtles.Event, d time.Duration) {
		t.Helper()
		e.Time = t0.Add(d)
		clock.Advance(time.Minute) // the events' IDs are seen a minute apart
		if _, err := db.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	old, running := ev("old-f", turtles.EventFinished, 1, turtles.Success), ev("run-s", turtles.EventStarted, 1, "")
	running.Task.Context = "running"
	record(ev("old-s", turtles.EventStarted, 1, ""), 0)
	record(old, time.Minute)
	record(running, 2*time.Minute) // old, but not finished: kept
	recent := ev("new-f", turtles.EventFinished, 1, turtles.Success)
	recent.Task.Context = "recent"
	record(recent, time.Hour)
	for n := 1; n <= 2; n++ {
		if err := db.RecordTests(ctx, attemptResult(n, pass("a"), pass("b"), pass("c"))); err != nil {
			t.Fatal(err)
		}
	}
	p := state.Prune{Tasks: t0.Add(30 * time.Minute), Events: t0.Add(150 * time.Second), Tests: t0.Add(90 * time.Second), DryRun: true}
	want := state.Pruned{Tasks: 1, Attempts: 1, Events: 2, Tests: 3}
	for _, dry := range []bool{true, false} {
		p.DryRun = dry
		got, err := db.Prune(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Prune(dry run %v) = %+v, want %+v", dry, got, want)
		}
	}
	tasks, err := db.List(ctx, state.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, task := range tasks {
		left = append(left, task.Context)
	}
	if diff := cmp.Diff([]string{"recent", "running"}, left); diff != "" {
		t.Errorf("tasks left (-want +got):\n%s", diff)
	}
	if _, err := db.Get(ctx, Task("unit", 1).ID()); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Get(pruned task) = %v, want ErrNotFound", err)
	}
	// The pruned events' IDs are new again: the old task comes back.
	if rec, err := db.Record(ctx, old); err != nil || !rec.New {
		t.Errorf("Record(pruned event) = %+v, %v; want new", rec, err)
	}
	if rec, err := db.Record(ctx, recent); err != nil || rec.New {
		t.Errorf("Record(kept event) = %+v, %v; want not new", rec, err)
	}
	if stats, _ := db.Tests(ctx, state.TestFilter{}); len(stats) != 3 || stats[0].Runs != 1 {
		t.Errorf("tests after pruning attempt 1's: %+v, want 3 tests of 1 run", stats)
	}
}

// testConcurrentOpen opens 8 handles on a new database at once, as
// processes starting together do: every one opens, migrates or waits, and
// works.
func testConcurrentOpen(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := make([]state.DB, 8)
	errs := make([]error, len(dbs))
	race(len(dbs), func(i int) {
		dbs[i], errs[i] = o.open(state.Options{})
	})
	for i, db := range dbs {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { db.Close() })
		if ok, err := db.FirstDelivery(ctx, fmt.Sprintf("d%d", i)); err != nil || !ok {
			t.Errorf("handle %d: FirstDelivery = %v, %v", i, ok, err)
		}
	}
}

// testReopen records one of everything, closes the handle and opens
// another, as a replacement process would: it is all still there.
func testReopen(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	fin := finalEvent("f1", 1, turtles.Success)
	if _, err := db.FirstDelivery(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Reserve(ctx, "k", "tok"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.RecordFinal(ctx, fin); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Approve(ctx, state.Approval{Repo: "octo/hello", SHA: fin.Task.SHA, Approver: "m"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetETag(ctx, "u", "e"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Record(ctx, fin); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = o.db(t)
	if seen, err := db.Seen(ctx, "d1"); err != nil || !seen {
		t.Errorf("Seen = %v, %v", seen, err)
	}
	if r, live, err := db.Live(ctx, "k"); err != nil || !live || r.Token != "tok" {
		t.Errorf("Live = %+v, %v, %v", r, live, err)
	}
	if _, first, err := db.RecordFinal(ctx, finalEvent("f1-again", 1, turtles.Failure)); err != nil || first {
		t.Errorf("RecordFinal after reopening = first %v, %v; want the earlier one to win", first, err)
	}
	if _, err := db.Approval(ctx, "octo/hello", fin.Task.SHA); err != nil {
		t.Errorf("Approval: %v", err)
	}
	if etag, err := db.ETag(ctx, "u"); err != nil || etag != "e" {
		t.Errorf("ETag = %q, %v", etag, err)
	}
	if task, err := db.Get(ctx, fin.Task.ID()); err != nil || task.State != state.Finished {
		t.Errorf("Get = %+v, %v", task, err)
	}
}

// testClosed calls every method after Close: each returns ErrClosed.
func testClosed(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	fin := finalEvent("f", 1, turtles.Success)
	calls := map[string]func() error{
		"FirstDelivery": func() error { _, err := db.FirstDelivery(ctx, "d"); return err },
		"Seen":          func() error { _, err := db.Seen(ctx, "d"); return err },
		"Reserve":       func() error { _, _, err := db.Reserve(ctx, "k", "t"); return err },
		"Free":          func() error { _, err := db.Free(ctx, "k", "t"); return err },
		"Live":          func() error { _, _, err := db.Live(ctx, "k"); return err },
		"Reservations":  func() error { _, err := db.Reservations(ctx, t0, 0); return err },
		"Settle":        func() error { return db.Settle(ctx, "k", "t") },
		"Unsettled":     func() error { _, err := db.Unsettled(ctx, t0, 0); return err },
		"ClaimPost":     func() error { _, _, err := db.ClaimPost(ctx, "k", 1, "h", time.Second); return err },
		"RecordFinal":   func() error { _, _, err := db.RecordFinal(ctx, fin); return err },
		"LastFinal":     func() error { _, err := db.LastFinal(ctx, "k"); return err },
		"MarkPosted":    func() error { return db.MarkPosted(ctx, "k", 1) },
		"Unposted":      func() error { _, err := db.Unposted(ctx, 0); return err },
		"Approve": func() error {
			_, err := db.Approve(ctx, state.Approval{Repo: "r", SHA: "s", Approver: "a"})
			return err
		},
		"Approval":    func() error { _, err := db.Approval(ctx, "r", "s"); return err },
		"ETag":        func() error { _, err := db.ETag(ctx, "u"); return err },
		"SetETag":     func() error { return db.SetETag(ctx, "u", "e") },
		"Record":      func() error { _, err := db.Record(ctx, fin); return err },
		"RecordTests": func() error { return db.RecordTests(ctx, attemptResult(1)) },
		"List":        func() error { _, err := db.List(ctx, state.Filter{}); return err },
		"Get":         func() error { _, err := db.Get(ctx, "x"); return err },
		"Tests":       func() error { _, err := db.Tests(ctx, state.TestFilter{}); return err },
		"TestRuns":    func() error { _, err := db.TestRuns(ctx, state.TestFilter{Repo: "r", Name: "n"}); return err },
		"Prune":       func() error { _, err := db.Prune(ctx, state.Prune{Deliveries: t0}); return err },
		"Heartbeat": func() error {
			return db.Heartbeat(ctx, state.Bot{Name: "b", Pool: "p", Slots: 1, Every: turtles.Duration(time.Second)})
		},
		"Bots": func() error { _, err := db.Bots(ctx); return err },
		"RecordAction": func() error {
			return db.RecordAction(ctx, state.Action{Task: "t", Kind: "rerun", User: "github:a"})
		},
		"Actions": func() error { _, err := db.Actions(ctx, "t"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, state.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}
