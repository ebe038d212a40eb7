package metrics

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/turtles-ci/turtles"
)

var t0 = time.Date(2024, 5, 1, 16, 2, 0, 0, time.UTC)

func event(typ turtles.EventType, pool string, attempt int, o *turtles.Outcome) turtles.Event {
	return turtles.Event{Type: typ, Time: t0, Outcome: o,
		Task: turtles.Task{Pool: pool, Attempt: attempt, Created: t0.Add(-90 * time.Second)}}
}

func TestTasksObserve(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewTasks(reg)
	if err != nil {
		t.Fatal(err)
	}
	late := event(turtles.EventStarted, "vm", 1, nil)
	late.Task.Created = t0.Add(-10 * time.Minute)
	skewed := event(turtles.EventStarted, "vm", 1, nil)
	skewed.Task.Created = t0.Add(time.Second) // the bot's clock is behind the hook's
	for _, ev := range []turtles.Event{
		event(turtles.EventStarted, "public", 1, nil), // waited 90 s
		late,   // waited 10 min
		skewed, // waited "less than 0": 0
		event(turtles.EventStarted, "public", 2, nil),                                       // a retry: waited on purpose
		event(turtles.EventQueued, "arm", 1, nil),                                           // not a start; arm's histogram at 0
		event(turtles.EventHeartbeat, "public", 1, nil),                                     // nothing to count
		event(turtles.EventFinished, "public", 1, &turtles.Outcome{Class: turtles.Success}), // no verdict
		event(turtles.EventFinished, "public", 2, &turtles.Outcome{Class: turtles.Success, Verdict: turtles.VerdictFlake}),
		event(turtles.EventFinished, "vm", 1, &turtles.Outcome{Class: turtles.Failure}), // regression, by its class
		event(turtles.EventFinished, "vm", 5, &turtles.Outcome{Class: turtles.Infra}),   // dead-lettered
		event(turtles.EventFinished, "vm", 1, &turtles.Outcome{Class: "bogus", Verdict: "made-up"}),
		event(turtles.EventFinished, "vm", 1, nil), // malformed: nothing
		event(turtles.EventRetrying, "vm", 1, &turtles.Outcome{Class: turtles.Infra}),
		event(turtles.EventRetrying, "public", 1, &turtles.Outcome{Class: turtles.Failure}), // a test retried
		event(turtles.EventLost, "vm", 2, nil),                                              // its bot died
	} {
		m.Observe(ev)
	}
	const want = `
# HELP turtles_task_attempts_total Task attempts that ended, by pool and outcome class: final ones, those to be retried, and those lost with their bot (infra).
# TYPE turtles_task_attempts_total counter
turtles_task_attempts_total{class="failure",pool="public"} 1
turtles_task_attempts_total{class="failure",pool="vm"} 1
turtles_task_attempts_total{class="infra",pool="vm"} 3
turtles_task_attempts_total{class="other",pool="vm"} 1
turtles_task_attempts_total{class="success",pool="public"} 2
# HELP turtles_tasks_finished_total Tasks that ended (their final status), by pool, outcome class and verdict (none when the class says it all).
# TYPE turtles_tasks_finished_total counter
turtles_tasks_finished_total{class="failure",pool="vm",verdict="regression"} 1
turtles_tasks_finished_total{class="infra",pool="vm",verdict="infra"} 1
turtles_tasks_finished_total{class="other",pool="vm",verdict="other"} 1
turtles_tasks_finished_total{class="success",pool="public",verdict="flake"} 1
turtles_tasks_finished_total{class="success",pool="public",verdict="none"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "turtles_task_attempts_total", "turtles_tasks_finished_total"); err != nil {
		t.Error(err)
	}
	// The histogram: public waited 90 s; vm 10 min and 0 s.
	wantWait := `
# HELP turtles_queue_wait_seconds Time from a task's publish to the start of its first attempt, by pool.
# TYPE turtles_queue_wait_seconds histogram
` + buckets("arm") + buckets("public", 90) + buckets("vm", 0, 600)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantWait), "turtles_queue_wait_seconds"); err != nil {
		t.Error(err)
	}
}

// buckets is the text exposition of turtles_queue_wait_seconds for pool
// with the observations obs.
func buckets(pool string, obs ...float64) string {
	var b strings.Builder
	sum := 0.0
	for _, o := range obs {
		sum += o
	}
	for _, le := range append(QueueWaitBuckets, -1) {
		n := 0
		for _, o := range obs {
			if le < 0 || o <= le {
				n++
			}
		}
		bound := "+Inf"
		if le >= 0 {
			bound = formatFloat(le)
		}
		b.WriteString("turtles_queue_wait_seconds_bucket{pool=\"" + pool + "\",le=\"" + bound + "\"} " + formatFloat(float64(n)) + "\n")
	}
	b.WriteString("turtles_queue_wait_seconds_sum{pool=\"" + pool + "\"} " + formatFloat(sum) + "\n")
	b.WriteString("turtles_queue_wait_seconds_count{pool=\"" + pool + "\"} " + formatFloat(float64(len(obs))) + "\n")
	return b.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestQueueWaitBucketsServeTheSLO(t *testing.T) {
	found := false
	for i, b := range QueueWaitBuckets {
		if i > 0 && b <= QueueWaitBuckets[i-1] {
			t.Errorf("buckets not increasing at %v", b)
		}
		found = found || b == SLOWait
	}
	if !found {
		t.Errorf("no bucket at the SLO's %d s: %v", SLOWait, QueueWaitBuckets)
	}
}
