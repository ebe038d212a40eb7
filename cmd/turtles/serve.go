package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/hook"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web"
)

// system holds the parts one process runs, wired once (as tailscale's
// tsd does), so that serve and bot build them the same way.
type system struct {
	s     Settings
	log   *slog.Logger
	reg   *prometheus.Registry
	queue queue.Queue
	store store.Store
	qs    *queues // queue, events and webhook deliveries of --queue
}

func openSystem(s Settings, log *slog.Logger) (*system, error) {
	for _, d := range []string{s.DataDir, s.WorkDir, s.StoreDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	qs, err := openQueues(s, log)
	if err != nil {
		return nil, err
	}
	q := qs.queue
	reg.MustRegister(queueCollector{q})
	st, err := openStore(s, log)
	if err != nil {
		qs.Close()
		return nil, err
	}
	return &system{s: s, log: log, reg: reg, queue: q, store: st, qs: qs}, nil
}

func (sys *system) Close() error { return sys.qs.Close() }

func (sys *system) bot() (*bot.Bot, error) {
	s := sys.s
	def, err := loadDefaultConfig(s)
	if err != nil {
		return nil, err
	}
	images, err := newImageCache(s, sys.log, sys.reg, nil)
	if err != nil {
		return nil, err
	}
	box, err := openSandbox(s, sys.log)
	if err != nil {
		return nil, err
	}
	return bot.New(bot.Config{
		Sandbox:       box,
		Policy:        s.policy(),
		UntrustedHost: slices.Contains(s.UntrustedHostPools, s.Pool),
		Default:       def,
		Name:          s.BotName,
		Queue:         sys.queue,
		Events:        sys.qs.events,
		Store:         sys.store,
		Pool:          s.Pool,
		Slots:         s.Slots,
		WorkDir:       s.WorkDir,
		Heartbeat:     s.heartbeat(),
		Clock:         clockwork.NewRealClock(),
		KillGrace:     killGrace,
		RetryDelays:   s.RetryDelays,
		SecretsDir:    s.SecretsDir,
		VM:            bot.VMConfig{ImagesDir: s.ImagesDir, Images: images},
		Log:           sys.log.With("part", "bot"),
		Registerer:    sys.reg,
	})
}

// runBot runs b until ctx ends, then drains: running tasks get the drain
// timeout or until again fires, then are put back on the queue.
func runBot(ctx context.Context, again <-chan os.Signal, b *bot.Bot, s Settings, log *slog.Logger) error {
	drain, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-ctx.Done()
		log.Info("draining: taking no new tasks; running tasks may finish", "timeout", s.DrainTimeout,
			"hint", "press Ctrl-C again to stop now and put them back on the queue")
		select {
		case <-again:
			log.Info("stopping now: running tasks go back on the queue")
		case <-time.After(s.DrainTimeout):
			log.Info("drain timeout: running tasks go back on the queue")
		case <-drain.Done():
		}
		stop()
	}()
	return b.Run(ctx, drain)
}

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run webhook receiver, queue, bot, reporter, log pages, API and metrics in one process",
		Long: `serve runs all of turtles in one process, on an embedded queue, storing
everything under --data-dir. With no flags it works: it generates a webhook
secret in the data dir and, without a GitHub token, logs the statuses it
would set.

Ctrl-C (SIGINT) or SIGTERM drains: no new task starts, running tasks finish
(up to --drain-timeout), a second Ctrl-C puts them back on the queue at once.
Nothing is lost: what did not finish runs again at the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return serve(s)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "public-url", "queue", "lease", "max-deliveries", "retry-delays", "bot-name", "pool",
		"slots", "work-dir", "store-dir", "store", "s3-credentials-file", "images-dir", "secrets-dir", "drain-timeout", "github-api", "github-token-file", "webhook-secret-file",
		"log-level", "log-format")
	addTrustFlags(cmd.Flags())
	addIsolationFlags(cmd.Flags(), true)
	addImageFlags(cmd.Flags())
	addForgeFlags(cmd.Flags())
	addHTTPFlags(cmd.Flags())
	return cmd
}

func serve(s Settings) error {
	log := newLogger(s, os.Stderr)
	ctx, again, stopSignals := signals()
	defer stopSignals()

	sys, err := openSystem(s, log)
	if err != nil {
		return err
	}
	defer sys.Close()
	rp, err := openReporting(s, sys.qs, sys.store, sys.reg, log)
	if err != nil {
		return err
	}
	defer rp.Close()

	secretValue, secretPath, err := webhookSecret(s)
	if err != nil {
		return err
	}
	deliveries, err := sys.qs.deliveries()
	if err != nil {
		return err
	}
	hookName, receiver, err := webhookReceiver(s, hook.Config{
		Secret:     []byte(secretValue),
		Queue:      sys.queue,
		Inbox:      rp.inbox,
		Deliveries: deliveries,
		Pool:       s.Pool,
		Log:        log.With("part", "hook"),
		Registerer: sys.reg,
	})
	if err != nil {
		return err
	}
	b, err := sys.bot()
	if err != nil {
		return err
	}
	srv := newHTTPServer(web.New(web.Config{
		Results:  rp.res,
		Store:    sys.store,
		Queue:    sys.queue,
		Hooks:    map[string]http.Handler{hookName: receiver},
		Gatherer: sys.reg,
		Log:      log.With("part", "web"),
	}), s)
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("turtles serving", "version", buildVersion(), "url", s.PublicURL, "webhook", s.PublicURL+"/hook/"+hookName,
		"webhook_secret", secretPath, "data_dir", s.DataDir, "slots", s.Slots, "pool", s.Pool)
	announcePublicURL(s, log)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web server stopped", "err", err)
		}
	}()
	// Events outlive the bot by a little so that its last results are
	// reported; what is left is durable and reported at the next start.
	events, stopEvents := context.WithCancel(context.Background())
	if err := rp.run(events, &wg, s, log); err != nil {
		stopEvents()
		return err
	}

	botErr := runBot(ctx, again, b, s, log)
	time.Sleep(time.Second)
	stopEvents()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	wg.Wait()
	log.Info("stopped")
	return botErr
}

// queueCollector exports queue depth per pool and state.
type queueCollector struct{ q queue.Queue }

var queueDesc = prometheus.NewDesc("turtles_queue_tasks", "Tasks in the queue by pool and state.", []string{"pool", "state"}, nil)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueDesc }

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.q.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDesc, err)
		return
	}
	for _, st := range stats {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(st.Count), st.Pool, st.State)
	}
}
