package bot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
)

// TestCancelStopsRunningTask: a task cancelled while it runs (its commit was
// superseded) stops at the bot's next heartbeat; the bot reports nothing,
// since the queue already emitted the cancelled outcome.
func TestCancelStopsRunningTask(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	clock := clockwork.NewFakeClock()
	h.cfg.Clock = clock
	h.start()
	task := h.startedAndLogging("echo running now; sleep 60")
	start := time.Now()
	n, err := h.db.Cancel(context.Background(), task.Repo.Name, task.SHA, task.PR, "superseded by a newer push")
	if err != nil || n != 1 {
		t.Fatalf("Cancel = %d, %v", n, err)
	}
	heartbeat(t, clock, h.cfg.Heartbeat)
	evs := h.events(finishedFor(task.Key()))
	if got := evs[len(evs)-1].Outcome; got.Class != turtles.Cancelled || got.Reason != "superseded by a newer push" {
		t.Errorf("final outcome %+v, want cancelled, superseded", got)
	}
	h.waitIdle()
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("the cancelled task ran on for %s", elapsed)
	}
	h.quiet() // waitIdle: the attempt's handling ended
	if _, ok := h.object(store.AttemptPrefix(task) + store.ResultName); ok {
		t.Errorf("the cancelled attempt stored a result")
	}
	if log := h.log(task); !strings.Contains(log, "task cancelled") {
		t.Errorf("log does not say the attempt was cancelled:\n%s", log)
	}
}

// TestPlanUntrusted: the plan of untrusted work gives its tasks no secrets
// and queues nothing for the internal pool.
func TestPlanUntrusted(t *testing.T) {
	h := newHarness(t, map[string]string{".turtles.yaml": `contexts:
  - name: ok
    command: "true"
  - name: deploy
    command: "true"
    pool: internal
`}, queue.Options{})
	plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
	plan.PR, plan.Trusted, plan.Secrets = 9, false, []string{"token"}
	h.publish(plan)
	h.start()
	evs := h.events(finishedFor(plan.Key()))
	// deploy's status says it was not run, rather than staying unset.
	want := []string{"started turtles 1", "queued ok 1", "finished deploy 1 failure", "finished turtles 1 success"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, ev := range evs {
		if ev.Task.Context == "ok" && len(ev.Task.Secrets) > 0 {
			t.Errorf("untrusted task got secrets %v", ev.Task.Secrets)
		}
	}
	if log := h.log(plan); !strings.Contains(log, "deploy not run: pool internal runs trusted work only") {
		t.Errorf("plan log:\n%s", log)
	}
}
