package results

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// TestFlakes records three attempts through events and result.json in a
// store, as serve wires it: attempt 1 fails "login" and "db", attempt 2
// (a retry of the same commit) passes "login" and fails "db" again.
func TestFlakes(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db.ReadResultsFrom(st)
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
		for i := 0; i < 2; i++ { // delivered twice: recorded once
			if err := db.Handle(ctx, e); err != nil {
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

	got, err := db.Tests(ctx, TestFilter{Repo: "octo/hello", Since: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := []TestStats{
		{Repo: "octo/hello", Context: "unit", Name: "login", Runs: 2, Failures: 1, RetriedThenPassed: 1, MeanDuration: 2,
			LastFailure: &Failure{SHA: testTask(1).SHA, Attempt: 1, Time: now.Add(time.Minute).Truncate(time.Millisecond).UTC(), Message: "boom", LogURL: "http://x/tasks/t/1#L12"}},
		{Repo: "octo/hello", Context: "unit", Name: "db", Runs: 2, Failures: 2,
			LastFailure: &Failure{SHA: testTask(1).SHA, Attempt: 2, Time: now.Add(2 * time.Minute).Truncate(time.Millisecond).UTC(), Message: "boom", LogURL: "http://x/tasks/t/2#L30"}},
		{Repo: "octo/hello", Context: "unit", Name: "later", Skipped: 1},
		{Repo: "octo/hello", Context: "unit", Name: "ok", Runs: 2, MeanDuration: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tests (-want +got):\n%s", diff)
	}
	flakes, err := db.Tests(ctx, TestFilter{FlakyOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(flakes) != 1 || flakes[0].Name != "login" {
		t.Errorf("flakes = %+v, want only login", flakes)
	}
	if later, _ := db.Tests(ctx, TestFilter{Since: now.Add(time.Hour)}); len(later) != 0 {
		t.Errorf("Tests since a later time = %+v, want none", later)
	}
	if n, err := db.PruneTests(ctx, now.Add(-2*time.Hour), false); err != nil || n != 0 {
		t.Fatalf("PruneTests before all results = %d, %v; want 0", n, err)
	}
	// Attempt 1 (3 rows) finished at now+1m, attempt 2 (4 rows) at now+2m.
	if n, err := db.PruneTests(ctx, now.Add(90*time.Second), true); err != nil || n != 3 {
		t.Fatalf("PruneTests dry run = %d, %v; want 3", n, err)
	}
	if n, err := db.PruneTests(ctx, now.Add(90*time.Second), false); err != nil || n != 3 {
		t.Fatalf("PruneTests = %d, %v; want 3", n, err)
	}
	if left, _ := db.Tests(ctx, TestFilter{}); len(left) != 4 || left[0].Runs != 1 {
		t.Errorf("after pruning attempt 1: %+v, want 4 tests of 1 run", left)
	}
	if n, err := db.PruneTests(ctx, now.Add(time.Hour), false); err != nil || n != 4 {
		t.Fatalf("PruneTests = %d, %v; want 4", n, err)
	}
	if left, _ := db.Tests(ctx, TestFilter{}); len(left) != 0 {
		t.Errorf("after PruneTests: %+v", left)
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
