package bot

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// TestRetriesTellFlakesFromRegressions: a context with retries runs a
// failed test attempt again on the same commit; a pass after a failure is
// a success whose reason says it was flaky, a failure on every attempt is
// the failure, and each attempt keeps its own log and result.
func TestRetriesTellFlakesFromRegressions(t *testing.T) {
	tests := []struct {
		name          string
		command       string
		retries       int
		maxDeliveries int
		want          []string
		wantReason    string
	}{
		{"a flake passes on its retry", `echo "not ok 1 - login as admin"; [ "$TURTLES_ATTEMPT" -ge 2 ]`, 2, 5,
			[]string{"started flaky 1", "retrying flaky 1 failure", "started flaky 2", "finished flaky 2 success"},
			"Flaky: attempt 1 failed (login as admin), attempt 2 passed"},
		{"a regression fails every attempt", "exit 1", 1, 5,
			[]string{"started flaky 1", "retrying flaky 1 failure", "started flaky 2", "finished flaky 2 failure"},
			"exit status 1"},
		{"no retries: the failure is final", `[ "$TURTLES_ATTEMPT" -ge 2 ]`, 0, 5,
			[]string{"started flaky 1", "finished flaky 1 failure"}, "exit status 1"},
		{"no delivery left: final, not dead-lettered as infra", `[ "$TURTLES_ATTEMPT" -ge 3 ]`, 5, 2,
			[]string{"started flaky 1", "retrying flaky 1 failure", "started flaky 2", "finished flaky 2 failure"}, "exit status 1"},
		{"a plain pass says nothing of flakes", "true", 2, 5,
			[]string{"started flaky 1", "finished flaky 1 success"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil, queue.Options{MaxDeliveries: tt.maxDeliveries})
			h.cfg.MaxDeliveries = tt.maxDeliveries
			task := h.task(turtles.KindTest, "flaky", tt.command)
			task.Retries = tt.retries
			h.publish(task)
			h.start()
			evs := h.events(finishedFor(task.Key()))
			if diff := cmp.Diff(tt.want, summarize(evs)); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
			last := evs[len(evs)-1]
			if last.Outcome.Reason != tt.wantReason {
				t.Errorf("final reason %q, want %q", last.Outcome.Reason, tt.wantReason)
			}
			// Every attempt has its own result and log.
			for a := 1; a <= last.Task.Attempt; a++ {
				at := task
				at.Attempt = a
				res := h.result(at)
				want := turtles.Failure
				if a == last.Task.Attempt {
					want = last.Outcome.Class
				}
				if res.Outcome.Class != want {
					t.Errorf("attempt %d result %+v, want %s", a, res.Outcome, want)
				}
				if log := h.log(at); !strings.Contains(log, "attempt "+string(rune('0'+a))) {
					t.Errorf("attempt %d log does not name its attempt:\n%s", a, log)
				}
			}
			h.waitIdle()
		})
	}
}

// TestQuarantine: a failed attempt whose failed tests are all on the
// repository's quarantine list passes as a flake, for trusted work only;
// one more failed test, or an untrusted change, is a regression.
func TestQuarantine(t *testing.T) {
	tests := []struct {
		name        string
		command     string
		trusted     bool
		wantClass   turtles.Class
		wantVerdict turtles.Verdict
		wantReason  string
	}{
		{"all failed tests quarantined", `echo "ok 1 - TestLogin"; echo "not ok 2 - TestFlakyNetwork"; exit 1`, true,
			turtles.Success, turtles.VerdictFlake, "Flaky: quarantined tests failed: TestFlakyNetwork"},
		{"one failed test is not", `echo "not ok 1 - TestFlakyNetwork"; echo "not ok 2 - TestLogin"; exit 1`, true,
			turtles.Failure, turtles.VerdictRegression, "exit status 1"},
		{"no test names: nothing to match", "exit 1", true, turtles.Failure, turtles.VerdictRegression, "exit status 1"},
		{"an untrusted change cannot quarantine", `echo "not ok 1 - TestFlakyNetwork"; exit 1`, false,
			turtles.Failure, turtles.VerdictRegression, "exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil, queue.Options{})
			task := h.task(turtles.KindTest, "unit", tt.command)
			task.Trusted, task.Quarantine = tt.trusted, []string{"TestFlaky*"}
			h.publish(task)
			h.start()
			evs := h.events(finishedFor(task.Key()))
			last := evs[len(evs)-1].Outcome
			if last.Class != tt.wantClass || turtles.VerdictOf(*last) != tt.wantVerdict || last.Reason != tt.wantReason {
				t.Errorf("outcome %+v, want %s, verdict %s, reason %q", *last, tt.wantClass, tt.wantVerdict, tt.wantReason)
			}
			h.waitIdle()
		})
	}
}
