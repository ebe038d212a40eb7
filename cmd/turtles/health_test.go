package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/health"
	"github.com/turtles-ci/turtles/state"
)

// presenceFunc is a bot.Presence that answers with a function.
type presenceFunc func() error

func (f presenceFunc) Heartbeat(context.Context, state.Bot) error { return f() }

// TestWatchedPresence: every heartbeat goes on to the presence, and the
// health record follows whether it got through.
func TestWatchedPresence(t *testing.T) {
	clock := clockwork.NewFakeClock()
	beats := health.New(clock, 15*time.Second)
	var fail error
	calls := 0
	w := watchedPresence{Presence: presenceFunc(func() error { calls++; return fail }), beats: beats}
	healthy := func() bool {
		rec := httptest.NewRecorder()
		beats.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code == http.StatusOK
	}
	for _, step := range []struct {
		name    string
		advance time.Duration
		fail    error
		healthy bool
	}{
		{"beats get through", 5 * time.Second, nil, true},
		{"the database fails", 5 * time.Second, errors.New("database down"), true},
		{"still within 15s of the last good beat", 10 * time.Second, errors.New("database down"), true},
		{"15s passed", 5 * time.Second, errors.New("database down"), false},
		{"the database is back", 5 * time.Second, nil, true},
	} {
		clock.Advance(step.advance)
		fail = step.fail
		if err := w.Heartbeat(t.Context(), state.Bot{Name: "b"}); !errors.Is(err, step.fail) {
			t.Errorf("%s: Heartbeat = %v, want %v", step.name, err, step.fail)
		}
		if got := healthy(); got != step.healthy {
			t.Errorf("%s: healthy %v, want %v", step.name, got, step.healthy)
		}
	}
	if calls != 5 {
		t.Errorf("the presence got %d heartbeats, want 5", calls)
	}
}

// TestBotHealth runs a real bot with --health-listen: /metrics answers, /healthz stays 200
// past the limit while its heartbeats reach the state database, and turns
// 503, saying why, once they cannot.
func TestBotHealth(t *testing.T) {
	s := testSettings(t)
	s.HealthListen, s.BotHeartbeat = "127.0.0.1:0", time.Second
	log := slog.New(slog.DiscardHandler)
	sys, err := openSystem(s, log, botParts)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	stop, addr, err := serveHealth(s, sys, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sys.run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Past the limit (3 beats of 1s) since the start: only beats that got
	// through keep it healthy.
	time.Sleep(state.MissedBeats*s.BotHeartbeat + 2*time.Second)
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q while the bot heartbeats, want 200 ok", code, body)
	}
	// A distributed bot is scraped on the same address: its own metrics,
	// the work disk's free space among them.
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `turtles_disk_free_bytes{dir="work"}`) {
		t.Fatalf("GET /metrics = %d, want 200 with the work disk's free bytes:\n%s", code, body)
	}
	// The state database goes away: every heartbeat from now on fails.
	sys.State.Get().Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get("/healthz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "no heartbeat for") && strings.Contains(body, "the last failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz = %d %q long after the database closed, want 503 saying how long and why", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
