package bot

import (
	"os"
	"path/filepath"
	"strings"
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

// TestPlanPathsAndBranches: a pull request's plan applies the branch rules
// of its base branch and the path filters to what it changed since its
// base; contexts its paths leave out get a "skipped" success, so that a
// scan does not take them for lost work.
func TestPlanPathsAndBranches(t *testing.T) {
	h := newHarness(t, map[string]string{".turtles.yaml": `contexts:
  - name: unit
    command: "true"
  - name: docs
    command: "true"
    run_if_changed: ["docs/**"]
  - name: vm
    command: "true"
    skip_if_only_changed: ["docs/**", "*.md"]
  - name: rhel
    command: "true"
    branches:
      pull_request: ["rhel-*"]
`, "README.md": "hello\n"}, queue.Options{})
	base := h.sha
	if err := os.MkdirAll(filepath.Join(h.repo, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.repo, "docs", "guide.txt"), []byte("read me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, h.repo, "add", "-A")
	gitT(t, h.repo, "commit", "-q", "-m", "docs only")
	head := gitT(t, h.repo, "rev-parse", "HEAD")

	plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
	plan.SHA, plan.PR, plan.Base, plan.BaseSHA, plan.Trusted = head, 3, "main", base, true
	h.publish(plan)
	h.start()
	evs := h.events(finishedFor(plan.Key()))
	// Queued tasks' events, then the skipped contexts', then the plan's:
	// all go with the plan's ack.
	want := []string{"started turtles 1", "queued unit 1", "queued docs 1", "finished vm 1 success", "finished turtles 1 success"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, ev := range evs {
		if ev.Task.Context == "vm" && (ev.Outcome == nil || !strings.HasPrefix(ev.Outcome.Reason, "Skipped")) {
			t.Errorf("vm's outcome %+v, want a reason saying it was skipped", ev.Outcome)
		}
	}
}
