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
	"github.com/turtles-ci/turtles/command"
	"github.com/turtles-ci/turtles/gate"
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
			wantCode, want, wantGate := expect(t, event, body)
			q := &fakeQueue{}
			h := newTestHook(t, q, 0)
			resp := send(t, h, 0, request{event: event, body: body, delivery: "conformance-" + name, wantCode: wantCode})
			if diff := cmp.Diff(want, q.tasks); diff != "" {
				t.Errorf("published tasks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantGate, q.requests); diff != "" {
				t.Errorf("requests to the gate (-want +got):\n%s", diff)
			}
			if wantCancel := supersededBy(t, event, body); wantCancel != "" && (len(q.cancels) != 1 || !strings.HasPrefix(q.cancels[0], wantCancel)) {
				t.Errorf("cancels %q, want one of %s", q.cancels, wantCancel)
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

// supersededBy is, for a pull request's new push, the old head whose tasks
// are cancelled, as "repo@sha#pr".
func supersededBy(t *testing.T, event string, body []byte) string {
	var p struct {
		Action      string `json:"action"`
		Before      string `json:"before"`
		PullRequest struct {
			Number int `json:"number"`
		} `json:"pull_request"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if event != "pull_request" || p.Action != "synchronize" {
		return ""
	}
	return fmt.Sprintf("%s@%s#%d", p.Repository.FullName, p.Before, p.PullRequest.Number)
}

// expect is the rule, applied to a payload decoded generically: trusted
// work is queued, the rest goes to the gate.
func expect(t *testing.T, event string, body []byte) (int, []turtles.Task, []gate.Request) {
	t.Helper()
	var p struct {
		Action      string `json:"action"`
		Ref         string `json:"ref"`
		Before      string `json:"before"`
		After       string `json:"after"`
		Deleted     bool   `json:"deleted"`
		PullRequest struct {
			Number            int    `json:"number"`
			AuthorAssociation string `json:"author_association"`
			User              struct {
				Login string `json:"login"`
			} `json:"user"`
			Head struct {
				SHA string `json:"sha"`
			} `json:"head"`
			Base struct {
				Ref string `json:"ref"`
				SHA string `json:"sha"`
			} `json:"base"`
		} `json:"pull_request"`
		Issue struct {
			Number      int             `json:"number"`
			PullRequest json.RawMessage `json:"pull_request"`
		} `json:"issue"`
		Comment struct {
			Body              string `json:"body"`
			AuthorAssociation string `json:"author_association"`
			User              struct {
				Login string `json:"login"`
			} `json:"user"`
		} `json:"comment"`
		Repository struct {
			FullName string `json:"full_name"`
			CloneURL string `json:"clone_url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	repo := turtles.Repo{Name: p.Repository.FullName, CloneURL: p.Repository.CloneURL}
	task := func(sha, ref string, pr int, trusted bool, base, baseSHA string) []turtles.Task {
		return []turtles.Task{{
			Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
			Repo: repo, SHA: sha, Ref: ref, PR: pr, Base: base, BaseSHA: baseSHA, Pool: turtles.DefaultPool,
			Attempt: 1, Trusted: trusted, Created: testNow,
		}}
	}
	switch event {
	case "ping":
		return 200, nil, nil
	case "push":
		if p.Deleted || strings.Trim(p.After, "0") == "" {
			return 202, nil, nil
		}
		before := p.Before // a new branch has none: all zeros
		if strings.Trim(before, "0") == "" {
			before = ""
		}
		return 200, task(p.After, p.Ref, 0, true, "", before), nil
	case "pull_request":
		switch p.Action {
		case "opened", "synchronize", "reopened":
			// Whatever its author_association: only the forge can
			// say who may push, and the gate asks it.
			n := p.PullRequest.Number
			return 200, nil, []gate.Request{{Repo: repo, PR: n, SHA: p.PullRequest.Head.SHA, Ref: fmt.Sprintf("refs/pull/%d/head", n), Base: p.PullRequest.Base.Ref, BaseSHA: p.PullRequest.Base.SHA, User: p.PullRequest.User.Login,
				Association: p.PullRequest.AuthorAssociation, Pool: turtles.DefaultPool}}
		}
	case "issue_comment":
		// Only new comments on pull requests with commands in them; the
		// gate decides whether the commenter may give them.
		cmds := command.Parse(p.Comment.Body)
		if p.Action != "created" || len(p.Issue.PullRequest) == 0 || string(p.Issue.PullRequest) == "null" || len(cmds) == 0 {
			return 202, nil, nil
		}
		return 200, nil, []gate.Request{{Repo: repo, PR: p.Issue.Number, User: p.Comment.User.Login,
			Association: p.Comment.AuthorAssociation, Commands: cmds, Pool: turtles.DefaultPool}}
	}
	return 202, nil, nil
}
