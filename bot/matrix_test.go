package bot

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/queue"
)

// TestPlanMatrix: the plan of a push queues the auto contexts whose branch
// rules allow the branch, with their secrets.
func TestPlanMatrix(t *testing.T) {
	h := newHarness(t, map[string]string{".turtles.yaml": `contexts:
  - name: unit
    command: "true"
    secrets: [TOKEN]
  - name: nightly
    command: "true"
    auto: false
  - name: stable
    command: "true"
    branches:
      push: [stable]
`}, queue.Options{})
	plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
	plan.Ref, plan.Trusted = "refs/heads/main", true
	h.publish(plan)
	h.start()
	evs := h.events(finishedFor(plan.Key()))
	want := []string{"started turtles 1", "queued unit 1", "finished turtles 1 success"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := evs[1].Task.Secrets; !cmp.Equal(got, []string{"TOKEN"}) {
		t.Errorf("unit's secrets %v, want [TOKEN]", got)
	}
}

// TestPlanDefaultConfig: a commit without .turtles.yaml is planned with
// the server's default configuration when there is one.
func TestPlanDefaultConfig(t *testing.T) {
	h := newHarness(t, map[string]string{"README": "no config here"}, queue.Options{})
	def, err := config.Parse("default.yaml", []byte("contexts:\n  - name: lint\n    command: \"true\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Default = def
	plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
	h.publish(plan)
	h.start()
	evs := h.events(finishedFor(plan.Key()))
	want := []string{"started turtles 1", "queued lint 1", "finished turtles 1 success"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
