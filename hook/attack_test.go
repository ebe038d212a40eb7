package hook

// Attacks on the receiver by someone who does not know the secret: bodies
// that hold memory, and payloads sent again under new delivery IDs. The
// end-to-end forms, against the real binary, are in attack/hook_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestBudget(t *testing.T) {
	const size = 1 << 20
	tests := []struct {
		name string
		// steps are takes (n > 0) and gives (n < 0), in order.
		steps []int64
		want  []bool // what each take answers
	}{
		{name: "fits", steps: []int64{size / 2, size / 2}, want: []bool{true, true}},
		{name: "full", steps: []int64{size, 1}, want: []bool{true, false}},
		{name: "room again after a give", steps: []int64{size, -size / 2, size / 2}, want: []bool{true, true}},
		{name: "never more than the size", steps: []int64{size + 1}, want: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBudget(size, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []bool
			for _, n := range tt.steps {
				if n < 0 {
					b.give(-n)
					continue
				}
				got = append(got, b.take(context.Background(), n))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("takes (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("a waiter gets what is given back", func(t *testing.T) {
		b, err := NewBudget(size, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b.take(context.Background(), size)
		got := make(chan bool)
		go func() { got <- b.take(context.Background(), size/4) }()
		b.give(size / 2)
		if !<-got {
			t.Error("take while full, then a give: false, want true")
		}
		if n := b.InFlight(); n != size/2+size/4 {
			t.Errorf("InFlight = %d, want %d", n, size/2+size/4)
		}
	})
	t.Run("bad sizes", func(t *testing.T) {
		if _, err := NewBudget(maxChunk-1, 0); err == nil {
			t.Error("NewBudget(less than a chunk) did not fail")
		}
		if _, err := NewBudget(size, -time.Second); err == nil {
			t.Error("NewBudget(negative wait) did not fail")
		}
	})
}

// spyReader counts the reads of a body.
type spyReader struct {
	r     io.Reader
	reads atomic.Int64
}

func (s *spyReader) Read(p []byte) (int, error) {
	s.reads.Add(1)
	return s.r.Read(p)
}

func TestReadBody(t *testing.T) {
	payload := bytes.Repeat([]byte("turtle "), 100_000) // 700 kB: many chunks
	tests := []struct {
		name     string
		body     []byte
		declared int64 // -1: unknown
		limit    int64
		budget   int64
		wantErr  error
		// wantNoRead: refused from the headers alone.
		wantNoRead bool
	}{
		{name: "small", body: []byte(`{}`), declared: 2, limit: 1 << 20, budget: 1 << 20},
		{name: "empty", body: nil, declared: 0, limit: 1 << 20, budget: 1 << 20},
		{name: "many chunks", body: payload, declared: int64(len(payload)), limit: 1 << 20, budget: 4 << 20},
		{name: "length unknown", body: payload, declared: -1, limit: 1 << 20, budget: 4 << 20},
		{name: "at the limit", body: payload, declared: -1, limit: int64(len(payload)), budget: 4 << 20},
		{name: "over the limit, length unknown", body: payload, declared: -1, limit: int64(len(payload)) - 1, budget: 4 << 20, wantErr: errTooLarge},
		{name: "declared over the limit", body: payload, declared: int64(len(payload)), limit: 1000, budget: 4 << 20, wantErr: errTooLarge, wantNoRead: true},
		{name: "no room", body: payload, declared: -1, limit: 1 << 20, budget: maxChunk, wantErr: errNoRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget, err := NewBudget(tt.budget, 0)
			if err != nil {
				t.Fatal(err)
			}
			r := &spyReader{r: bytes.NewReader(tt.body)}
			b, err := readBody(context.Background(), r, tt.declared, tt.limit, budget, testSecret)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("readBody: %v, want %v", err, tt.wantErr)
			}
			if got := r.reads.Load(); tt.wantNoRead && got > 0 {
				t.Errorf("%d reads of a body refused from its headers, want none", got)
			}
			if held := budget.InFlight(); held > 2*b.n+minChunk || held > tt.budget {
				t.Errorf("%d bytes charged for %d read, want at most twice as many plus a chunk, within the budget of %d", held, b.n, tt.budget)
			}
			if err == nil {
				if !bytes.Equal(b.bytes(), tt.body) {
					t.Errorf("read %d bytes, not the %d sent", len(b.bytes()), len(tt.body))
				}
				if !b.signed(mustHex(t, sign(testSecret, tt.body))) {
					t.Error("the body's own signature does not check")
				}
			}
			b.release()
			if n := budget.InFlight(); n != 0 {
				t.Errorf("after release: %d bytes still charged", n)
			}
		})
	}
}

func mustHex(t *testing.T, sig string) []byte {
	t.Helper()
	mac, ok := parseSignature(sig)
	if !ok {
		t.Fatalf("signature %q does not parse", sig)
	}
	return mac
}

// spyLog is a delivery log that counts every lookup and record.
type spyLog struct {
	MemoryDeliveries
	calls atomic.Int64
}

func (s *spyLog) Seen(ctx context.Context, id string) (bool, error) {
	s.calls.Add(1)
	return s.MemoryDeliveries.Seen(ctx, id)
}

func (s *spyLog) FirstDelivery(ctx context.Context, id string) (bool, error) {
	s.calls.Add(1)
	return s.MemoryDeliveries.FirstDelivery(ctx, id)
}

// TestAttackUnverifiedBody: before the signature (GitLab: the token) is
// checked, a body is not parsed, not looked up, and when the headers
// already say no, not even read.
func TestAttackUnverifiedBody(t *testing.T) {
	push := fixture(t, "push.payload.json")
	garbage := []byte(`{"ref": "refs/heads/main", "after": ` + strings.Repeat("[", 10000))
	tests := []struct {
		name      string
		gitlab    bool
		body      []byte
		header    map[string]string
		maxBody   int64
		declared  int64 // Content-Length; -1 unknown
		wantCode  int
		wantRead  bool // some of the body may be read
		wantInMsg string
	}{
		{name: "no signature", body: push, header: map[string]string{}, declared: -1, wantCode: 401},
		{name: "signature not hex", body: push, header: map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("zz", 32)}, declared: -1, wantCode: 401},
		{name: "sha1 signature", body: push, header: map[string]string{"X-Hub-Signature-256": "sha1=" + strings.Repeat("00", 20)}, declared: -1, wantCode: 401},
		{name: "declared too large", body: push, header: map[string]string{"X-Hub-Signature-256": sign(testSecret, push)}, maxBody: 1000, declared: int64(len(push)), wantCode: 413},
		// Not 400: the JSON is never looked at.
		{name: "wrong signature on bad JSON", body: garbage, header: map[string]string{"X-Hub-Signature-256": sign([]byte("guess"), garbage)}, declared: -1, wantCode: 401, wantRead: true},
		{name: "gitlab: no token", gitlab: true, body: push, header: map[string]string{}, declared: -1, wantCode: 401},
		{name: "gitlab: wrong token", gitlab: true, body: push, header: map[string]string{"X-Gitlab-Token": "guess"}, declared: -1, wantCode: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{}
			log := &spyLog{}
			cfg := Config{Secret: testSecret, Queue: q, Deliveries: log, Budget: testBudget(t), MaxBody: tt.maxBody}
			var h http.Handler
			var err error
			if tt.gitlab {
				h, err = NewGitLab(cfg)
			} else {
				h, err = NewGitHub(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			body := &spyReader{r: bytes.NewReader(tt.body)}
			r := httptest.NewRequest(http.MethodPost, "/hook", body)
			r.ContentLength = tt.declared
			for k, v := range map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "evil-1",
				"X-Gitlab-Event": GitLabPush, "Idempotency-Key": "evil-1"} {
				r.Header.Set(k, v)
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Errorf("code %d, want %d; body %s", w.Code, tt.wantCode, w.Body)
			}
			if n := body.reads.Load(); n > 0 && !tt.wantRead {
				t.Errorf("body read %d times, want none", n)
			}
			if n := log.calls.Load(); n > 0 {
				t.Errorf("delivery log used %d times for an unverified body, want none", n)
			}
			if len(q.tasks)+len(q.requests)+len(q.cancels) > 0 {
				t.Errorf("queued %d tasks, %d requests, %d cancels; want nothing", len(q.tasks), len(q.requests), len(q.cancels))
			}
		})
	}
}

// TestAttackReplay sends a signed payload again under new delivery IDs
// (GitHub's X-GitHub-Delivery and GitLab's Idempotency-Key are not
// signed), one after another and all at once.
func TestAttackReplay(t *testing.T) {
	push := fixture(t, "push.payload.json")
	glEvent, glPush := glFixture(t, "push.payload.json")
	t.Run("github, one after another", func(t *testing.T) {
		q := &fakeQueue{}
		h := newTestHook(t, q, 0)
		send(t, h, 0, request{event: "push", body: push, delivery: "d1", wantCode: 200, wantMessage: "queued 1"})
		for i := 1; i < 4; i++ {
			send(t, h, i, request{event: "push", body: push, delivery: fmt.Sprintf("evil-%d", i), wantCode: 200, wantMessage: "already handled"})
		}
		if len(q.tasks) != 1 {
			t.Errorf("%d tasks published, want 1", len(q.tasks))
		}
	})
	t.Run("gitlab, one after another", func(t *testing.T) {
		q := &fakeQueue{}
		h := newTestGitLab(t, q)
		sendGitLab(t, h, glRequest{event: glEvent, body: glPush, uuid: "d1", wantCode: 200, wantMessage: "queued 1"})
		sendGitLab(t, h, glRequest{event: glEvent, body: glPush, uuid: "evil-1", wantCode: 200, wantMessage: "already handled"})
		if len(q.tasks) != 1 {
			t.Errorf("%d tasks published, want 1", len(q.tasks))
		}
	})
	t.Run("github, all at once", func(t *testing.T) {
		q := &slowQueue{first: make(chan struct{}), release: make(chan struct{})}
		h := newTestHook(t, q, 0)
		const n = 16
		var wg sync.WaitGroup
		codes := make([]int, n)
		for i := range n {
			wg.Go(func() {
				r := httptest.NewRequest(http.MethodPost, "/hook/github", bytes.NewReader(push))
				r.Header.Set("X-GitHub-Event", "push")
				r.Header.Set("X-GitHub-Delivery", fmt.Sprintf("evil-%d", i))
				r.Header.Set("X-Hub-Signature-256", sign(testSecret, push))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				codes[i] = w.Code
			})
		}
		// The first publish is held until every copy could have passed
		// the delivery log's check, had the copies not waited their turn.
		<-q.first
		time.Sleep(200 * time.Millisecond)
		close(q.release)
		wg.Wait()
		for i, c := range codes {
			if c != 200 {
				t.Errorf("copy %d: code %d, want 200", i, c)
			}
		}
		if got := q.published.Load(); got != 1 {
			t.Errorf("%d publishes of %d copies sent at once, want 1", got, n)
		}
	})
}

// slowQueue holds every Publish until release is closed, and says when
// the first one arrived.
type slowQueue struct {
	fakeQueue // for Cancel and the inbox
	once      sync.Once
	first     chan struct{}
	release   chan struct{}
	published atomic.Int64
}

func (q *slowQueue) Publish(ctx context.Context, t turtles.Task) error {
	q.once.Do(func() { close(q.first) })
	<-q.release
	q.published.Add(1)
	return nil
}
