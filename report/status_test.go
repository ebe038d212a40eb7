package report_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/internal/golden"
)

// TestStatusGolden renders the commit status people see in each
// situation a task ends in, or waits in, with the reasons its producers
// write (bot, queue, plan), and compares it with testdata/status/NAME.txt.
// Run with -update to rewrite them after a deliberate change, and read
// the diff: these are the sentences on every pull request.
func TestStatusGolden(t *testing.T) {
	dead := finished("linux", 4, turtles.Infra, "gave up after 4 deliveries: the VM did not boot within 5m0s")
	tests := []struct {
		name   string
		events []turtles.Event
	}{
		{"queued", []turtles.Event{queued("linux", 1)}},
		{"running", []turtles.Event{started("linux", 1)}},
		{"success", []turtles.Event{finished("linux", 1, turtles.Success, "")}},
		{"failure-failing-tests", []turtles.Event{finishedExit("linux", 1, turtles.Failure, 1, "exit status 1")}},
		{"failure-timeout", []turtles.Event{finished("linux", 1, turtles.Failure, "timed out after 10m0s")}},
		{"failure-refused-by-policy", []turtles.Event{finished("gpu", 1, turtles.Failure,
			"Not run: pool gpu runs trusted work only (untrusted work may use: public)")}},
		{"failure-plan-config", []turtles.Event{finished(turtles.PlanContext, 1, turtles.Failure, `.turtles.yaml:7: unknown key "comand"`)}},
		{"infra", []turtles.Event{finished("linux", 1, turtles.Infra, "the VM did not boot within 5m0s")}},
		{"infra-unclassified", []turtles.Event{finished("linux", 1, turtles.Infra, turtles.UnclassifiedReason)}},
		{"infra-dead-lettered", []turtles.Event{dead}},
		{"infra-dead-lettered-lost", []turtles.Event{finished("linux", 3, turtles.Infra,
			"gave up after 3 deliveries: the bot running it stopped answering")}},
		{"retrying", []turtles.Event{retryingBecause("linux", 1, "the repository could not be fetched")}},
		// retries: 2 in .turtles.yaml: a test failure runs again, and a
		// pass after it is reported as flaky.
		{"retrying-test-failure", []turtles.Event{retriedFailure("linux", 1, 2)}},
		{"success-flaky", []turtles.Event{retriedFailure("linux", 1, 2),
			finished("linux", 2, turtles.Success, "Flaky: attempt 1 failed (t/login.sh: login as admin), attempt 2 passed")}},
		// The queue took the task back from a silent bot and runs it
		// again: the status stays as it was until the next attempt.
		{"lost", []turtles.Event{started("linux", 1), lost("linux", 1, "the bot stopped heart-beating")}},
		{"cancelled", []turtles.Event{finished("linux", 1, turtles.Cancelled, "superseded by a newer push")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, token)
			for _, ev := range tt.events {
				if err := e.rep.Handle(context.Background(), ev); err != nil {
					t.Fatalf("Handle(%s): %v", ev.Type, err)
				}
			}
			var b strings.Builder
			for _, s := range e.srv.Statuses() {
				target := s.TargetURL
				if target == "" {
					target = "(none)"
				}
				fmt.Fprintf(&b, "context:     %s\nstate:       %s\ntarget:      %s\ndescription: %s\n", s.Context, s.State, target, s.Description)
			}
			golden.Check(t, filepath.Join("testdata", "status", tt.name+".txt"), b.String())
		})
	}
}

func finishedExit(c string, a int, class turtles.Class, code int, reason string) turtles.Event {
	ev := finished(c, a, class, reason)
	ev.Outcome.ExitCode = code
	return ev
}

func retryingBecause(c string, a int, reason string) turtles.Event {
	ev := retrying(c, a)
	ev.Outcome.Reason = reason
	return ev
}

func lost(c string, a int, reason string) turtles.Event {
	ev := event(turtles.EventLost, c, a)
	ev.Outcome = &turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: reason}
	return ev
}

// retriedFailure is the retrying event of a test failure of attempt of a
// context with retries.
func retriedFailure(context string, attempt, retries int) turtles.Event {
	ev := finished(context, attempt, turtles.Failure, "exit status 1")
	ev.Type = turtles.EventRetrying
	ev.Task.Retries = retries
	return ev
}
