package attack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

const replayRepo = "octo/again"

// replayMatrix's log differs from run to run.
const replayMatrix = "contexts:\n  - name: ok\n    command: echo run $(date +%s%N) $$\n"

// TestAttackReplayOverwritesLog: a push that gets past the webhook's
// dedupe publishes a commit's finished task again, and the queue counts
// it from attempt 1 again. Here it is a signed push that puts main back on
// a commit already tested (its body differs from the first push's, so
// neither its delivery id nor its body hash was seen); a replayed body
// that some future change lets through would do the same. At HEAD the
// second run wrote its log over the first run's. It must run as attempt 2
// under a prefix of its own, link that log, and leave attempt 1's as it
// was.
func TestAttackReplayOverwritesLog(t *testing.T) {
	attack(t, "store: a finished task published again runs as attempt 1 over the first run's log")
	gh := githubtest.NewServer(t, e2e.Token)
	repoDir := filepath.Join(t.TempDir(), "octo", "again.git")
	os.MkdirAll(repoDir, 0o755)
	s := e2e.Serve(t, gh, t.TempDir())
	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": replayMatrix})
	gh.SetFile(replayRepo, sha, ".turtles.yaml", []byte(replayMatrix))
	push := func(delivery, before string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "before": before, "after": sha, "forced": before != "",
			"repository": map[string]any{"full_name": replayRepo, "clone_url": "file://" + repoDir}})
		if code, out := s.Webhook("push", delivery, b, e2e.Sign(b)); code != 200 {
			t.Fatalf("push %s: %d %s", delivery, code, out)
		}
	}
	logOf := func(attempt int) string {
		t.Helper()
		path := "/logs/" + store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: replayRepo}, SHA: sha, Context: "ok", Attempt: attempt}) + store.LogName
		resp, body := s.Get(path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return string(body)
	}
	// finished waits for a finished attempt numbered n of the context.
	finished := func(n int) state.Attempt {
		t.Helper()
		var got state.Attempt
		e2e.WaitFor(t, 90*time.Second, fmt.Sprintf("attempt %d finished", n), func() bool {
			for _, tk := range s.Tasks(sha) {
				for _, a := range tk.Attempts {
					if tk.Context == "ok" && a.Number == n && a.Finished != nil {
						got = a
						return true
					}
				}
			}
			return false
		})
		return got
	}

	push("first", "")
	finished(1)
	first := logOf(1)
	if !strings.Contains(first, "run ") {
		t.Fatalf("attempt 1's log does not show the run:\n%s", first)
	}

	push("back-to-it", strings.Repeat("1", 40))
	second := finished(2)
	if first2 := logOf(1); first2 != first {
		t.Errorf("attempt 1's log changed:\n%s\nwas:\n%s", first2, first)
	}
	if log2 := logOf(2); log2 == first || !strings.Contains(log2, "run ") {
		t.Errorf("attempt 2's log is not its own run:\n%s", log2)
	}
	if !strings.HasSuffix(second.LogURL, "/2") {
		t.Errorf("attempt 2 links the log %q, want attempt 2's", second.LogURL)
	}
	// The task's page still shows the first run as it ended.
	for _, tk := range s.Tasks(sha) {
		if tk.Context != "ok" {
			continue
		}
		for _, a := range tk.Attempts {
			if a.Number == 1 && (a.Finished == nil || a.Outcome == nil || a.Outcome.Class != turtles.Success) {
				t.Errorf("after the rerun, attempt 1 shows as %+v, want it finished with success", a)
			}
		}
	}
}
