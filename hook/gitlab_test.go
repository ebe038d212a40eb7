package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/command"
	"github.com/turtles-ci/turtles/gate"
)

func newTestGitLab(t *testing.T, q testQueue) *GitLab {
	t.Helper()
	h, err := NewGitLab(Config{Secret: testSecret, Queue: q, Inbox: q, Deliveries: &MemoryDeliveries{}, Budget: testBudget(t),
		Now: func() time.Time { return testNow }, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// glRequest is one GitLab delivery and what it should answer.
type glRequest struct {
	method string
	event  string
	body   []byte
	// uuid is X-Gitlab-Event-UUID; token is X-Gitlab-Token, the secret
	// when empty, none when "-".
	uuid, token string
	wantCode    int
	wantMessage string
}

func sendGitLab(t *testing.T, h http.Handler, req glRequest) response {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, "/hook/gitlab", bytes.NewReader(req.body))
	if req.event != "" {
		r.Header.Set("X-Gitlab-Event", req.event)
	}
	if req.uuid != "" {
		r.Header.Set("X-Gitlab-Event-UUID", req.uuid)
	}
	switch req.token {
	case "":
		r.Header.Set("X-Gitlab-Token", string(testSecret))
	case "-":
	default:
		r.Header.Set("X-Gitlab-Token", req.token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != req.wantCode {
		t.Errorf("%s %s: code %d, want %d; body %s", req.event, req.uuid, w.Code, req.wantCode, w.Body)
	}
	var resp response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Errorf("answer is not JSON: %v; body %s", err, w.Body)
	}
	if !strings.Contains(resp.Message, req.wantMessage) {
		t.Errorf("%s: message %q, want it to contain %q", req.event, resp.Message, req.wantMessage)
	}
	return resp
}

// gitlabEvent maps a fixture's object_kind to its X-Gitlab-Event.
var gitlabEvent = map[string]string{"push": GitLabPush, "tag_push": GitLabTagPush, "merge_request": GitLabMergeRequest, "note": GitLabNote}

func glFixture(t *testing.T, name string) (string, []byte) {
	t.Helper()
	p := readFixture(t, "gitlab", name)
	return gitlabEvent[p.kind], p.body
}

// What the fixtures in testdata/gitlab ask for.
var (
	shell      = turtles.Repo{Name: "reptiles/backend/turtle-shell", CloneURL: "https://gitlab.example.com/reptiles/backend/turtle-shell.git"}
	glH0       = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
	glH1       = "5b2e1f0c9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"
	glH2       = "c0ffee0123456789abcdef0123456789abcdef01"
	glMRCancel = "reptiles/backend/turtle-shell@" + glH1 + "#42: superseded by a newer push"
)

func TestGitLabFixtures(t *testing.T) {
	mrReq := func(sha, user string) []gate.Request {
		return []gate.Request{{Repo: shell, PR: 42, SHA: sha, Ref: "refs/merge-requests/42/head", Base: "main", User: user, Pool: "public"}}
	}
	note := func(user string, cmds ...command.Command) []gate.Request {
		return []gate.Request{{Repo: shell, PR: 42, User: user, Commands: cmds, Pool: "public"}}
	}
	tests := []struct {
		file     string
		code     int
		tasks    []turtles.Task
		requests []gate.Request
		cancels  []string
		message  string
	}{
		{file: "push.payload.json", code: 200, tasks: []turtles.Task{withBase(plan(shell, glH1, "refs/heads/main", 0, true), "", glH0)}},
		{file: "push.new-branch.payload.json", code: 200, tasks: []turtles.Task{plan(shell, glH1, "refs/heads/feature/shell", 0, true)}},
		{file: "push.delete.payload.json", code: 202, message: "deleted"},
		{file: "tag_push.payload.json", code: 200, tasks: []turtles.Task{plan(shell, glH1, "refs/tags/v1.2.0", 0, true)}},
		{file: "merge_request.open.payload.json", code: 200, requests: mrReq(glH1, "alice")},
		{file: "merge_request.update.payload.json", code: 200, requests: mrReq(glH2, "alice"), cancels: []string{glMRCancel}},
		{file: "merge_request.update-title.payload.json", code: 202, message: "no new commit"},
		// A maintainer pushed to a fork's merge request: the old head is
		// cancelled, the new one waits for the scanner, which knows the
		// author.
		{file: "merge_request.update-by-maintainer.payload.json", code: 200, cancels: []string{glMRCancel}},
		{file: "merge_request.reopen-fork.payload.json", code: 200, requests: mrReq(glH1, "mallory")},
		{file: "merge_request.close.payload.json", code: 202},
		{file: "merge_request.approved.payload.json", code: 202},
		{file: "note.merge_request.payload.json", code: 200,
			requests: note("morgan", command.Command{Name: command.OKToTest}, command.Command{Name: command.Test, Context: "debian-12/firefox"})},
		{file: "note.retest.payload.json", code: 200, requests: note("morgan", command.Command{Name: command.Retest})},
		{file: "note.prose.payload.json", code: 202, message: "no command"},
		{file: "note.quoted.payload.json", code: 202, message: "no command"},
		{file: "note.edited.payload.json", code: 202, message: "update"},
		{file: "note.system.payload.json", code: 202, message: "system"},
		{file: "note.issue.payload.json", code: 202, message: "not a merge request"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			event, body := glFixture(t, tt.file)
			q := &fakeQueue{}
			h := newTestGitLab(t, q)
			resp := sendGitLab(t, h, glRequest{event: event, body: body, uuid: "u-" + tt.file, wantCode: tt.code, wantMessage: tt.message})
			if diff := cmp.Diff(tt.tasks, q.tasks); diff != "" {
				t.Errorf("tasks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.requests, q.requests); diff != "" {
				t.Errorf("gate requests (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.cancels, q.cancels); diff != "" {
				t.Errorf("cancels (-want +got):\n%s", diff)
			}
			wantIDs := []string{}
			for _, x := range tt.tasks {
				wantIDs = append(wantIDs, x.ID())
			}
			if diff := cmp.Diff(wantIDs, resp.Tasks); diff != "" {
				t.Errorf("answer's task IDs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitLabRequests(t *testing.T) {
	event, body := glFixture(t, "push.payload.json")
	q := &fakeQueue{}
	h := newTestGitLab(t, q)
	for _, req := range []glRequest{
		{token: "-", event: event, body: body, uuid: "a", wantCode: 401, wantMessage: "bad token"},
		{token: "it's a secret to everybodx", event: event, body: body, uuid: "a", wantCode: 401},
		{token: string(testSecret) + " ", event: event, body: body, uuid: "a", wantCode: 401},
		{method: http.MethodGet, event: event, uuid: "a", wantCode: 405},
		{body: body, uuid: "a", wantCode: 400, wantMessage: "X-Gitlab-Event"},
		{event: event, body: body, wantCode: 400, wantMessage: "Idempotency-Key"},
		{event: event, body: []byte("{not json"), uuid: "b", wantCode: 400},
		{event: "Pipeline Hook", body: []byte(`{"object_kind":"pipeline"}`), uuid: "c", wantCode: 202, wantMessage: "not used"},
		{event: event, body: body, uuid: "d", wantCode: 200, wantMessage: "queued 1"},
		{event: event, body: body, uuid: "d", wantCode: 200, wantMessage: "duplicate"},
	} {
		sendGitLab(t, h, req)
	}
	if len(q.tasks) != 1 {
		t.Errorf("%d tasks published, want 1: %+v", len(q.tasks), q.tasks)
	}

	t.Run("idempotency key", func(t *testing.T) {
		q := &fakeQueue{}
		h := newTestGitLab(t, q)
		for i, uuid := range []string{"first-uuid", "second-uuid"} {
			r := httptest.NewRequest(http.MethodPost, "/hook/gitlab", bytes.NewReader(body))
			r.Header.Set("X-Gitlab-Event", event)
			r.Header.Set("X-Gitlab-Token", string(testSecret))
			r.Header.Set("X-Gitlab-Event-UUID", uuid)
			r.Header.Set("Idempotency-Key", "same-key")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if want := []string{"queued", "duplicate"}[i]; !strings.Contains(w.Body.String(), want) {
				t.Errorf("delivery %d: %s, want %q", i, w.Body, want)
			}
		}
	})
	t.Run("no gate", func(t *testing.T) {
		h, err := NewGitLab(Config{Secret: testSecret, Queue: &publishOnly{}, Deliveries: &MemoryDeliveries{}, Budget: testBudget(t)})
		if err != nil {
			t.Fatal(err)
		}
		event, body := glFixture(t, "merge_request.open.payload.json")
		sendGitLab(t, h, glRequest{event: event, body: body, uuid: "e", wantCode: 202, wantMessage: "no gate"})
	})
	t.Run("queue down", func(t *testing.T) {
		q := &fakeQueue{errs: []error{errors.New("broker gone")}}
		h := newTestGitLab(t, q)
		sendGitLab(t, h, glRequest{event: event, body: body, uuid: "f", wantCode: 503})
		sendGitLab(t, h, glRequest{event: event, body: body, uuid: "f", wantCode: 200, wantMessage: "queued 1"})
	})
	t.Run("system hook", func(t *testing.T) {
		q := &fakeQueue{}
		h := newTestGitLab(t, q)
		for _, f := range []string{"push.payload.json", "merge_request.update.payload.json", "note.retest.payload.json"} {
			_, body := glFixture(t, f)
			want := map[bool]int{true: 202, false: 200}[strings.HasPrefix(f, "note")]
			sendGitLab(t, h, glRequest{event: GitLabSystem, body: body, uuid: "sys-" + f, wantCode: want})
		}
		if len(q.tasks) != 1 || len(q.requests) != 1 || len(q.cancels) != 1 {
			t.Errorf("system hooks: %d tasks, %d gate requests, %d cancels; want a push's task and a merge request's request and cancel",
				len(q.tasks), len(q.requests), len(q.cancels))
		}
	})
	t.Run("empty secret", func(t *testing.T) {
		if _, err := NewGitLab(Config{Queue: q, Deliveries: &MemoryDeliveries{}, Budget: testBudget(t)}); err == nil {
			t.Error("NewGitLab accepted an empty secret")
		}
	})
}

// publishOnly is a queue given to a receiver without an inbox.
type publishOnly struct{ q fakeQueue }

func (p *publishOnly) Publish(ctx context.Context, t turtles.Task) error { return p.q.Publish(ctx, t) }
func (p *publishOnly) Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error) {
	return p.q.Cancel(ctx, repo, sha, pr, reason)
}

// TestGitLabConformance replays GitLab payloads shared beside the
// repository (../shared/testdata/gitlab-webhooks), if there are any, and
// checks the rules that hold for every payload: no error for a
// well-formed event, and tasks only for pushes.
func TestGitLabConformance(t *testing.T) {
	dir := filepath.Join(filepath.Dir(sharedWebhooks(t)), "gitlab-webhooks")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skipf("no shared GitLab payloads in %s", dir)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var kind struct {
				ObjectKind string `json:"object_kind"`
			}
			if err := json.Unmarshal(body, &kind); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			event := gitlabEvent[kind.ObjectKind]
			p, err := parseGitLab(event, body, "", testNow)
			if err != nil {
				t.Fatalf("parse %s (%s): %v", file, event, err)
			}
			if len(p.tasks) > 0 && event != GitLabPush && event != GitLabTagPush {
				t.Errorf("%s gave tasks without the gate: %+v", event, p.tasks)
			}
			for _, x := range p.tasks {
				if err := x.Validate(); err != nil {
					t.Errorf("invalid task %+v: %v", x, err)
				}
			}
		})
	}
}
