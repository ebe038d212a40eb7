package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/hook"
)

func hookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Receive forge webhooks and queue plan tasks, for turtles on RabbitMQ",
		Long: `hook runs only the webhook receiver (/hook/github, or /hook/gitlab with
--forge gitlab), /metrics and /healthz: it checks each delivery's signature (GitLab:
its token) with the webhook secret and publishes a plan task
to --queue. It needs no forge token. A publish that fails or takes longer
than --webhook-publish-timeout (the broker is down) answers 503, so the
forge can deliver again.

Delivery IDs and the SHA-256 of each body are remembered in
DATA-DIR/deliveries.db so that a redelivered webhook, or a payload replayed
under a new delivery ID, is not queued twice; run one hook per data dir.
Unsigned bodies are bounded by --http-read-timeout and --webhook-body-budget.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return runHook(s)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "queue", "pool", "lease", "max-deliveries", "webhook-secret-file",
		"bot-name", "log-level", "log-format")
	addForgeFlags(cmd.Flags(), "forge")
	addHTTPFlags(cmd.Flags())
	return cmd
}

func runHook(s Settings) error {
	log := newLogger(s, os.Stderr)
	ctx, _, stop := signals()
	defer stop()
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	qs, err := openQueues(s, log)
	if err != nil {
		return err
	}
	defer qs.Close()
	deliveries, err := qs.deliveries()
	if err != nil {
		return err
	}
	secretValue, secretPath, err := webhookSecret(s)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Requests that need forge lookups go to the gate, which runs in the
	// reporter (it holds the forge token), through the queue's inbox.
	hookName, receiver, err := webhookReceiver(s, hook.Config{
		Secret:     []byte(secretValue),
		Queue:      qs.queue,
		Inbox:      qs.queue,
		Deliveries: deliveries,
		Pool:       s.Pool,
		Log:        log.With("part", "hook"),
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/hook/"+hookName, receiver)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	log.Info("turtles hook receiving", "version", buildVersion(), "listen", s.Listen, "queue", redactQueue(s.Queue),
		"webhook", "/hook/"+hookName, "webhook_secret", secretPath, "pool", s.Pool)
	return serveHTTP(ctx, s, mux, log)
}

// serveHTTP serves h on --listen until ctx ends.
func serveHTTP(ctx context.Context, s Settings, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := newHTTPServer(h, s)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("web server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	log.Info("stopped")
	return err
}
