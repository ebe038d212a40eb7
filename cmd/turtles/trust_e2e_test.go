package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/gate"
)

func commentPayload(repoDir, login, assoc, body string) []byte {
	b, _ := json.Marshal(map[string]any{
		"action":     "created",
		"issue":      map[string]any{"number": 7, "pull_request": map[string]any{"url": "x"}},
		"comment":    map[string]any{"body": body, "author_association": assoc, "user": map[string]any{"login": login}},
		"repository": map[string]any{"full_name": "octo/hello", "clone_url": "file://" + repoDir},
	})
	return b
}

func strangerPR(repoDir, action, before, sha string) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": action, "number": 7, "before": before,
		"pull_request": map[string]any{
			"number": 7, "author_association": "CONTRIBUTOR", "user": map[string]any{"login": "stranger"},
			"head": map[string]any{"sha": sha}, "base": map[string]any{"ref": "main"},
		},
		"repository": map[string]any{"full_name": "octo/hello", "clone_url": "file://" + repoDir},
	})
	return b
}

// TestServeTrustAndScan runs `turtles serve` with the gate and the
// scanner: the branch head is scanned at start and tested; a stranger's
// pull request waits; a forged /ok-to-test does nothing; a member's runs
// it without the internal pool; a new push waits again.
func TestServeTrustAndScan(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	repoDir := filepath.Join(base, "octo", "hello.git")
	os.MkdirAll(repoDir, 0o755)
	const matrix = "contexts:\n  - name: ok\n    command: echo fine\n  - name: deploy\n    command: echo deploying\n    pool: internal\n"
	mainSHA := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": matrix})
	prSHA := e2e.GitRepo(t, repoDir, map[string]string{"a.txt": "stranger's change"})
	gh.SetBranch("octo/hello", "main", mainSHA)
	gh.SetFile("octo/hello", mainSHA, ".turtles.yaml", []byte(matrix))
	gh.SetFile("octo/hello", prSHA, ".turtles.yaml", []byte(matrix))
	gh.SetPulls("octo/hello", githubtest.PullRequest{Number: 7, HeadSHA: prSHA, BaseRef: "main", Author: "stranger"})
	gh.AddMember("octo", "maint")

	// The contexts have no image: an approved stranger's run on the host
	// only in a pool the operator dedicates to it.
	s := e2e.Serve(t, gh, t.TempDir(), "--trusted-orgs", "octo", "--scan-repos", "octo/hello",
		"--clone-base-url", "file://"+base, "--untrusted-host-pools", "public")
	// The scan at start: main is tested although no webhook came, and the
	// pull request waits.
	if st := e2e.WaitFinal(t, gh, "octo/hello", mainSHA, 30*time.Second, "ok")["ok"]; st.State != "success" {
		t.Errorf("main's ok: %+v", st)
	}
	e2e.WaitFor(t, 10*time.Second, "waiting status", func() bool {
		st, ok := gh.Final("octo/hello", prSHA, "turtles")
		return ok && st.Description == gate.Waiting(prSHA)
	})

	body := strangerPR(repoDir, "opened", "", prSHA)
	if code, out := s.Webhook("pull_request", "t-1", body, e2e.Sign(body)); code != 200 || !strings.Contains(out, "gate") {
		t.Fatalf("stranger's pull request: %d %s", code, out)
	}
	body = commentPayload(repoDir, "stranger", "CONTRIBUTOR", "/ok-to-test "+prSHA)
	if code, out := s.Webhook("issue_comment", "t-2", body, e2e.Sign(body)); code != 200 {
		t.Fatalf("forged approval: %d %s", code, out)
	}
	time.Sleep(time.Second)
	if ts := s.Tasks(prSHA); len(ts) != 0 {
		t.Fatalf("forged /ok-to-test ran %d tasks", len(ts))
	}

	body = commentPayload(repoDir, "maint", "CONTRIBUTOR", "LGTM\n/ok-to-test "+prSHA)
	if code, out := s.Webhook("issue_comment", "t-3", body, e2e.Sign(body)); code != 200 {
		t.Fatalf("approval: %d %s", code, out)
	}
	if st := e2e.WaitFinal(t, gh, "octo/hello", prSHA, 30*time.Second, "ok")["ok"]; st.State != "success" {
		t.Errorf("approved pull request's ok: %+v", st)
	}
	if st, _ := gh.Final("octo/hello", prSHA, "turtles"); st.Description != "Approved by @maint for this commit" {
		t.Errorf("plan status after approval: %+v", st)
	}
	// Refused in the plan, with a status that says so; never queued, so
	// never pending.
	if st, ok := gh.Final("octo/hello", prSHA, "deploy"); !ok || st.State != "failure" || !strings.HasPrefix(st.Description, "Not run: pool internal runs trusted work only") {
		t.Errorf("untrusted pull request's internal-pool context: %+v (set: %t), want a failure saying it was not run", st, ok)
	}
	for _, st := range gh.Statuses() {
		if st.SHA == prSHA && st.Context == "deploy" && st.State == "pending" {
			t.Errorf("untrusted pull request's internal-pool context was queued or run: %+v", st)
		}
	}

	// A new push needs a new approval.
	newSHA := e2e.GitRepo(t, repoDir, map[string]string{"a.txt": "more"})
	gh.SetPulls("octo/hello", githubtest.PullRequest{Number: 7, HeadSHA: newSHA, BaseRef: "main", Author: "stranger"})
	body = strangerPR(repoDir, "synchronize", prSHA, newSHA)
	if code, out := s.Webhook("pull_request", "t-4", body, e2e.Sign(body)); code != 200 {
		t.Fatalf("new push: %d %s", code, out)
	}
	e2e.WaitFor(t, 10*time.Second, "waiting status on the new head", func() bool {
		st, ok := gh.Final("octo/hello", newSHA, "turtles")
		return ok && st.Description == gate.Waiting(newSHA)
	})
	if ts := s.Tasks(newSHA); len(ts) != 0 {
		t.Errorf("unapproved new push ran %d tasks", len(ts))
	}
}
