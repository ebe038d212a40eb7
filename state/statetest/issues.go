package statetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// testKnownIssues: every attempt whose verdict a known issue decided
// counts once for it, in the week of its end; duplicates and a second
// end of one attempt do not count twice; filters and pruning apply.
func testKnownIssues(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	const frob, dns = "https://github.com/octo/hello/issues/77", "https://docs.example/triage#checkout-dns"
	known := func(issue string) *turtles.Outcome {
		return &turtles.Outcome{Class: turtles.Failure, Reason: "Known issue " + issue, Verdict: turtles.VerdictKnownIssue, Issue: issue}
	}
	infra := &turtles.Outcome{Class: turtles.Infra, Reason: "known infrastructure problem", Verdict: turtles.VerdictInfra, Issue: dns}
	other := Task("other", 1)
	other.Repo.Name = "octo/other"
	week2 := t0.Add(7 * 24 * time.Hour)
	for i, ev := range []turtles.Event{
		{ID: "a1", Type: turtles.EventRetrying, Task: Task("a", 1), Time: t0, Outcome: infra},
		{ID: "a2", Type: turtles.EventFinished, Task: Task("a", 2), Time: t0.Add(time.Minute), Outcome: known(frob)},
		{ID: "a2", Type: turtles.EventFinished, Task: Task("a", 2), Time: t0.Add(time.Minute), Outcome: known(frob)}, // duplicate
		{ID: "b1", Type: turtles.EventFinished, Task: Task("b", 1), Time: week2, Outcome: known(frob)},
		{ID: "b1-again", Type: turtles.EventFinished, Task: Task("b", 1), Time: week2.Add(time.Second), Outcome: known(frob)},
		{ID: "c1", Type: turtles.EventFinished, Task: Task("c", 1), Time: week2, Outcome: &turtles.Outcome{Class: turtles.Failure, Reason: "exit status 1"}},
		{ID: "d1", Type: turtles.EventStarted, Task: Task("d", 1), Time: week2, Outcome: known(frob)}, // not an end
		{ID: "o1", Type: turtles.EventFinished, Task: other, Time: week2.Add(time.Hour), Outcome: known(frob)},
	} {
		if _, err := db.Record(ctx, ev); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
	monday := time.Date(2024, 4, 29, 0, 0, 0, 0, time.UTC)
	if got := state.WeekOf(t0); !got.Equal(monday) {
		t.Errorf("WeekOf(%s) = %s, want %s", t0, got, monday)
	}
	got, err := db.KnownIssues(ctx, state.IssueFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []state.IssueStats{
		{Issue: frob, Total: 3, Weeks: []state.WeekCount{{Week: monday.AddDate(0, 0, 7), Count: 2}, {Week: monday, Count: 1}},
			Last: week2.Add(time.Hour), LastTask: other.ID(), Reason: "Known issue " + frob},
		{Issue: dns, Total: 1, Weeks: []state.WeekCount{{Week: monday, Count: 1}},
			Last: t0, LastTask: Task("a", 1).ID(), Reason: "known infrastructure problem"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("KnownIssues (-want +got):\n%s", d)
	}

	got, err = db.KnownIssues(ctx, state.IssueFilter{Repo: "octo/hello", Since: week2, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	want = []state.IssueStats{{Issue: frob, Total: 1, Weeks: []state.WeekCount{{Week: monday.AddDate(0, 0, 7), Count: 1}},
		Last: week2.Add(time.Second), LastTask: Task("b", 1).ID(), Reason: "Known issue " + frob}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("KnownIssues of octo/hello since %s (-want +got):\n%s", week2, d)
	}
	if got, err := db.KnownIssues(ctx, state.IssueFilter{Limit: 1}); err != nil || len(got) != 1 || got[0].Issue != frob {
		t.Errorf("KnownIssues limited to 1 = %+v, %v; want frob only", got, err)
	}

	pruned, err := db.Prune(ctx, state.Prune{Tasks: week2})
	if err != nil {
		t.Fatal(err)
	}
	if pruned.IssueHits != 2 {
		t.Errorf("Prune before %s: %d known-issue hits, want 2", week2, pruned.IssueHits)
	}
	if got, err := db.KnownIssues(ctx, state.IssueFilter{}); err != nil || len(got) != 1 || got[0].Total != 3-1 {
		t.Errorf("KnownIssues after the prune = %+v, %v; want frob twice", got, err)
	}
}
