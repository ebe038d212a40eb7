package report_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/report"
)

// fakeEvents is an in-memory queue.Events holding a fixed list of events.
// When a Receive finds the list drained it calls stop (the test's cancel)
// and blocks until ctx ends, so Consume returns once every event was
// handled, without timers.
type fakeEvents struct {
	mu     sync.Mutex
	events []turtles.Event
	next   int
	acked  []string // event IDs in ack order
	stop   context.CancelFunc
}

func (f *fakeEvents) Emit(ctx context.Context, ev turtles.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	return nil
}

func (f *fakeEvents) Receive(ctx context.Context) (queue.EventDelivery, error) {
	f.mu.Lock()
	if f.next < len(f.events) {
		ev := f.events[f.next]
		f.next++
		f.mu.Unlock()
		return &fakeDelivery{f: f, ev: ev}, nil
	}
	f.mu.Unlock()
	f.stop()
	<-ctx.Done()
	return nil, ctx.Err()
}

func (f *fakeEvents) Close() error { return nil }

func (f *fakeEvents) Acked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.acked...)
}

type fakeDelivery struct {
	f  *fakeEvents
	ev turtles.Event
}

func (d *fakeDelivery) Event() turtles.Event { return d.ev }

func (d *fakeDelivery) Ack(ctx context.Context) error {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	d.f.acked = append(d.f.acked, d.ev.ID)
	return nil
}

// fakeSleep records the waits asked for and returns at once.
type fakeSleep struct {
	mu    sync.Mutex
	waits []time.Duration
	// after is called with the number of waits so far, e.g. to cancel.
	after func(n int)
}

func (s *fakeSleep) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n := len(s.waits)
	s.mu.Unlock()
	if s.after != nil {
		s.after(n)
	}
	return ctx.Err()
}

// consume runs a Consumer over events until they are all handled, and
// returns the acked event IDs.
func consume(t *testing.T, e *env, sl *fakeSleep, events []turtles.Event, handlers ...report.Handler) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := &fakeEvents{events: events, stop: cancel}
	c := &report.Consumer{Events: q, Handlers: handlers, Log: e.log, Sleep: sl.Sleep, MinBackoff: time.Second, MaxBackoff: time.Minute}
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("Run did not finish the events in time")
	}
	return q.Acked()
}

func TestConsumeRetriesBadGateway(t *testing.T) {
	e := setup(t, token)
	e.srv.FailNext(2, 502)
	sl := &fakeSleep{}
	ev := finished("linux", 1, turtles.Success, "")

	acked := consume(t, e, sl, []turtles.Event{ev}, e.rep)

	if diff := cmp.Diff([]string{ev.ID}, acked); diff != "" {
		t.Errorf("acked (-want +got):\n%s", diff)
	}
	want := []githubtest.Status{status("linux", "success", logLinux, "Tests passed")}
	if diff := cmp.Diff(want, e.srv.Statuses()); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second}, sl.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if n := len(e.srv.Requests()); n != 3 {
		t.Errorf("got %d requests, want 3", n)
	}
}

func TestConsumePermanentIsDropped(t *testing.T) {
	e := setup(t, "ghp_wrongTokenAlsoSecret")
	sl := &fakeSleep{}
	evs := []turtles.Event{finished("linux", 1, turtles.Success, ""), queued("bsd", 1)}

	acked := consume(t, e, sl, evs, e.rep)

	if diff := cmp.Diff([]string{evs[0].ID, evs[1].ID}, acked); diff != "" {
		t.Errorf("acked (-want +got):\n%s", diff)
	}
	if n := len(e.srv.Statuses()); n != 0 {
		t.Errorf("got %d statuses, want none", n)
	}
	if len(sl.waits) != 0 {
		t.Errorf("waited %v for a permanent error", sl.waits)
	}
	out := e.logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "permanent") || !strings.Contains(out, "401") {
		t.Errorf("the 401 was not logged as a permanent error:\n%s", out)
	}
}

func TestConsumeHonoursRateLimit(t *testing.T) {
	e := setup(t, token)
	e.srv.FailNextWith(1, githubtest.SecondaryRateLimited(30*time.Second))
	sl := &fakeSleep{}

	consume(t, e, sl, []turtles.Event{queued("linux", 1)}, e.rep)

	if len(sl.waits) != 1 || sl.waits[0] < 25*time.Second || sl.waits[0] > 30*time.Second {
		t.Errorf("waits = %v, want one of about 30s", sl.waits)
	}
	if n := len(e.srv.Statuses()); n != 1 {
		t.Errorf("got %d statuses, want 1", n)
	}
}

// handlerFunc adapts a function to report.Handler.
type handlerFunc func(context.Context, turtles.Event) error

func (f handlerFunc) Handle(ctx context.Context, ev turtles.Event) error { return f(ctx, ev) }

// recorder is a Handler that records the events it saw and fails as told.
type recorder struct {
	name  string
	calls *[]string
	fail  func(ev turtles.Event, call int) error
	n     int
}

func (r *recorder) Handle(ctx context.Context, ev turtles.Event) error {
	r.n++
	*r.calls = append(*r.calls, r.name+":"+ev.ID)
	if r.fail != nil {
		return r.fail(ev, r.n)
	}
	return nil
}

func TestConsumeHandlers(t *testing.T) {
	transient := errors.New("database is locked")
	tests := []struct {
		name      string
		failA     func(turtles.Event, int) error
		failB     func(turtles.Event, int) error
		wantCalls []string
		wantWaits []time.Duration
	}{
		{
			name:      "all succeed, in order",
			wantCalls: []string{"a:e1", "b:e1", "a:e2", "b:e2"},
		},
		{
			name: "retry resumes at the failing handler",
			failB: func(ev turtles.Event, n int) error {
				if n <= 3 {
					return transient
				}
				return nil
			},
			wantCalls: []string{"a:e1", "b:e1", "b:e1", "b:e1", "b:e1", "a:e2", "b:e2"},
			wantWaits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		},
		{
			name: "permanent error skips to the next handler",
			failA: func(ev turtles.Event, n int) error {
				return fmt.Errorf("no such repo: %w", forge.ErrPermanent)
			},
			wantCalls: []string{"a:e1", "b:e1", "a:e2", "b:e2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, token)
			var calls []string
			a := &recorder{name: "a", calls: &calls, fail: tt.failA}
			b := &recorder{name: "b", calls: &calls, fail: tt.failB}
			evs := []turtles.Event{queued("linux", 1), queued("bsd", 1)}
			evs[0].ID, evs[1].ID = "e1", "e2"
			sl := &fakeSleep{}

			acked := consume(t, e, sl, evs, a, b)

			if diff := cmp.Diff(tt.wantCalls, calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"e1", "e2"}, acked); diff != "" {
				t.Errorf("acked (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWaits, sl.waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

// Backoff doubles up to a minute and never acks a failing event; Run
// returns nil when its context ends.
func TestConsumeBackoffAndCancel(t *testing.T) {
	e := setup(t, token)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := &fakeEvents{events: []turtles.Event{queued("linux", 1)}, stop: cancel}
	sl := &fakeSleep{after: func(n int) {
		if n == 9 {
			cancel()
		}
	}}
	fail := handlerFunc(func(context.Context, turtles.Event) error { return errors.New("forge down") })
	c := &report.Consumer{Events: q, Handlers: []report.Handler{fail}, Log: e.log, Sleep: sl.Sleep, MinBackoff: time.Second, MaxBackoff: time.Minute}

	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil on cancellation", err)
	}
	s, m := time.Second, time.Minute
	want := []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, m, m, m}
	if diff := cmp.Diff(want, sl.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if acked := q.Acked(); len(acked) != 0 {
		t.Errorf("acked %v, want nothing", acked)
	}
}

// closedEvents is an event log that was closed.
type closedEvents struct{ fakeEvents }

func (*closedEvents) Receive(context.Context) (queue.EventDelivery, error) {
	return nil, queue.ErrClosed
}

func TestConsumeClosed(t *testing.T) {
	c := &report.Consumer{Events: &closedEvents{}, MinBackoff: time.Second, MaxBackoff: time.Minute}
	if err := c.Run(context.Background()); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Run = %v, want ErrClosed", err)
	}
}

// TestConsumerNamesWhatIsMissing: the consumer decides no backoff itself;
// Run refuses a Consumer that lacks a setting, says which, and receives
// nothing.
func TestConsumerNamesWhatIsMissing(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*report.Consumer)
		wantErr string
	}{
		{name: "no events", change: func(c *report.Consumer) { c.Events = nil }, wantErr: "no Events"},
		{name: "no min backoff", change: func(c *report.Consumer) { c.MinBackoff = 0 }, wantErr: "MinBackoff is 0s"},
		{name: "no max backoff", change: func(c *report.Consumer) { c.MaxBackoff = 0 }, wantErr: "MaxBackoff 0s is less than its MinBackoff 1s"},
		{name: "max below min", change: func(c *report.Consumer) { c.MaxBackoff = time.Millisecond }, wantErr: "MaxBackoff 1ms is less"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			q := &fakeEvents{events: []turtles.Event{queued("linux", 1)}, stop: cancel}
			c := &report.Consumer{Events: q, MinBackoff: time.Second, MaxBackoff: time.Minute}
			tt.change(c)
			err := c.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run: %v, want an error containing %q", err, tt.wantErr)
			}
			if acked := q.Acked(); len(acked) != 0 {
				t.Errorf("acked %v, want nothing", acked)
			}
		})
	}
}
