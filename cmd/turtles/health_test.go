package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestBotHealth starts a bot's system with its health endpoint: healthy
// while its heartbeat reaches the state database; once the database is
// gone, unhealthy after healthStale without a good beat, saying why.
func TestBotHealth(t *testing.T) {
	s := testSettings(t)
	s.HealthListen = "127.0.0.1:0"
	sys, err := openSystem(s, slog.New(slog.DiscardHandler), botParts)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	clock := clockwork.NewFakeClock()
	stop, addr, err := serveHealth(s, sys, slog.New(slog.DiscardHandler), clock)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	// The state database goes away: every beat from now on fails.
	sys.State.Get().Close()
	ctx := t.Context()
	for range healthStale/healthEvery + 1 {
		clock.BlockUntilContext(ctx, 1)
		clock.Advance(healthEvery)
	}
	// The ticks are delivered; the beats they start fail, and are
	// recorded, some time after.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get()
		if code == http.StatusServiceUnavailable && strings.Contains(body, "no heartbeat for") && strings.Contains(body, "the last failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz = %d %q %s after the database closed, want 503 saying how long and why", code, body, healthStale+healthEvery)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
