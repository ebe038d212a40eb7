package bot

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/triage"
)

const frobPattern = `issue: https://github.com/owner/repo/issues/77
title: frobnicator times out
scope:
  tests: [frob*]
match:
  glob: "frobnicator timed out after *"
blocking: %s
samples:
  - "frobnicator timed out after 3.5s at 0x7f3a2b1c"
`

// TestTriageVerdicts: a failed test attempt gets exactly one verdict from
// the known-issue patterns: the repository's (for trusted work only) and
// the server's; a failure nothing explains is a regression, also when a
// known issue's line is in the log of an unrelated failing test.
func TestTriageVerdicts(t *testing.T) {
	frob := `echo "not ok 1 - frob works"; echo "frobnicator timed out after 2.1s at 0xdeadbeef"; exit 1`
	tests := []struct {
		name        string
		blocking    string
		trusted     bool
		command     string
		want        []string
		wantVerdict turtles.Verdict
		wantReason  string
		wantMatch   int // line of the first match in result.json, 0 for none
	}{
		{"a blocking known issue stays red, named", "true", true, frob,
			[]string{"started unit 1", "finished unit 1 failure"}, turtles.VerdictKnownIssue,
			"Known issue frobnicator times out (https://github.com/owner/repo/issues/77), log line", 0},
		{"a known issue that does not block passes", "false", true, frob,
			[]string{"started unit 1", "finished unit 1 success"}, turtles.VerdictKnownIssue,
			"Known issue, not blocking: frobnicator times out", 0},
		{"a skip pattern passes even when it says it blocks", "true\naction: skip", true, frob,
			[]string{"started unit 1", "finished unit 1 success"}, turtles.VerdictKnownIssue,
			"Known issue, skipped: frobnicator times out", 0},
		{"an untrusted change's own patterns are not read", "false", false, frob,
			[]string{"started unit 1", "finished unit 1 failure"}, turtles.VerdictRegression, "exit status 1", 0},
		{"the known issue's line in an unrelated test is still a regression", "false", true,
			`echo "ok 1 - frob works"; echo "frobnicator timed out after 2.1s"; echo "not ok 2 - login"; exit 1`,
			[]string{"started unit 1", "finished unit 1 failure"}, turtles.VerdictRegression, "exit status 1", 0},
		{"an infrastructure pattern of the server retries", "false", true,
			`if [ "$TURTLES_ATTEMPT" = 1 ]; then echo "fatal: unable to access 'https://github.com/x/y.git/': Could not resolve host: github.com"; exit 128; fi`,
			[]string{"started unit 1", "retrying unit 1 infra", "started unit 2", "finished unit 2 success"}, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{".turtles.yaml": testConfig,
				RepoKnownIssues + "/77-frob.yaml": strings.Replace(frobPattern, "%s", tt.blocking, 1)}
			h := newHarness(t, files, queue.Options{})
			known, errs := triage.Defaults()
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			h.cfg.Triage = known
			task := h.task(turtles.KindTest, "unit", tt.command)
			task.Trusted = tt.trusted
			h.publish(task)
			h.start()
			evs := h.events(finishedFor(task.Key()))
			if diff := cmp.Diff(tt.want, summarize(evs)); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
			last := evs[len(evs)-1].Outcome
			if turtles.VerdictOf(*last) != tt.wantVerdict || !strings.HasPrefix(last.Reason, tt.wantReason) {
				t.Errorf("outcome %+v, want verdict %q and a reason starting %q", *last, tt.wantVerdict, tt.wantReason)
			}
			wantIssue := ""
			if tt.wantVerdict == turtles.VerdictKnownIssue {
				wantIssue = "https://github.com/owner/repo/issues/77"
			}
			if last.Issue != wantIssue {
				t.Errorf("outcome's issue %q, want %q", last.Issue, wantIssue)
			}
			res := h.result(evs[len(evs)-1].Task)
			if tt.wantVerdict == turtles.VerdictKnownIssue {
				if len(res.Triage) == 0 || res.Triage[0].File != "log" || res.Triage[0].Line == 0 ||
					!strings.Contains(strings.Join(res.Triage[0].Lines, "\n"), "frobnicator timed out after 2.1s at 0xdeadbeef") {
					t.Errorf("result.json triage = %+v, want the log line that matched", res.Triage)
				}
			} else if tt.wantVerdict == turtles.VerdictRegression && len(res.Triage) != 0 {
				t.Errorf("result.json triage = %+v for a regression, want none", res.Triage)
			}
			if tt.wantVerdict != "" && res.Outcome.Verdict != tt.wantVerdict {
				t.Errorf("result.json verdict %q, want %q", res.Outcome.Verdict, tt.wantVerdict)
			}
			h.waitIdle()
		})
	}
}
