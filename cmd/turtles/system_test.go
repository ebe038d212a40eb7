package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/report"
	"github.com/turtles-ci/turtles/syncio"
)

// testSettings are the defaults in a fresh data dir, listening on a free
// port, with no forge credentials.
func testSettings(t *testing.T) Settings {
	t.Helper()
	t.Setenv("TURTLES_GITHUB_TOKEN", "")
	s := defaults()
	s.DataDir, s.Listen = t.TempDir(), "127.0.0.1:0"
	s.fill()
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func testLogger() (*slog.Logger, *syncio.Buffer) {
	buf := &syncio.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func TestPartGetPanicsNamingThePart(t *testing.T) {
	sys := newSystem(testSettings(t), slog.New(slog.DiscardHandler))
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "part gate was never set") {
			t.Errorf("Get of an unset part: recovered %v, want a panic naming the gate", r)
		}
	}()
	sys.Gate.Get()
}

// TestSystemNeeds: a part a command needs and cannot have is an error at
// start that says why.
func TestSystemNeeds(t *testing.T) {
	tests := []struct {
		name    string
		spec    spec
		repos   []string
		wantErr []string
	}{
		{name: "submit", spec: submitParts},
		{name: "reporter without forge credentials", spec: reporterParts},
		{name: "scan without credentials or repositories", spec: scanParts,
			wantErr: []string{"cannot start without its gate: forge credentials: GitHub: --github-token-file", "its scanner: no repositories: set --scan-repos"}},
		{name: "scan without credentials", spec: scanParts, repos: []string{"o/r"}, wantErr: []string{"scan: needs forge credentials"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSettings(t)
			s.ScanRepos = tt.repos
			sys, err := openSystem(s, slog.New(slog.DiscardHandler), tt.spec)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("openSystem: %v", err)
				}
				sys.Close()
				return
			}
			if err == nil {
				sys.Close()
				t.Fatalf("openSystem succeeded, want an error containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("openSystem: %v, want an error containing %q", err, w)
				}
			}
		})
	}
}

// ackedInbox tells when a message was acked.
type ackedInbox struct {
	queue.Inbox
	acked chan []byte
}

func (a ackedInbox) Take(ctx context.Context) (queue.InboxMessage, error) {
	m, err := a.Inbox.Take(ctx)
	if err != nil {
		return nil, err
	}
	return ackedMessage{m, a.acked}, nil
}

type ackedMessage struct {
	queue.InboxMessage
	acked chan []byte
}

func (m ackedMessage) Ack(ctx context.Context) error {
	err := m.InboxMessage.Ack(ctx)
	if err == nil {
		m.acked <- m.Body()
	}
	return err
}

// TestReporterWithoutGateTakesRequests: a hook always passes what needs
// the gate to the inbox; a reporter without forge credentials has no
// gate, and drops each request with a warning rather than leave it there.
func TestReporterWithoutGateTakesRequests(t *testing.T) {
	log, logs := testLogger()
	sys, err := openSystem(testSettings(t), log, reporterParts)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if _, ok := sys.Gate.GetOK(); ok {
		t.Fatal("a reporter without forge credentials has a gate")
	}
	acked := make(chan []byte, 1)
	sys.Inbox.Set(ackedInbox{sys.Inbox.Get(), acked})
	body, _ := json.Marshal(gate.Request{Repo: turtles.Repo{Name: "o/r"}, PR: 7, User: "stranger", Pool: "public"})
	if err := sys.Inbox.Get().Put(context.Background(), body); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sys.run(ctx, nil) }()
	select {
	case got := <-acked:
		if string(got) != string(body) {
			t.Errorf("acked %s, want the request put", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the request was not taken and acked\n%s", logs)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "dropped") || !strings.Contains(out, "pr=7") {
		t.Errorf("no warning names the dropped request:\n%s", out)
	}
}

// recorder is an event handler that keeps what it saw; it takes its time
// over the last event, so that a drain that does not wait for it ends
// first.
type recorder struct {
	mu   sync.Mutex
	seen []string
	slow string
}

func (r *recorder) Handle(ctx context.Context, ev turtles.Event) error {
	if ev.ID == r.slow {
		time.Sleep(200 * time.Millisecond)
	}
	r.note(string(ev.Type) + " " + ev.ID)
	return nil
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, s)
}

// TestDrainEvents: drainEvents returns once every event emitted before it
// was handled, and the mark itself reaches no handler.
func TestDrainEvents(t *testing.T) {
	log, logs := testLogger()
	sys, err := openSystem(testSettings(t), log, submitParts)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	marked := &markedEvents{Events: sys.Events.Get(), log: log, waiting: map[string]chan struct{}{}}
	rec := &recorder{slow: "three"}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	c := &report.Consumer{Events: marked, Handlers: []report.Handler{rec}, Log: log, MinBackoff: eventRetryMin, MaxBackoff: eventRetryMax}
	go func() { done <- c.Run(ctx) }()
	task := turtles.Task{Repo: turtles.Repo{Name: "o/r"}, SHA: strings.Repeat("a", 40), Pool: "public", Attempt: 1}
	var want []string
	for _, c := range []string{"one", "two", "three"} {
		task.Context = c
		ev := turtles.Event{ID: c, Type: turtles.EventFinished, Task: task, Time: time.Now()}
		if err := sys.Events.Get().Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, "finished "+c)
	}
	sys.drainEvents(marked)
	rec.note("drained")
	want = append(want, "drained")
	rec.mu.Lock()
	got := strings.Join(rec.seen, ", ")
	rec.mu.Unlock()
	if got != strings.Join(want, ", ") {
		t.Errorf("events and drain: %s; want %s", got, strings.Join(want, ", "))
	}
	if strings.Contains(logs.String(), "not all handled") {
		t.Errorf("drainEvents gave up waiting:\n%s", logs)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Consume: %v", err)
	}
}
