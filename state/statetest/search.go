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

// Search and paging of the history, and a test's runs.

// searchTask is one task of the search tests, named by its context.
type searchTask struct {
	context, repo, sha, ref string
	pr                      int
	outcome                 *turtles.Outcome // nil: still running
	at                      time.Duration    // after t0, of its last event
}

// recordTasks records each task as started and, with an outcome,
// finished, at t0+at.
func recordTasks(t *testing.T, db state.DB, tasks []searchTask) {
	t.Helper()
	for _, st := range tasks {
		task := Task(st.context, 1)
		if st.repo != "" {
			task.Repo.Name = st.repo
		}
		if st.sha != "" {
			task.SHA = st.sha
		}
		task.Ref, task.PR = st.ref, st.pr
		evs := []turtles.Event{{ID: st.context + "-s", Type: turtles.EventStarted, Task: task, Bot: "bot-1", Time: t0.Add(st.at)}}
		if st.outcome != nil {
			evs = append(evs, turtles.Event{ID: st.context + "-f", Type: turtles.EventFinished, Task: task, Bot: "bot-1",
				Outcome: st.outcome, Time: t0.Add(st.at)})
		}
		for _, e := range evs {
			if _, err := db.Record(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func contexts(tasks []state.Task) []string {
	var out []string
	for _, x := range tasks {
		out = append(out, x.Context)
	}
	return out
}

func testListFilters(t *testing.T, o opener) {
	db := o.db(t)
	shaA := "aaaa456789abcdef0123456789abcdef01234567"
	shaB := "aaab456789abcdef0123456789abcdef01234567"
	shaC := "cccc456789abcdef0123456789abcdef01234567"
	success := &turtles.Outcome{Class: turtles.Success}
	failure := &turtles.Outcome{Class: turtles.Failure, ExitCode: 1}
	flake := &turtles.Outcome{Class: turtles.Success, Verdict: turtles.VerdictFlake}
	infra := &turtles.Outcome{Class: turtles.Infra, ExitCode: -1}
	recordTasks(t, db, []searchTask{
		{context: "main-unit", sha: shaA, ref: "refs/heads/main", outcome: success, at: 1 * time.Hour},
		{context: "main-lint", sha: shaA, ref: "refs/heads/main", outcome: failure, at: 2 * time.Hour},
		{context: "pr-unit", sha: shaB, ref: "refs/pull/7/head", pr: 7, outcome: flake, at: 3 * time.Hour},
		{context: "pr-lint", sha: shaB, ref: "refs/pull/7/head", pr: 7, at: 4 * time.Hour},
		{context: "other-unit", repo: "octo/other", sha: shaC, ref: "refs/heads/main", pr: 0, outcome: infra, at: 5 * time.Hour},
		{context: "other-pr", repo: "octo/other", sha: shaA, ref: "refs/pull/7/head", pr: 7, outcome: failure, at: 6 * time.Hour},
	})
	tests := []struct {
		name string
		f    state.Filter
		want []string // contexts, most recently updated first
	}{
		{"all", state.Filter{}, []string{"other-pr", "other-unit", "pr-lint", "pr-unit", "main-lint", "main-unit"}},
		{"repo", state.Filter{Repo: "octo/hello"}, []string{"pr-lint", "pr-unit", "main-lint", "main-unit"}},
		{"branch", state.Filter{Ref: "refs/heads/main"}, []string{"other-unit", "main-lint", "main-unit"}},
		{"repo and branch", state.Filter{Repo: "octo/hello", Ref: "refs/heads/main"}, []string{"main-lint", "main-unit"}},
		{"pull request of a repo", state.Filter{Repo: "octo/hello", PR: 7}, []string{"pr-lint", "pr-unit"}},
		{"full sha", state.Filter{SHA: shaA}, []string{"other-pr", "main-lint", "main-unit"}},
		{"sha prefix", state.Filter{SHA: "aaa"}, []string{"other-pr", "pr-lint", "pr-unit", "main-lint", "main-unit"}},
		{"sha prefix, narrower", state.Filter{SHA: "aaab"}, []string{"pr-lint", "pr-unit"}},
		{"sha of no task", state.Filter{SHA: "ab"}, nil},
		{"context", state.Filter{Context: "pr-unit"}, []string{"pr-unit"}},
		{"class", state.Filter{Class: turtles.Failure}, []string{"other-pr", "main-lint"}},
		{"verdict regression", state.Filter{Verdict: turtles.VerdictRegression}, []string{"other-pr", "main-lint"}},
		{"verdict flake", state.Filter{Verdict: turtles.VerdictFlake}, []string{"pr-unit"}},
		{"verdict infra", state.Filter{Verdict: turtles.VerdictInfra}, []string{"other-unit"}},
		{"class of a running task", state.Filter{Class: turtles.Success, State: state.Running}, nil},
		{"state", state.Filter{State: state.Running}, []string{"pr-lint"}},
		{"since", state.Filter{Since: t0.Add(5 * time.Hour)}, []string{"other-pr", "other-unit"}},
		{"until", state.Filter{Until: t0.Add(2 * time.Hour)}, []string{"main-unit"}},
		{"date range", state.Filter{Since: t0.Add(2 * time.Hour), Until: t0.Add(4 * time.Hour)}, []string{"pr-unit", "main-lint"}},
		{"everything at once", state.Filter{Repo: "octo/other", SHA: "aaaa", Ref: "refs/pull/7/head", PR: 7, Context: "other-pr",
			Class: turtles.Failure, Verdict: turtles.VerdictRegression, State: state.Finished,
			Since: t0.Add(6 * time.Hour), Until: t0.Add(7 * time.Hour)}, []string{"other-pr"}},
	}
	for _, tt := range tests {
		got, err := db.List(t.Context(), tt.f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, contexts(got)); diff != "" {
			t.Errorf("%s: List(%+v) (-want +got):\n%s", tt.name, tt.f, diff)
		}
	}
	// A listed task has its attempts, as Get returns them.
	got, err := db.List(t.Context(), state.Filter{Context: "main-lint"})
	if err != nil || len(got) != 1 {
		t.Fatalf("List(main-lint) = %d tasks, %v", len(got), err)
	}
	one, err := db.Get(t.Context(), got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(one, got[0]); diff != "" {
		t.Errorf("List and Get differ (-get +list):\n%s", diff)
	}
}

// testListPages pages through 23 tasks, some updated at the same
// millisecond, 5 at a time: every task comes once, in List's order, and
// tasks that arrive between two pages do not shift the pages after.
func testListPages(t *testing.T, o opener) {
	db := o.db(t)
	var tasks []searchTask
	for i := range 23 {
		tasks = append(tasks, searchTask{context: fmt.Sprintf("c%02d", i), outcome: &turtles.Outcome{Class: turtles.Success},
			at: time.Duration(i/3) * time.Minute}) // three at a time share a time
	}
	recordTasks(t, db, tasks)
	all, err := db.List(t.Context(), state.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(tasks) {
		t.Fatalf("List = %d tasks, want %d", len(all), len(tasks))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.Updated.Before(b.Updated) || (a.Updated.Equal(b.Updated) && a.ID <= b.ID) {
			t.Errorf("List order: %s (%s) before %s (%s)", a.ID, a.Updated, b.ID, b.Updated)
		}
	}
	var paged []string
	f := state.Filter{Limit: 5}
	for page := 0; ; page++ {
		got, err := db.List(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, contexts(got)...)
		if len(got) < f.Limit {
			break
		}
		if page == 1 { // newer tasks arrive: they belong before the first page
			recordTasks(t, db, []searchTask{{context: "newer", outcome: &turtles.Outcome{Class: turtles.Failure}, at: time.Hour}})
		}
		f.After = state.CursorOf(got[len(got)-1])
	}
	if diff := cmp.Diff(contexts(all), paged); diff != "" {
		t.Errorf("pages (-one list +pages):\n%s", diff)
	}
	// A cursor narrows any filter alike.
	got, err := db.List(t.Context(), state.Filter{Class: turtles.Success, After: state.CursorOf(all[20]), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(contexts(all[21:]), contexts(got)); diff != "" {
		t.Errorf("after the 21st (-want +got):\n%s", diff)
	}
}

// testTestRuns records a test's results on three commits and two
// contexts, with a retry, and reads its runs back.
func testTestRuns(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	result := func(sha, context string, attempt int, minute int, tests ...turtles.TestResult) turtles.Result {
		task := Task(context, attempt)
		task.SHA = sha
		return turtles.Result{Task: task, Finished: t0.Add(time.Duration(minute) * time.Minute),
			LogURL: fmt.Sprintf("http://x/%s/%s/%d", sha[:4], context, attempt), Tests: tests}
	}
	sha1, sha2 := "1111456789abcdef0123456789abcdef01234567", "2222456789abcdef0123456789abcdef01234567"
	for _, res := range []turtles.Result{
		result(sha1, "unit", 1, 1, pass("login"), pass("other")),
		result(sha1, "integration", 1, 2, fail("login", 9)),
		result(sha2, "unit", 1, 3, fail("login", 4)),
		result(sha2, "unit", 2, 4, pass("login")),
	} {
		if err := db.RecordTests(ctx, res); err != nil {
			t.Fatal(err)
		}
	}
	other := result(sha2, "unit", 1, 5, fail("login", 1))
	other.Task.Repo.Name = "octo/other"
	if err := db.RecordTests(ctx, other); err != nil {
		t.Fatal(err)
	}
	run := func(sha, context string, attempt, minute int, o turtles.TestOutcome, line int) state.TestRun {
		r := state.TestRun{TaskID: Task(context, 1).ID(), SHA: sha, Context: context, Attempt: attempt, Outcome: o,
			Finished: t0.Add(time.Duration(minute) * time.Minute), LogURL: fmt.Sprintf("http://x/%s/%s/%d", sha[:4], context, attempt)}
		tk := Task(context, 1)
		tk.SHA = sha
		r.TaskID = tk.ID()
		if o == turtles.TestPassed {
			r.Duration = 2
		} else {
			r.Message = "boom"
			r.LogURL += fmt.Sprintf("#L%d", line)
		}
		return r
	}
	all := []state.TestRun{
		run(sha2, "unit", 2, 4, turtles.TestPassed, 0),
		run(sha2, "unit", 1, 3, turtles.TestFailed, 4),
		run(sha1, "integration", 1, 2, turtles.TestFailed, 9),
		run(sha1, "unit", 1, 1, turtles.TestPassed, 0),
	}
	tests := []struct {
		name string
		f    state.TestFilter
		want []state.TestRun
	}{
		{"every context", state.TestFilter{Repo: "octo/hello", Name: "login"}, all},
		{"one context", state.TestFilter{Repo: "octo/hello", Name: "login", Context: "integration"}, all[2:3]},
		{"since", state.TestFilter{Repo: "octo/hello", Name: "login", Since: t0.Add(3 * time.Minute)}, all[:2]},
		{"limited", state.TestFilter{Repo: "octo/hello", Name: "login", Limit: 1}, all[:1]},
		{"unknown test", state.TestFilter{Repo: "octo/hello", Name: "nope"}, []state.TestRun{}},
	}
	for _, tt := range tests {
		got, err := db.TestRuns(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: TestRuns (-want +got):\n%s", tt.name, diff)
		}
	}
	for _, f := range []state.TestFilter{{Name: "login"}, {Repo: "octo/hello"}} {
		if _, err := db.TestRuns(ctx, f); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("TestRuns(%+v) = %v, want ErrInvalid", f, err)
		}
	}
	// The test's stats alone, by name.
	stats, err := db.Tests(ctx, state.TestFilter{Repo: "octo/hello", Name: "login"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range stats {
		got = append(got, fmt.Sprintf("%s %s runs %d tasks %d failures %d flakes %d", s.Context, s.Name, s.Runs, s.Tasks, s.Failures, s.RetriedThenPassed))
	}
	want := []string{"unit login runs 3 tasks 2 failures 1 flakes 1", "integration login runs 1 tasks 1 failures 1 flakes 0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tests by name (-want +got):\n%s", diff)
	}
}

// testFlakesAnyOrder: a flake is found whichever attempt's results are
// recorded first, and is gone when the pass is recorded again as a
// failure.
func testFlakesAnyOrder(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	flaky := func() []string {
		t.Helper()
		got, err := db.Tests(ctx, state.TestFilter{FlakyOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range got {
			out = append(out, fmt.Sprintf("%s runs %d failures %d flakes %d", s.Name, s.Runs, s.Failures, s.RetriedThenPassed))
		}
		return out
	}
	for _, res := range []turtles.Result{
		attemptResult(3, pass("login"), pass("db")),
		attemptResult(1, fail("login", 3), pass("db")),
	} {
		if err := db.RecordTests(ctx, res); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"login runs 2 failures 1 flakes 1"}, flaky()); diff != "" {
		t.Errorf("attempt 3 recorded before attempt 1 (-want +got):\n%s", diff)
	}
	if err := db.RecordTests(ctx, attemptResult(3, fail("login", 5), pass("db"))); err != nil {
		t.Fatal(err)
	}
	if got := flaky(); len(got) != 0 {
		t.Errorf("after attempt 3 was recorded again as failed: flaky %q, want none", got)
	}
	// Since counts a flake from its pass.
	if err := db.RecordTests(ctx, attemptResult(2, pass("login"))); err != nil {
		t.Fatal(err)
	}
	for since, want := range map[time.Duration]int{2 * time.Minute: 1, 3 * time.Minute: 0} {
		got, err := db.Tests(ctx, state.TestFilter{FlakyOnly: true, Since: t0.Add(since)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("flaky since t0+%s: %+v, want %d", since, got, want)
		}
	}
}
