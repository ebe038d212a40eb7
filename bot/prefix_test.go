package bot

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
)

// TestRepublishedTaskRunsAsNextAttempt: a task published again after it
// finished (a replayed push) starts at attempt 1 in the queue; it must run
// as attempt 2, say so in its events and log link, and leave attempt 1's
// log as it was.
func TestRepublishedTaskRunsAsNextAttempt(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	task := h.task(turtles.KindTest, "ok", "")
	task.Trusted = true // host mode, which untrusted work may not use
	h.publish(task)
	h.start()
	first := h.events(finishedFor(task.Key()))
	log1 := h.log(task)

	h.publish(task) // Attempt 1 again, as a replayed webhook publishes it
	second := h.events(finishedFor(task.Key()))
	if diff := cmp.Diff([]string{"started ok 1", "finished ok 1 success", "started ok 2", "finished ok 2 success"}, summarize(append(first, second...))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	again := task
	again.Attempt = 2
	wantURL := "https://ci.example/logs/" + store.AttemptPrefix(again)
	for _, ev := range second {
		if ev.LogURL != wantURL {
			t.Errorf("%s event of the second run links %q, want %q", ev.Type, ev.LogURL, wantURL)
		}
	}
	if got := h.log(task); got != log1 {
		t.Errorf("attempt 1's log changed:\n%s\nwant:\n%s", got, log1)
	}
	if res := h.result(again); res.Task.Attempt != 2 || res.Outcome.Class != turtles.Success {
		t.Errorf("attempt 2's result.json = attempt %d, %s; want attempt 2, success", res.Task.Attempt, res.Outcome.Class)
	}
	if res := h.result(task); res.Task.Attempt != 1 {
		t.Errorf("attempt 1's result.json names attempt %d", res.Task.Attempt)
	}
}
