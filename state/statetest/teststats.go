package statetest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// testTestStatsDays records random results of tasks over four days, with
// retries across midnight, attempts recorded out of order and recorded
// again, and compares Tests for many windows (whole days, parts of days)
// with the same stats counted from the results by hand; then again after
// a Prune that cuts a day in two. A backend that keeps stats per day must
// agree with one that counts every result.
func testTestStatsDays(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var attempts []turtles.Result // the final content of each attempt
	names := []string{"login", "db", "net"}
	outcomes := []turtles.TestOutcome{turtles.TestPassed, turtles.TestPassed, turtles.TestFailed, turtles.TestSkipped, turtles.TestTodo}
	day0 := t0.Truncate(24 * time.Hour)
	for i := range 16 {
		task := Task([]string{"unit", "e2e"}[i%2], 1)
		task.SHA = fmt.Sprintf("%040x", i)
		if i%5 == 4 {
			task.Repo.Name = "octo/other"
		}
		at := day0.Add(time.Duration(rng.IntN(4*24*60)) * time.Minute)
		for n := 1; n <= 1+rng.IntN(3); n++ {
			x := task
			x.Attempt = n
			res := turtles.Result{Task: x, Finished: at, LogURL: fmt.Sprintf("http://x/%d/%d", i, n)}
			for _, name := range names {
				if rng.IntN(4) == 0 {
					continue // this attempt did not run it
				}
				r := turtles.TestResult{Name: name, Outcome: outcomes[rng.IntN(len(outcomes))], Source: "log"}
				if rng.IntN(2) == 0 {
					r.Duration = float64(1 + rng.IntN(100))
				}
				res.Tests = append(res.Tests, r)
			}
			attempts = append(attempts, res)
			at = at.Add(time.Duration(30+rng.IntN(600)) * time.Minute) // the retry, maybe the next day
		}
	}
	// Results on the edges: at midnight, and at a window's start.
	edge := Task("unit", 1)
	edge.SHA = "edge"
	for n, at := range []time.Time{day0.Add(24 * time.Hour), day0.Add(30*time.Hour + 7*time.Minute), day0.Add(48 * time.Hour)} {
		edge.Attempt = n + 1
		attempts = append(attempts, turtles.Result{Task: edge, Finished: at, Tests: []turtles.TestResult{
			{Name: "db", Outcome: []turtles.TestOutcome{turtles.TestFailed, turtles.TestPassed, turtles.TestPassed}[n], Duration: 3}}})
	}
	// Recorded in any order; some first with other content, then again.
	order := rng.Perm(len(attempts))
	for _, i := range order {
		if rng.IntN(3) == 0 {
			wrong := attempts[i]
			wrong.Tests = []turtles.TestResult{{Name: "gone", Outcome: turtles.TestFailed}, {Name: "db", Outcome: turtles.TestPassed, Duration: 7}}
			if err := db.RecordTests(ctx, wrong); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, i := range order {
		if err := db.RecordTests(ctx, attempts[i]); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, rows []turtles.Result, flakes []flake) {
		t.Helper()
		for _, since := range []time.Time{{}, day0, day0.Add(-time.Hour), day0.Add(24 * time.Hour), day0.Add(30*time.Hour + 7*time.Minute),
			day0.Add(47 * time.Hour), day0.Add(72 * time.Hour), day0.Add(5 * 24 * time.Hour)} {
			for _, f := range []state.TestFilter{{Since: since}, {Since: since, FlakyOnly: true}, {Since: since, Repo: "octo/hello", Name: "db"},
				{Since: since, Context: "e2e"}} {
				want := countStats(rows, f, flakes)
				got, err := db.Tests(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for i := range got {
					got[i].LastFailure = nil // a lookup of its own, tested elsewhere
				}
				if diff := gocmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s: Tests(%+v) (-counted +got):\n%s", when, f, diff)
				}
			}
		}
	}
	check("recorded", attempts, countFlakes(attempts))

	cutoff := day0.Add(36 * time.Hour)
	if _, err := db.Prune(ctx, state.Prune{Tests: cutoff}); err != nil {
		t.Fatal(err)
	}
	var kept []turtles.Result
	for _, a := range attempts {
		if !a.Finished.Before(cutoff) {
			kept = append(kept, a)
		}
	}
	// A flake outlives the failure before it, until its pass is pruned.
	var flakes []flake
	for _, fl := range countFlakes(attempts) {
		if !fl.at.Before(cutoff) {
			flakes = append(flakes, fl)
		}
	}
	check("pruned", kept, flakes)
}

// flake is one task's flake of a test, at its first pass after a failure.
type flake struct {
	repo, context, name, task string
	at                        time.Time
}

func countFlakes(rows []turtles.Result) []flake {
	var out []flake
	type key struct{ task, name string }
	failed := map[key]int{} // the first attempt that failed the test
	for _, r := range rows {
		for _, x := range r.Tests {
			k := key{r.Task.ID(), x.Name}
			if a, ok := failed[k]; x.Outcome == turtles.TestFailed && (!ok || r.Task.Attempt < a) {
				failed[k] = r.Task.Attempt
			}
		}
	}
	first := map[key]time.Time{}
	for _, r := range rows {
		for _, x := range r.Tests {
			k := key{r.Task.ID(), x.Name}
			if a, ok := failed[k]; ok && x.Outcome == turtles.TestPassed && r.Task.Attempt > a {
				if at, seen := first[k]; !seen || r.Finished.Before(at) {
					first[k] = r.Finished
				}
			}
		}
	}
	for _, r := range rows {
		for _, x := range r.Tests {
			k := key{r.Task.ID(), x.Name}
			if at, ok := first[k]; ok {
				out = append(out, flake{r.Task.Repo.Name, r.Task.Context, x.Name, k.task, at})
				delete(first, k)
			}
		}
	}
	return out
}

// countStats is Tests(f) counted from rows and flakes by hand.
func countStats(rows []turtles.Result, f state.TestFilter, flakes []flake) []state.TestStats {
	type key struct{ repo, context, name string }
	match := func(k key) bool {
		return (f.Repo == "" || k.repo == f.Repo) && (f.Context == "" || k.context == f.Context) && (f.Name == "" || k.name == f.Name)
	}
	stats := map[key]*state.TestStats{}
	durs := map[key][2]float64{}
	get := func(k key) *state.TestStats {
		if stats[k] == nil {
			stats[k] = &state.TestStats{Repo: k.repo, Context: k.context, Name: k.name}
		}
		return stats[k]
	}
	// A task counts at its first pass or failure of the test.
	firstRun := map[string]int{}
	for _, r := range rows {
		for _, x := range r.Tests {
			id := r.Task.ID() + "\x00" + x.Name
			if a, ok := firstRun[id]; (x.Outcome == turtles.TestPassed || x.Outcome == turtles.TestFailed) && (!ok || r.Task.Attempt < a) {
				firstRun[id] = r.Task.Attempt
			}
		}
	}
	for _, r := range rows {
		if r.Finished.Before(f.Since) {
			continue
		}
		for _, x := range r.Tests {
			k := key{r.Task.Repo.Name, r.Task.Context, x.Name}
			if !match(k) {
				continue
			}
			s := get(k)
			switch x.Outcome {
			case turtles.TestPassed, turtles.TestFailed:
				s.Runs++
				if x.Outcome == turtles.TestFailed {
					s.Failures++
				}
				if firstRun[r.Task.ID()+"\x00"+x.Name] == r.Task.Attempt {
					s.Tasks++
				}
			case turtles.TestSkipped:
				s.Skipped++
			}
			if x.Duration > 0 {
				d := durs[k]
				durs[k] = [2]float64{d[0] + x.Duration, d[1] + 1}
			}
		}
	}
	for _, fl := range flakes {
		k := key{fl.repo, fl.context, fl.name}
		if match(k) && !fl.at.Before(f.Since) && stats[k] != nil {
			stats[k].RetriedThenPassed++
		}
	}
	out := []state.TestStats{}
	for k, s := range stats {
		if d := durs[k]; d[1] > 0 {
			s.MeanDuration = d[0] / d[1]
		}
		if f.FlakyOnly && s.RetriedThenPassed == 0 || !f.FlakyOnly && s.Runs == 0 && s.Skipped == 0 {
			continue
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b state.TestStats) int {
		if c := cmp.Compare(b.RetriedThenPassed, a.RetriedThenPassed); c != 0 {
			return c
		}
		if !f.FlakyOnly {
			if c := cmp.Compare(b.Failures, a.Failures); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Context, b.Context), cmp.Compare(a.Name, b.Name))
	})
	return out
}
