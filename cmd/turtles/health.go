package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/health"
)

// A bot's heartbeat for its health endpoint (--health-listen): every
// healthEvery a round trip to the state database it shares with the hook
// and the reporter (where it reserves the task keys of the plans it runs),
// and unhealthy once healthStale passes without one that worked.
const (
	healthEvery = 10 * time.Second
	healthStale = 3 * healthEvery
	// healthProbe is the delivery ID the round trip looks up: none has it.
	healthProbe = "turtles-bot-health-probe"
)

func healthOptions() []option {
	return []option{
		opt("health-listen", "address of the bot's health endpoint, GET /healthz: 200 while its heartbeat (a round trip to the state database every 10s) works, 503 after 30s without one; default: none", str(func(s *Settings) *string { return &s.HealthListen })),
	}
}

// serveHealth serves the bot's /healthz on --health-listen until the
// returned stop is called (addr is where it listens): from before the bot starts until after it has
// drained, so that a draining bot is not taken for a dead one.
func serveHealth(s Settings, sys *system, log *slog.Logger, clock clockwork.Clock) (stop func(), addr string, err error) {
	ln, err := net.Listen("tcp", s.HealthListen)
	if err != nil {
		return nil, "", fmt.Errorf("health endpoint: %w", err)
	}
	beats := health.New(clock, healthStale)
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", beats)
	srv := newHTTPServer(mux, s)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	db := sys.State.Get()
	wg.Go(func() {
		beats.Run(ctx, healthEvery, func(ctx context.Context) error {
			_, err := db.Seen(ctx, healthProbe)
			return err
		})
	})
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint stopped", "err", err)
		}
	})
	log.Info("health endpoint listening", "addr", ln.Addr().String(), "every", healthEvery, "stale", healthStale)
	return func() {
		cancel()
		srv.Close()
		wg.Wait()
	}, ln.Addr().String(), nil
}
