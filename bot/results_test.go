package bot

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

func TestResultsDistinctNames(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{name: "distinct", in: []string{"a", "b"}, want: []string{"a", "b"}},
		{name: "twice", in: []string{"a", "b", "a", "a"}, want: []string{"a", "b", "a (2)", "a (3)"}},
		{name: "suffix already taken", in: []string{"a", "a (2)", "a", "a"}, want: []string{"a", "a (2)", "a (3)", "a (4)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []turtles.TestResult
			for _, n := range tt.in {
				rs = append(rs, turtles.TestResult{Name: n})
			}
			distinctNames(rs)
			var got []string
			for _, r := range rs {
				got = append(got, r.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}
}

// TestResultsFromTAPKeepDuplicates: two TAP streams in a task's log (two
// test programs run in turn) with a test of the same name give two
// results in result.json, each with its own line and outcome.
func TestResultsFromTAPKeepDuplicates(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	task := h.task(turtles.KindTest, "unit", `printf '1..1\nok 1 - loads config\n1..1\nnot ok 1 - loads config # TODO\n'`)
	h.publish(task)
	h.start()
	h.events(finishedFor(task.Key()))
	res := h.result(task)
	type short struct {
		Name    string
		Outcome turtles.TestOutcome
	}
	var got []short
	for _, r := range res.Tests {
		got = append(got, short{r.Name, r.Outcome})
	}
	want := []short{{"loads config", turtles.TestPassed}, {"loads config (2)", turtles.TestTodo}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("tests in result.json (-want +got):\n%s", diff)
	}
	if res.Tests[0].Line+2 != res.Tests[1].Line {
		t.Errorf("lines %d and %d, want two apart", res.Tests[0].Line, res.Tests[1].Line)
	}
}
