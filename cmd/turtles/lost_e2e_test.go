package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/state"
)

// TestKilledBotAttemptEnds: serve is SIGKILLed while a task sleeps. No
// process of the task survives it, and once serve is back and the lease
// has run out, the lost attempt has ended as infra in the API, naming
// the bot and its last heartbeat, its log page is not live, and its raw
// log ends with the same sentence (issue 22).
func TestKilledBotAttemptEnds(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	pushAccess(gh)
	repo := t.TempDir()
	const marker = "4242.25" // a sleep no other process runs
	sha := e2e.GitRepo(t, repo, map[string]string{
		".turtles.yaml": "contexts:\n  - name: slow\n    command: echo started; sleep " + marker + "\n",
	})
	data := t.TempDir()
	s := e2e.Serve(t, gh, data, "--lease", "2s", "--bot-name", "bot2")
	body := prPayload(repo, sha)
	s.Webhook("pull_request", "lost-1", body, e2e.Sign(body))
	e2e.WaitFor(t, 30*time.Second, "the task's sleep", func() bool { return len(sleepers(marker)) > 0 })
	if err := s.Stop(syscall.SIGKILL); err == nil {
		t.Fatal("serve exited cleanly after SIGKILL")
	}
	e2e.WaitFor(t, 5*time.Second, "the task's processes to die with the bot", func() bool { return len(sleepers(marker)) == 0 })

	s.Start()
	var lost state.Attempt
	e2e.WaitFor(t, 30*time.Second, "the lost attempt to end", func() bool {
		for _, x := range s.Tasks(sha) {
			for _, a := range x.Attempts {
				if x.Context == "slow" && a.Number == 1 && a.State != state.Running {
					lost = a
					return true
				}
			}
		}
		return false
	})
	if lost.Outcome == nil || lost.Outcome.Class != "infra" || lost.Finished == nil ||
		!strings.HasPrefix(lost.Outcome.Reason, "bot bot2 stopped heart-beating at ") {
		t.Fatalf("lost attempt = %+v (outcome %+v), want infra, finished, \"bot bot2 stopped heart-beating at ...\"", lost, lost.Outcome)
	}
	var id string
	for _, x := range s.Tasks(sha) {
		if x.Context == "slow" {
			id = x.ID
		}
	}
	_, b := s.Get("/tasks/" + id + "/1")
	page := string(b)
	if strings.Contains(page, "(live)") || !strings.Contains(page, "infra") {
		t.Errorf("log page of the lost attempt is live or does not say infra:\n%s", page)
	}
	raw, err := os.ReadFile(filepath.Join(data, "store", "octo/hello", sha, "slow", "1", "log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "turtles: " + lost.Outcome.Reason + "\n"; !strings.HasSuffix(string(raw), want) {
		t.Errorf("raw log ends %q, want it to end with %q", tail(string(raw), 200), want)
	}
}

// sleepers returns the pids of processes whose command line holds marker.
func sleepers(marker string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && filepath.Base(args[0]) == "sleep" && args[1] == marker {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids
}
