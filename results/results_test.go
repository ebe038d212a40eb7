package results

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
	"github.com/turtles-ci/turtles/store"
)

func testTask(attempt int) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: "octo/hello", CloneURL: "file:///x"},
		SHA:  "0123456789abcdef0123456789abcdef01234567", Context: "unit", Pool: "public", Attempt: attempt,
	}
}

func ev(id string, typ turtles.EventType, attempt int, class turtles.Class) turtles.Event {
	e := turtles.Event{ID: id, Type: typ, Task: testTask(attempt), Bot: "bot-1",
		LogURL: fmt.Sprintf("http://x/tasks/t/%d", attempt), Time: time.Unix(1700000000, 0).Add(time.Duration(len(id)) * time.Second)}
	if class != "" {
		e.Outcome = &turtles.Outcome{Class: class, Reason: string(class)}
	}
	return e
}

func openState(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestLostEndsLogOnce: an attempt whose bot died is ended in the store
// with the reason the history records, once however often the event
// comes; one that had not started ends nothing.
func TestLostEndsLogOnce(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 16, 2, 0, 0, time.UTC)
	started := ev("s1", turtles.EventStarted, 1, "")
	started.Time, started.Bot = t0, "bot2"
	lost := ev("l1", turtles.EventLost, 1, turtles.Infra)
	lost.Time, lost.Bot, lost.LogURL = t0.Add(90*time.Second), "", ""
	queued := ev("q", turtles.EventQueued, 1, "")
	tests := []struct {
		name   string
		events []turtles.Event
		want   []string
	}{
		{name: "delivered twice", events: []turtles.Event{started, lost, lost},
			want: []string{"1: bot bot2 stopped heart-beating at 16:02:00 UTC"}},
		{name: "not started", events: []turtles.Event{queued, lost}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openState(t)
			var ended []string
			r := New(Config{History: db, EndLog: func(ctx context.Context, res turtles.Result) error {
				if res.Task.Key() != testTask(1).Key() || res.Outcome.Class != turtles.Infra || res.Finished.IsZero() {
					t.Errorf("lost attempt's result = %+v, want the task's, infra, with a finish time", res)
				}
				ended = append(ended, fmt.Sprintf("%d: %s", res.Task.Attempt, res.Outcome.Reason))
				return nil
			}})
			for _, e := range tt.events {
				if err := r.Handle(t.Context(), e); err != nil {
					t.Fatalf("Handle(%s): %v", e.ID, err)
				}
			}
			if diff := cmp.Diff(tt.want, ended); diff != "" {
				t.Errorf("logs ended (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFlakes records three attempts through events and result.json in a
// store, as serve wires it: attempt 1 fails "login" and "db", attempt 2
// (a retry of the same commit) passes "login" and fails "db" again.
func TestFlakes(t *testing.T) {
	ctx := t.Context()
	db := openState(t)
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{History: db, Store: st})
	now := time.Now()
	attempt := func(n int, class turtles.Class, tests ...turtles.TestResult) {
		task := testTask(n)
		res := turtles.Result{Task: task, Outcome: turtles.Outcome{Class: class}, Finished: now.Add(time.Duration(n) * time.Minute),
			// An older bot's link, to its default URL: the event's wins.
			LogURL: "http://localhost:8080/tasks/t/" + string(rune('0'+n)), Tests: tests}
		b, _ := json.Marshal(res)
		if err := st.Put(ctx, store.AttemptPrefix(task)+store.ResultName, bytes.NewReader(b), "application/json"); err != nil {
			t.Fatal(err)
		}
		typ := turtles.EventFinished
		if class == turtles.Infra {
			typ = turtles.EventRetrying
		}
		e := ev("e"+string(rune('0'+n)), typ, n, class)
		for range 2 { // delivered twice: recorded once
			if err := r.Handle(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	pass := func(name string) turtles.TestResult {
		return turtles.TestResult{Name: name, Outcome: turtles.TestPassed, Source: "log", Duration: 2}
	}
	fail := func(name string, line int) turtles.TestResult {
		return turtles.TestResult{Name: name, Outcome: turtles.TestFailed, Source: "log", Line: line, Message: "boom"}
	}
	attempt(1, turtles.Infra, fail("login", 12), fail("db", 20), pass("ok"))
	attempt(2, turtles.Failure, pass("login"), fail("db", 30), pass("ok"),
		turtles.TestResult{Name: "later", Outcome: turtles.TestSkipped, Source: "artifacts/junit.xml"})
	// An attempt that died before writing a result.json: nothing to read.
	if err := r.Handle(ctx, ev("e3", turtles.EventFinished, 3, turtles.Infra)); err != nil {
		t.Fatalf("Handle without a result.json: %v", err)
	}

	got, err := db.Tests(ctx, state.TestFilter{Repo: "octo/hello", Since: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := []state.TestStats{
		{Repo: "octo/hello", Context: "unit", Name: "login", Runs: 2, Tasks: 1, Failures: 1, RetriedThenPassed: 1, MeanDuration: 2,
			LastFailure: &state.Failure{SHA: testTask(1).SHA, Attempt: 1, Time: now.Add(time.Minute).Truncate(time.Millisecond).UTC(), Message: "boom", LogURL: "http://x/tasks/t/1#L12"}},
		{Repo: "octo/hello", Context: "unit", Name: "db", Runs: 2, Tasks: 1, Failures: 2,
			LastFailure: &state.Failure{SHA: testTask(1).SHA, Attempt: 2, Time: now.Add(2 * time.Minute).Truncate(time.Millisecond).UTC(), Message: "boom", LogURL: "http://x/tasks/t/2#L30"}},
		{Repo: "octo/hello", Context: "unit", Name: "later", Skipped: 1},
		{Repo: "octo/hello", Context: "unit", Name: "ok", Runs: 2, Tasks: 1, MeanDuration: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tests (-want +got):\n%s", diff)
	}
}

// failing is a History whose database is away.
type failing struct{}

var errAway = fmt.Errorf("%w: connection refused", state.ErrUnavailable)

func (failing) Record(context.Context, turtles.Event) (state.Recorded, error) {
	return state.Recorded{}, errAway
}
func (failing) RecordTests(context.Context, turtles.Result) error { return errAway }
func (failing) RecordFinal(context.Context, turtles.Event) (state.Final, bool, error) {
	return state.Final{}, false, errAway
}

// TestUnavailable: an event the database did not take is an error, so
// that the consumer keeps it and tries again.
func TestUnavailable(t *testing.T) {
	r := New(Config{History: failing{}})
	err := r.Handle(t.Context(), ev("f1", turtles.EventFinished, 1, turtles.Success))
	if !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("Handle with the database away = %v, want state.ErrUnavailable", err)
	}
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"14d", 14 * 24 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"0d", 0, true},
		{"-1d", 0, false},
		{"d", 0, false},
		{"2w", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseAge(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestFinalFreesKey: a task's final event frees its key for its own
// token only; other events, and a late final of an older run, do not.
func TestFinalFreesKey(t *testing.T) {
	withToken := func(e turtles.Event, token string) turtles.Event {
		e.Task.Token = token
		return e
	}
	tests := []struct {
		name     string
		events   []turtles.Event
		wantLive bool
	}{
		{name: "final frees", events: []turtles.Event{withToken(ev("f", turtles.EventFinished, 1, turtles.Success), "run")}},
		{name: "final twice", events: []turtles.Event{
			withToken(ev("f", turtles.EventFinished, 1, turtles.Success), "run"),
			withToken(ev("f", turtles.EventFinished, 1, turtles.Success), "run")}},
		{name: "cancelled frees", events: []turtles.Event{withToken(ev("c", turtles.EventFinished, 1, turtles.Cancelled), "run")}},
		{name: "retrying keeps", wantLive: true, events: []turtles.Event{
			withToken(ev("s", turtles.EventStarted, 1, ""), "run"),
			withToken(ev("r", turtles.EventRetrying, 1, turtles.Infra), "run")}},
		{name: "lost keeps", wantLive: true, events: []turtles.Event{withToken(ev("l", turtles.EventLost, 1, turtles.Infra), "run")}},
		{name: "older run's final keeps", wantLive: true, events: []turtles.Event{
			withToken(ev("old", turtles.EventFinished, 1, turtles.Success), "older run")}},
		{name: "no token keeps", wantLive: true, events: []turtles.Event{ev("f", turtles.EventFinished, 1, turtles.Success)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openState(t)
			key := testTask(1).Key()
			if ok, _, err := db.Reserve(t.Context(), key, "run"); err != nil || !ok {
				t.Fatalf("Reserve = %v, %v", ok, err)
			}
			r := New(Config{History: db, Keys: db})
			for _, e := range tt.events {
				if err := r.Handle(t.Context(), e); err != nil {
					t.Fatalf("Handle(%s): %v", e.ID, err)
				}
			}
			if _, live, err := db.Live(t.Context(), key); err != nil || live != tt.wantLive {
				t.Errorf("Live = %v, %v; want %v", live, err, tt.wantLive)
			}
		})
	}
}

// TestHistoryShowsTheWinningFinal: two final events of one attempt (a
// bot that finished after its attempt was declared lost, two runs) reach
// two processes in opposite orders: the history shows the one that won in
// the finals, the one the reporter posts, whatever order the Recorder
// sees them in.
func TestHistoryShowsTheWinningFinal(t *testing.T) {
	passed, failed := ev("passed", turtles.EventFinished, 1, turtles.Success), ev("failed", turtles.EventFinished, 1, turtles.Failure)
	for _, tt := range []struct {
		name   string
		first  turtles.Event // recorded in the finals by the other process
		events []turtles.Event
	}{
		{"loser first", failed, []turtles.Event{passed, failed}},
		{"winner first", failed, []turtles.Event{failed, passed}},
		{"the other way round", passed, []turtles.Event{failed, passed}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := openState(t)
			if _, _, err := db.RecordFinal(t.Context(), tt.first); err != nil {
				t.Fatal(err)
			}
			r := New(Config{History: db})
			for _, e := range tt.events {
				if err := r.Handle(t.Context(), e); err != nil {
					t.Fatalf("Handle(%s): %v", e.ID, err)
				}
			}
			got, err := db.Get(t.Context(), testTask(1).ID())
			if err != nil {
				t.Fatal(err)
			}
			if got.Outcome == nil || got.Outcome.Class != tt.first.Outcome.Class || len(got.Attempts) != 1 ||
				got.Attempts[0].Outcome == nil || got.Attempts[0].Outcome.Class != tt.first.Outcome.Class {
				t.Errorf("history = %+v, want task and attempt 1 ended %s", got, tt.first.Outcome.Class)
			}
		})
	}
}

// TestObserveOnce: Observe sees each event once however often it comes,
// and of two final events of one attempt only the one that won.
func TestObserveOnce(t *testing.T) {
	db := openState(t)
	var seen []string
	r := New(Config{History: db, Observe: func(e turtles.Event) { seen = append(seen, string(e.Type)+" "+e.ID) }})
	started := ev("s", turtles.EventStarted, 1, "")
	passed, failed := ev("passed", turtles.EventFinished, 1, turtles.Success), ev("failed", turtles.EventFinished, 1, turtles.Failure)
	for _, e := range []turtles.Event{started, started, failed, passed, failed} {
		if err := r.Handle(t.Context(), e); err != nil {
			t.Fatalf("Handle(%s): %v", e.ID, err)
		}
	}
	if diff := cmp.Diff([]string{"started s", "finished failed"}, seen); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}
