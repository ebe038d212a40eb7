package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/web"
)

func reporterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reporter",
		Short: "Consume task events: record results, set commit statuses, serve the API, log pages and metrics",
		Long: `reporter consumes the events that bots and the queue emit on --queue,
records them in DATA-DIR/results.db and sets commit statuses on the forge
(it is the only process that needs the forge token). It also runs the trust
gate on what the hook could not decide alone (pull requests of untrusted
authors, comment commands such as /ok-to-test), which the hook passes
through the queue's inbox. It serves the JSON API
(/api/v1/...), the log pages of --store-dir and /metrics on --listen.

With RabbitMQ, run one reporter, or several on different data dirs: only one
consumes at a time (single active consumer), the others stand by.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return runReporter(s)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "public-url", "queue", "pool", "lease", "max-deliveries", "store-dir", "store", "s3-credentials-file",
		"github-api", "github-token-file", "bot-name", "log-level", "log-format")
	addTrustFlags(cmd.Flags())
	addIsolationFlags(cmd.Flags(), false)
	addForgeFlags(cmd.Flags())
	addHTTPFlags(cmd.Flags(), "http-read-timeout", "http-idle-timeout")
	return cmd
}

func runReporter(s Settings) error {
	log := newLogger(s, os.Stderr)
	ctx, _, stop := signals()
	defer stop()
	for _, d := range []string{s.DataDir, s.StoreDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	qs, err := openQueues(s, log)
	if err != nil {
		return err
	}
	defer qs.Close()
	st, err := openStore(s, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		queueCollector{qs.queue})
	rp, err := openReporting(s, qs, st, reg, log)
	if err != nil {
		return err
	}
	defer rp.Close()
	h := web.New(web.Config{Results: rp.res, Store: st, Queue: qs.queue, Gatherer: reg, Log: log.With("part", "web")})

	var wg sync.WaitGroup
	events, stopEvents := context.WithCancel(context.Background())
	defer wg.Wait()
	defer stopEvents()
	// The gate needs the forge token, so it runs here, on the requests the
	// hook puts in the queue's inbox.
	if err := rp.run(events, &wg, s, log); err != nil {
		return err
	}
	log.Info("turtles reporter running", "version", buildVersion(), "url", s.PublicURL, "queue", redactQueue(s.Queue))
	announcePublicURL(s, log)
	return serveHTTP(ctx, s, h, log)
}
