package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/health"
	"github.com/turtles-ci/turtles/state"
)

func healthOptions() []option {
	return []option{
		opt("health-listen", "address of the bot's health and metrics endpoint: GET /healthz answers 200 while its heartbeats (--bot-heartbeat) reach the state database, 503 once it has missed 3 in a row; GET /metrics has the bot's Prometheus metrics (tasks, store errors, disks, image cache); default: none", str(func(s *Settings) *string { return &s.HealthListen })),
	}
}

// presence is where the bot's heartbeats go: the state database, and,
// with --health-listen, the record /healthz answers from. The bot counts
// as dead there when the pages and /metrics count it dead: after
// state.MissedBeats periods without a heartbeat that got through.
func (sys *system) presence() bot.Presence {
	if sys.s.HealthListen == "" {
		return sys.State.Get()
	}
	sys.beats = health.New(clockwork.NewRealClock(), state.MissedBeats*sys.s.BotHeartbeat)
	return watchedPresence{Presence: sys.State.Get(), beats: sys.beats}
}

// watchedPresence passes a bot's heartbeats on and records in beats
// whether each got through.
type watchedPresence struct {
	bot.Presence
	beats *health.Beats
}

func (w watchedPresence) Heartbeat(ctx context.Context, b state.Bot) error {
	err := w.Presence.Heartbeat(ctx, b)
	if err != nil {
		w.beats.Miss(err)
	} else {
		w.beats.Beat()
	}
	return err
}

// serveHealth serves the bot's /healthz and /metrics on --health-listen until the
// returned stop is called (addr is where it listens): from before the bot
// starts until after it has drained, so that a draining bot, which still
// heartbeats, is not taken for a dead one.
func serveHealth(s Settings, sys *system, log *slog.Logger) (stop func(), addr string, err error) {
	if sys.beats == nil {
		return nil, "", errors.New("health endpoint: this process has no bot heartbeats")
	}
	ln, err := net.Listen("tcp", s.HealthListen)
	if err != nil {
		return nil, "", fmt.Errorf("health endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", sys.beats)
	mux.Handle("GET /metrics", promhttp.HandlerFor(sys.reg, promhttp.HandlerOpts{}))
	srv := newHTTPServer(mux, s)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint stopped", "err", err)
		}
	})
	log.Info("health and metrics endpoint listening", "addr", ln.Addr().String(), "every", s.BotHeartbeat, "stale", state.MissedBeats*s.BotHeartbeat)
	return func() {
		srv.Close()
		wg.Wait()
	}, ln.Addr().String(), nil
}
