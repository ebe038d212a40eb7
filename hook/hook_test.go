package hook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/command"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
)

var (
	testSecret = []byte("it's a secret to everybody")
	testNow    = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
)

// fakeQueue records published tasks. Each Publish takes the next error of
// errs (nil once they run out); a task is recorded only when that is nil.
// Put does the same with putErrs.
type fakeQueue struct {
	mu      sync.Mutex
	errs    []error
	putErrs []error
	calls   int
	tasks   []turtles.Task
	// cancels and requests record Cancel and Put calls.
	cancels  []string
	requests []gate.Request
}

// Cancel records a cancellation.
func (q *fakeQueue) Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cancels = append(q.cancels, fmt.Sprintf("%s@%s#%d: %s", repo, sha, pr, reason))
	return 1, nil
}

// Put records a request for the gate.
func (q *fakeQueue) Put(ctx context.Context, body []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.putErrs) > 0 {
		err := q.putErrs[0]
		q.putErrs = q.putErrs[1:]
		if err != nil {
			return err
		}
	}
	var r gate.Request
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	q.requests = append(q.requests, r)
	return nil
}

func (q *fakeQueue) Take(ctx context.Context) (queue.InboxMessage, error) {
	return nil, errors.New("fakeQueue: Take is the gate's")
}

func (q *fakeQueue) Publish(ctx context.Context, t turtles.Task) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	var err error
	if len(q.errs) > 0 {
		err, q.errs = q.errs[0], q.errs[1:]
	}
	if err == nil {
		q.tasks = append(q.tasks, t)
	}
	return err
}

func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	return readFixture(t, "github", name).body
}

// request is one delivery to the receiver and what it should answer.
type request struct {
	method   string // POST when empty
	event    string
	body     []byte
	delivery string
	// signature is the X-Hub-Signature-256 header; "" signs body with
	// testSecret, "-" leaves the header out.
	signature string
	wantCode  int
	// wantMessage must occur in the answer's message.
	wantMessage string
}

// testBudget is a budget as cmd/turtles sets by default.
func testBudget(t testing.TB) *Budget {
	t.Helper()
	b, err := NewBudget(64<<20, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testQueue is a fake queue with an inbox.
type testQueue interface {
	Queue
	queue.Inbox
}

func newTestHook(t *testing.T, q testQueue, maxBody int64) *GitHub {
	t.Helper()
	h, err := NewGitHub(Config{
		Secret:     testSecret,
		Queue:      q,
		Inbox:      q,
		Deliveries: &MemoryDeliveries{},
		MaxBody:    maxBody,
		Budget:     testBudget(t),
		Now:        func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// send delivers req to h and checks the answer's code, shape and message.
func send(t *testing.T, h http.Handler, i int, req request) response {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, "/hook/github", bytes.NewReader(req.body))
	if req.event != "" {
		r.Header.Set("X-GitHub-Event", req.event)
	}
	if req.delivery != "" {
		r.Header.Set("X-GitHub-Delivery", req.delivery)
	}
	switch req.signature {
	case "":
		r.Header.Set("X-Hub-Signature-256", sign(testSecret, req.body))
	case "-":
	default:
		r.Header.Set("X-Hub-Signature-256", req.signature)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != req.wantCode {
		t.Errorf("request %d: code %d, want %d; body %s", i, w.Code, req.wantCode, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("request %d: Content-Type %q, want application/json", i, ct)
	}
	var resp response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Errorf("request %d: answer is not JSON: %v; body %s", i, err, w.Body)
	}
	if !strings.Contains(resp.Message, req.wantMessage) {
		t.Errorf("request %d: message %q, want it to contain %q", i, resp.Message, req.wantMessage)
	}
	return resp
}

// Tasks the fixtures in testdata/github ask for.
var (
	demo        = turtles.Repo{Name: "turtles-ci/demo", CloneURL: "https://github.com/turtles-ci/demo.git"}
	fixtureBase = "5b3e1f0c2d9a8b7c6e5f4a3b2c1d0e9f8a7b6c5d"
	// The opened fixture's author is a MEMBER by association, which
	// proves nothing (read-only org members are MEMBERs too): the gate
	// asks the forge.
	openedRequest = gate.Request{Repo: demo, PR: 7, SHA: "3f786850e387550fdab836ed7e6dc881de23001b", Ref: "refs/pull/7/head", Base: "main", BaseSHA: fixtureBase, User: "alice", Association: "MEMBER", Pool: "public"}
	syncRequest   = gate.Request{Repo: demo, PR: 12, SHA: "89e6c98d92887913cadf06b2adb97f26cde4849b", Ref: "refs/pull/12/head", Base: "main", BaseSHA: fixtureBase, User: "stranger", Association: "CONTRIBUTOR", Pool: "public"}
	pushMainTask  = withBase(plan(demo, "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "refs/heads/main", 0, true), "", fixtureBase)
)

func withBase(t turtles.Task, base, baseSHA string) turtles.Task {
	t.Base, t.BaseSHA = base, baseSHA
	return t
}

func plan(repo turtles.Repo, sha, ref string, pr int, trusted bool) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion,
		Kind:    turtles.KindPlan,
		Repo:    repo,
		SHA:     sha,
		Ref:     ref,
		PR:      pr,
		Context: turtles.PlanContext,
		Pool:    turtles.DefaultPool,
		Attempt: 1,
		Trusted: trusted,
		Created: testNow,
	}
}

func TestGitHub(t *testing.T) {
	opened := fixture(t, "pull_request.opened.payload.json")
	push := fixture(t, "push.payload.json")
	unavailable := errors.New("queue on fire")
	tests := []struct {
		name     string
		maxBody  int64
		errs     []error // returned by successive publishes
		putErrs  []error // returned by successive requests to the gate
		requests []request
		want     []turtles.Task // published, in order
		// wantRequests went to the gate; wantCancels to the queue.
		wantRequests []gate.Request
		wantCancels  []string
	}{
		{
			name:         "pull request opened by a member by association goes to the gate",
			requests:     []request{{event: "pull_request", body: opened, delivery: "d1", wantCode: 200, wantMessage: "sent to the gate"}},
			wantRequests: []gate.Request{openedRequest},
		},
		{
			name: "pull request from a fork by a contributor goes to the gate",
			requests: []request{{event: "pull_request", body: fixture(t, "pull_request.synchronize.payload.json"),
				delivery: "d1", wantCode: 200, wantMessage: "cancelled 1 superseded task(s); sent to the gate"}},
			wantRequests: []gate.Request{syncRequest},
			wantCancels:  []string{"turtles-ci/demo@2e7d2c03a9507ae265ecf5b5356885a53393a202#12: superseded by a newer push"},
		},
		{
			name: "comment commands go to the gate",
			requests: []request{{event: "issue_comment", body: fixture(t, "issue_comment.commands.payload.json"),
				delivery: "d1", wantCode: 200, wantMessage: "sent to the gate"}},
			wantRequests: []gate.Request{{Repo: demo, PR: 7, User: "alice", Association: "MEMBER", Pool: "public",
				Commands: []command.Command{{Name: command.OKToTest}, {Name: command.Test, Context: "debian-12/firefox"}}}},
		},
		{
			name: "edited comment",
			requests: []request{{event: "issue_comment", delivery: "d1", wantCode: 202, wantMessage: "not used",
				body: bytes.Replace(fixture(t, "issue_comment.commands.payload.json"), []byte(`"action": "created"`), []byte(`"action": "edited"`), 1)}},
		},
		{
			name:     "pull request closed",
			requests: []request{{event: "pull_request", body: fixture(t, "pull_request.closed.payload.json"), delivery: "d1", wantCode: 202, wantMessage: "ignored"}},
		},
		{
			name:     "push to main",
			requests: []request{{event: "push", body: push, delivery: "d1", wantCode: 200}},
			want:     []turtles.Task{pushMainTask},
		},
		{
			name:     "branch deleted",
			requests: []request{{event: "push", body: fixture(t, "push.deleted.payload.json"), delivery: "d1", wantCode: 202, wantMessage: "ignored"}},
		},
		{
			name:     "ping",
			requests: []request{{event: "ping", body: fixture(t, "ping.payload.json"), delivery: "d1", wantCode: 200, wantMessage: "pong"}},
		},
		{
			name:     "issue comment",
			requests: []request{{event: "issue_comment", body: fixture(t, "issue_comment.created.payload.json"), delivery: "d1", wantCode: 202, wantMessage: "ignored"}},
		},
		{
			name:     "wrong signature",
			requests: []request{{event: "push", body: push, delivery: "d1", signature: sign([]byte("guess"), push), wantCode: 401}},
		},
		{
			name:     "missing signature",
			requests: []request{{event: "push", body: push, delivery: "d1", signature: "-", wantCode: 401}},
		},
		{
			name: "malformed signatures",
			requests: []request{
				{event: "push", body: push, delivery: "d1", signature: strings.TrimPrefix(sign(testSecret, push), "sha256="), wantCode: 401, wantMessage: "bad signature"},
				{event: "push", body: push, delivery: "d1", signature: "sha256=zz", wantCode: 401, wantMessage: "bad signature"},
				{event: "push", body: push, delivery: "d1", signature: sign(testSecret, push)[:40], wantCode: 401, wantMessage: "bad signature"},
				{event: "push", body: push, delivery: "d1", signature: "sha1=" + strings.TrimPrefix(sign(testSecret, push), "sha256="), wantCode: 401, wantMessage: "bad signature"},
			},
		},
		{
			name:     "body over the limit",
			maxBody:  100,
			requests: []request{{event: "push", body: push, delivery: "d1", wantCode: 413}},
		},
		{
			name:     "body at the limit",
			maxBody:  int64(len(push)),
			requests: []request{{event: "push", body: push, delivery: "d1", wantCode: 200}},
			want:     []turtles.Task{pushMainTask},
		},
		{
			name: "malformed JSON",
			requests: []request{
				{event: "push", body: []byte(`{"ref": "refs/heads/main", "after":`), delivery: "d1", wantCode: 400},
				{event: "pull_request", body: []byte(`[1, 2]`), delivery: "d2", wantCode: 400},
				{event: "ping", body: []byte(`pong?`), delivery: "d3", wantCode: 400},
			},
		},
		{
			name: "bad sha in payload",
			requests: []request{{event: "push", delivery: "d1", wantCode: 400, wantMessage: "bad commit SHA",
				body: bytes.Replace(push, []byte(`"after": "a94a8fe5`), []byte(`"after": "A94A8FE5`), 1)}},
		},
		{
			name:     "GET",
			requests: []request{{method: http.MethodGet, event: "push", body: nil, delivery: "d1", wantCode: 405}},
		},
		{
			name:     "missing event",
			requests: []request{{body: push, delivery: "d1", wantCode: 400, wantMessage: "X-GitHub-Event"}},
		},
		{
			name:     "missing delivery",
			requests: []request{{event: "push", body: push, wantCode: 400, wantMessage: "X-GitHub-Delivery"}},
		},
		{
			// Else an ID could stand for a body in the delivery log.
			name:     "delivery ID shaped like a body's key",
			requests: []request{{event: "push", body: push, delivery: "sha256:00", wantCode: 400, wantMessage: "malformed X-GitHub-Delivery"}},
		},
		{
			name: "replayed delivery publishes once",
			requests: []request{
				{event: "push", body: push, delivery: "d1", wantCode: 200},
				{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "duplicate delivery"},
			},
			want: []turtles.Task{pushMainTask},
		},
		{
			// The delivery ID is not signed: a stranger who saw a push
			// can send its body again under a new ID.
			name: "replayed body under a new delivery ID publishes nothing",
			requests: []request{
				{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "queued 1 task"},
				{event: "push", body: push, delivery: "d2", wantCode: 200, wantMessage: "payload handled before"},
				{event: "push", body: push, delivery: "d3", wantCode: 200, wantMessage: "payload handled before"},
			},
			want: []turtles.Task{pushMainTask},
		},
		{
			name: "replay of a failed delivery's body under a new ID is handled",
			errs: []error{unavailable},
			requests: []request{
				{event: "push", body: push, delivery: "d1", wantCode: 503},
				{event: "push", body: push, delivery: "d2", wantCode: 200, wantMessage: "queued 1 task"},
				{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "payload handled before"},
			},
			want: []turtles.Task{pushMainTask},
		},
		{
			name:    "replay of a body the gate did not get, under a new ID, is handled",
			putErrs: []error{unavailable},
			requests: []request{
				{event: "pull_request", body: opened, delivery: "d1", wantCode: 503},
				{event: "pull_request", body: opened, delivery: "d2", wantCode: 200, wantMessage: "sent to the gate"},
				{event: "pull_request", body: opened, delivery: "d1", wantCode: 200, wantMessage: "payload handled before"},
			},
			wantRequests: []gate.Request{openedRequest},
		},
		{
			name: "one byte more is another payload",
			requests: []request{
				{event: "push", body: push, delivery: "d1", wantCode: 200},
				{event: "push", body: append(bytes.Clone(push), '\n'), delivery: "d2", wantCode: 200, wantMessage: "already queued"},
			},
			errs: []error{nil, queue.ErrDuplicate},
			want: []turtles.Task{pushMainTask},
		},
		{
			name: "publish failure, then redelivery",
			errs: []error{unavailable},
			requests: []request{
				{event: "push", body: push, delivery: "d1", wantCode: 503},
				{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "queued 1 task"},
			},
			want: []turtles.Task{pushMainTask},
		},
		{
			name:    "gate unavailable, then redelivery",
			putErrs: []error{unavailable},
			requests: []request{
				{event: "pull_request", body: opened, delivery: "d1", wantCode: 503},
				{event: "pull_request", body: opened, delivery: "d1", wantCode: 200, wantMessage: "sent to the gate"},
			},
			wantRequests: []gate.Request{openedRequest},
		},
		{
			name:     "already queued",
			errs:     []error{queue.ErrDuplicate},
			requests: []request{{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "already queued"}},
		},
		{
			name: "wrapped duplicate is still a duplicate",
			errs: []error{errors.Join(errors.New("sqlite"), queue.ErrDuplicate)},
			requests: []request{
				{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "already queued"},
				{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "duplicate delivery"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{errs: tt.errs, putErrs: tt.putErrs}
			h := newTestHook(t, q, tt.maxBody)
			for i, req := range tt.requests {
				resp := send(t, h, i, req)
				if req.wantCode == 200 && req.event != "ping" && tt.wantRequests == nil && len(resp.Tasks) != 1 {
					t.Errorf("request %d: answer names tasks %q, want one", i, resp.Tasks)
				}
			}
			if diff := cmp.Diff(tt.want, q.tasks); diff != "" {
				t.Errorf("published tasks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRequests, q.requests); diff != "" {
				t.Errorf("requests to the gate (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCancels, q.cancels); diff != "" {
				t.Errorf("cancels (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitHubAnswerNamesTasks(t *testing.T) {
	q := &fakeQueue{}
	h := newTestHook(t, q, 0)
	resp := send(t, h, 0, request{event: "push", body: fixture(t, "push.payload.json"), delivery: "d1", wantCode: 200})
	want := response{Message: "queued 1 task(s)", Tasks: []string{pushMainTask.ID()}}
	if diff := cmp.Diff(want, resp); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
}

func TestGitHubPool(t *testing.T) {
	q := &fakeQueue{}
	h, err := NewGitHub(Config{Secret: testSecret, Queue: q, Deliveries: &MemoryDeliveries{}, Budget: testBudget(t), Pool: "trusted-arm64",
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	send(t, h, 0, request{event: "push", body: fixture(t, "push.payload.json"), delivery: "d1", wantCode: 200})
	want := pushMainTask
	want.Pool = "trusted-arm64"
	if diff := cmp.Diff([]turtles.Task{want}, q.tasks); diff != "" {
		t.Errorf("published tasks (-want +got):\n%s", diff)
	}
}

// failingLog fails Seen or FirstDelivery.
type failingLog struct {
	MemoryDeliveries
	seenErr, recordErr error
}

func (f *failingLog) Seen(ctx context.Context, id string) (bool, error) {
	if f.seenErr != nil {
		return false, f.seenErr
	}
	return f.MemoryDeliveries.Seen(ctx, id)
}

func (f *failingLog) FirstDelivery(ctx context.Context, id string) (bool, error) {
	if f.recordErr != nil {
		return false, f.recordErr
	}
	return f.MemoryDeliveries.FirstDelivery(ctx, id)
}

func TestGitHubDeliveryLogFails(t *testing.T) {
	tests := []struct {
		name     string
		log      *failingLog
		wantCode int
		want     []turtles.Task
	}{
		// Unknown whether it was handled: let GitHub retry later.
		{name: "seen fails", log: &failingLog{seenErr: errors.New("disk gone")}, wantCode: 503},
		// Published, but not recorded: never 2xx, so that the forge
		// sends it again (the queue refuses the task while it is live).
		{name: "record fails", log: &failingLog{recordErr: errors.New("disk gone")}, wantCode: 503, want: []turtles.Task{pushMainTask}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{}
			h, err := NewGitHub(Config{Secret: testSecret, Queue: q, Deliveries: tt.log, Budget: testBudget(t), Now: func() time.Time { return testNow }})
			if err != nil {
				t.Fatal(err)
			}
			send(t, h, 0, request{event: "push", body: fixture(t, "push.payload.json"), delivery: "d1", wantCode: tt.wantCode})
			if diff := cmp.Diff(tt.want, q.tasks); diff != "" {
				t.Errorf("published tasks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitHubMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := &fakeQueue{}
	h, err := NewGitHub(Config{Secret: testSecret, Queue: q, Deliveries: &MemoryDeliveries{}, Budget: testBudget(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	push := fixture(t, "push.payload.json")
	send(t, h, 0, request{event: "push", body: push, delivery: "d1", wantCode: 200})
	send(t, h, 1, request{event: "push", body: push, delivery: "d1", wantCode: 200})
	send(t, h, 2, request{event: "push", body: push, delivery: "d2", signature: "-", wantCode: 401})
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "turtles_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["event"]+" "+labels["result"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"push " + resultQueued:             1,
		"push " + resultDuplicate:          1,
		unverified + " " + resultSignature: 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("turtles_webhook_deliveries_total by event and result (-want +got):\n%s", diff)
	}
}

func TestNewGitHub(t *testing.T) {
	q := &fakeQueue{}
	d := &MemoryDeliveries{}
	b := testBudget(t)
	small, err := NewBudget(1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "ok", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d, Budget: b}},
		{name: "no secret", cfg: Config{Queue: q, Deliveries: d, Budget: b}, wantErr: "empty secret"},
		{name: "no queue", cfg: Config{Secret: testSecret, Deliveries: d, Budget: b}, wantErr: "no queue"},
		{name: "no delivery log", cfg: Config{Secret: testSecret, Queue: q, Budget: b}, wantErr: "no delivery log"},
		{name: "bad pool", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d, Budget: b, Pool: "Big Pool"}, wantErr: "bad pool name"},
		{name: "negative max body", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d, Budget: b, MaxBody: -1}, wantErr: "negative max body"},
		{name: "no budget", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d}, wantErr: "no body budget"},
		{name: "negative publish timeout", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d, Budget: b, PublishTimeout: -time.Second}, wantErr: "negative publish timeout"},
		{name: "budget smaller than a body", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d, Budget: small}, wantErr: "less than max body"},
		{name: "small budget, small bodies", cfg: Config{Secret: testSecret, Queue: q, Deliveries: d, Budget: small, MaxBody: 512 << 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGitHub(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("NewGitHub: %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("NewGitHub: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMemoryDeliveries(t *testing.T) {
	ctx := context.Background()
	var m MemoryDeliveries
	type answer struct{ Seen, First bool }
	var got []answer
	for _, id := range []string{"a", "a", "b"} {
		seen, _ := m.Seen(ctx, id)
		first, _ := m.FirstDelivery(ctx, id)
		got = append(got, answer{seen, first})
	}
	want := []answer{{false, true}, {true, false}, {false, true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Seen, FirstDelivery of a, a, b (-want +got):\n%s", diff)
	}
}
