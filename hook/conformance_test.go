package hook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

// sharedWebhooks finds the shared folder of real GitHub payloads beside the
// repository: <repo root>/../shared/testdata/github-webhooks.
func sharedWebhooks(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 32 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "testdata", "github-webhooks")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Fatal("no go.mod above the test's directory")
	return ""
}

// TestConformance replays every EVENT[.ACTION].payload.json, ours and the
// shared real ones, through the receiver and checks the answer against the
// rules, reading what they depend on from the payload itself.
func TestConformance(t *testing.T) {
	t.Run("ours", func(t *testing.T) { replayAll(t, filepath.Join("testdata", "github")) })
	t.Run("shared", func(t *testing.T) {
		dir := sharedWebhooks(t)
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("no shared payloads: %v", err)
		}
		replayAll(t, dir)
	})
}

func replayAll(t *testing.T, dir string) {
	files, err := filepath.Glob(filepath.Join(dir, "*.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.payload.json in %s", dir)
	}
	for _, file := range files {
		name := filepath.Base(file)
		event, _, _ := strings.Cut(strings.TrimSuffix(name, ".payload.json"), ".")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wantCode, want := expect(t, event, body)
			q := &fakeQueue{}
			h := newTestHook(t, q, 0)
			resp := send(t, h, 0, request{event: event, body: body, delivery: "conformance-" + name, wantCode: wantCode})
			if diff := cmp.Diff(want, q.tasks); diff != "" {
				t.Errorf("published tasks (-want +got):\n%s", diff)
			}
			wantIDs := []string{}
			for _, task := range want {
				wantIDs = append(wantIDs, task.ID())
			}
			if diff := cmp.Diff(wantIDs, resp.Tasks); diff != "" {
				t.Errorf("answer's task IDs (-want +got):\n%s", diff)
			}
		})
	}
}

// expect is the rule, applied to a payload decoded generically.
func expect(t *testing.T, event string, body []byte) (int, []turtles.Task) {
	t.Helper()
	var p struct {
		Action      string `json:"action"`
		Ref         string `json:"ref"`
		After       string `json:"after"`
		Deleted     bool   `json:"deleted"`
		PullRequest struct {
			Number            int    `json:"number"`
			AuthorAssociation string `json:"author_association"`
			Head              struct {
				SHA string `json:"sha"`
			} `json:"head"`
		} `json:"pull_request"`
		Repository struct {
			FullName string `json:"full_name"`
			CloneURL string `json:"clone_url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	repo := turtles.Repo{Name: p.Repository.FullName, CloneURL: p.Repository.CloneURL}
	task := func(sha, ref string, pr int, trusted bool) []turtles.Task {
		return []turtles.Task{{
			Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
			Repo: repo, SHA: sha, Ref: ref, PR: pr, Pool: turtles.DefaultPool,
			Attempt: 1, Trusted: trusted, Created: testNow,
		}}
	}
	switch event {
	case "ping":
		return 200, nil
	case "push":
		if p.Deleted || strings.Trim(p.After, "0") == "" {
			return 202, nil
		}
		return 200, task(p.After, p.Ref, 0, true)
	case "pull_request":
		switch p.Action {
		case "opened", "synchronize", "reopened":
			n := p.PullRequest.Number
			trusted := map[string]bool{"OWNER": true, "MEMBER": true, "COLLABORATOR": true}[p.PullRequest.AuthorAssociation]
			return 200, task(p.PullRequest.Head.SHA, fmt.Sprintf("refs/pull/%d/head", n), n, trusted)
		}
	}
	return 202, nil
}
