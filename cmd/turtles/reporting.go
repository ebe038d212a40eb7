package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/report"
	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web"
)

// reporting is the part of a process that holds the forge token: it turns
// the queue's events into results and commit statuses, and runs the trust
// gate and the scanner. serve and reporter wire it the same way.
type reporting struct {
	qs    *queues
	res   *results.DB
	forge forge.Forge
	gate  *gate.Gate  // nil when the forge answers no lookups
	inbox queue.Inbox // the gate's requests; nil without a gate
	rep   *report.Reporter
}

// openReporting opens the results DB in the data dir (reading results.json
// files from st) and builds the forge client, the gate and the reporter.
func openReporting(s Settings, qs *queues, st store.Store, reg prometheus.Registerer, log *slog.Logger) (*reporting, error) {
	res, err := results.Open(filepath.Join(s.DataDir, "results.db"), log.With("part", "results"))
	if err != nil {
		return nil, err
	}
	res.ReadResultsFrom(st)
	if st != nil {
		// A bot that died cannot end its log; the recorder does, with why.
		res.EndLostLogs(func(ctx context.Context, r turtles.Result) error { return bot.EndLost(ctx, st, r) })
	}
	r := &reporting{qs: qs, res: res}
	if r.forge, err = newForge(s, log); err != nil {
		res.Close()
		return nil, err
	}
	if r.gate, err = newGate(s, r.forge, qs.queue, qs.events, log); err != nil {
		res.Close()
		return nil, err
	}
	if r.gate != nil {
		r.inbox = qs.queue
	}
	r.rep = report.New(report.Config{Forge: r.forge, Log: log.With("part", "reporter"), Registerer: reg})
	return r, nil
}

func (r *reporting) Close() error { return r.res.Close() }

// run consumes events, and runs the gate on the inbox and the scanner
// (with --scan-repos), until ctx ends; wg counts what it started.
func (r *reporting) run(ctx context.Context, wg *sync.WaitGroup, s Settings, log *slog.Logger) error {
	// Bots do not know where the pages are served; this process does.
	link := func(t turtles.Task) string { return web.LogURL(s.PublicURL, t) }
	wg.Go(func() {
		report.Consume(ctx, r.qs.events, log.With("part", "events"), report.Linked(r.res, link), report.Linked(r.rep, link))
	})
	return runTrust(ctx, wg, s, r.gate, r.inbox, r.forge, r.qs.queue, r.qs.events, log)
}

// publicURLFile, in the data dir, holds the public URL of the last serve
// or reporter that used it, so that `turtles submit` there can link.
const publicURLFile = "public-url"

// announcePublicURL warns when the links were made from a wildcard listen
// address and the host's name, and records the URL for `turtles submit`.
func announcePublicURL(s Settings, log *slog.Logger) {
	if s.PublicURLHostname {
		log.Warn("log links in statuses and the API use "+s.PublicURL+", made from --listen "+s.Listen+
			" and this host's name; if people or the forge reach the pages at another address, set it with --public-url, TURTLES_PUBLIC_URL or public_url in the --config file",
			"url", s.PublicURL)
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, publicURLFile), []byte(s.PublicURL+"\n"), 0o644); err != nil {
		log.Warn("cannot record the public URL for turtles submit", "err", err)
	}
}
