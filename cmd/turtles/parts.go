package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/hook"
	"github.com/turtles-ci/turtles/metrics"
	"github.com/turtles-ci/turtles/report"
	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/scan"
	"github.com/turtles-ci/turtles/triage"
	"github.com/turtles-ci/turtles/web"
)

// The builders of the system's parts (openQueue and openDeliveries are in
// queues.go). Each sets its part, or records why the process cannot have
// it and returns nil, or returns what is wrong with the settings.

func (sys *system) openStore() error {
	if !strings.HasPrefix(sys.s.Store, "s3://") {
		if err := os.MkdirAll(sys.s.StoreDir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", sys.s.StoreDir, err)
		}
	}
	st, err := openStore(sys.s, sys.log)
	if err != nil {
		return err
	}
	if st, err = metrics.Store(st, sys.reg); err != nil {
		return err
	}
	if !strings.HasPrefix(sys.s.Store, "s3://") {
		if _, err := metrics.Register(sys.reg, metrics.NewDisk("store", sys.s.StoreDir)); err != nil {
			return err
		}
	}
	sys.Store.Set(st)
	return nil
}

// openResults builds the recorder of events into the state's history,
// reading results.json files from the store.
func (sys *system) openResults() error {
	st := sys.Store.Get()
	tasks, err := metrics.NewTasks(sys.reg)
	if err != nil {
		return err
	}
	sys.Results.Set(results.New(results.Config{
		Observe: tasks.Observe,
		History: sys.State.Get(),
		// The final event of a task frees its key (queue.Dedupe).
		Keys:  sys.State.Get(),
		Store: st,
		// A bot that died cannot end its log; the recorder does, with why.
		EndLog: func(ctx context.Context, r turtles.Result) error { return bot.EndLost(ctx, st, r) },
		Log:    sys.log.With("part", "results"),
	}))
	return nil
}

func (sys *system) openForge() error {
	f, err := newForge(sys.s, sys.log, sys.forgeHTTPClient)
	if err != nil {
		return err
	}
	sys.Forge.Set(f)
	return nil
}

// openGate builds the gate, which needs forge lookups (credentials).
func (sys *system) openGate() error {
	f := sys.Forge.Get()
	lookup, ok := f.(forge.Lookup)
	if !ok {
		sys.Gate.absent("forge credentials: GitHub: --github-token-file, TURTLES_GITHUB_TOKEN or --github-app-id; GitLab: --gitlab-token-file or TURTLES_GITLAB_TOKEN")
		sys.log.Warn("no forge lookups: pull requests by untrusted authors and comment commands are ignored")
		return nil
	}
	def, err := loadDefaultConfig(sys.s)
	if err != nil {
		return err
	}
	g, err := gate.New(gate.Config{Lookup: lookup, Forge: f, Queue: sys.Queue.Get(), Events: sys.Events.Get(),
		Orgs: sys.s.TrustedOrgs, Allow: sys.s.TrustedUsers, Policy: sys.s.policy(), Default: def, Log: sys.log.With("part", "gate")})
	if err != nil {
		return err
	}
	sys.Gate.Set(g)
	return nil
}

func (sys *system) openReporter() error {
	f := sys.Forge.Get()
	statuses, _ := f.(forge.StatusReader) // nil: a takeover may post a final twice
	sys.Reporter.Set(report.New(report.Config{Forge: f, Finals: sys.State.Get(), Holder: holderName("reporter"),
		Claim: sys.s.Lease, Statuses: statuses, Log: sys.log.With("part", "reporter"), Registerer: sys.reg}))
	return nil
}

// openScanner builds the scanner of --scan-repos, which asks the forge
// through the gate's lookups.
func (sys *system) openScanner() error {
	s := sys.s
	if len(s.ScanRepos) == 0 {
		sys.Scanner.absent("no repositories: set --scan-repos OWNER/NAME,...")
		return nil
	}
	g, ok := sys.Gate.GetOK()
	if !ok {
		return errors.New("scan: needs " + sys.Gate.why)
	}
	cloneBase := s.cloneBase()
	var repos []scan.Repo
	for _, r := range s.ScanRepos {
		repos = append(repos, scan.Repo{Name: r, CloneURL: strings.TrimRight(cloneBase, "/") + "/" + r + ".git", Branches: s.ScanBranches})
	}
	sc, err := scan.New(scan.Config{Lookup: sys.Forge.Get().(forge.Lookup), Gate: g, Queue: sys.Queue.Get(), Events: sys.Events.Get(),
		Repos: repos, Pool: s.Pool, Policy: s.policy(), Log: sys.log.With("part", "scan")})
	if err != nil {
		return err
	}
	sys.Scanner.Set(sc)
	return nil
}

// loadDefaultConfig parses --default-config; nil without one.
func loadDefaultConfig(s Settings) (*config.Config, error) {
	if s.DefaultConfig == "" {
		return nil, nil
	}
	data, err := os.ReadFile(s.DefaultConfig)
	if err != nil {
		return nil, fmt.Errorf("default config: %w", err)
	}
	return config.Parse(s.DefaultConfig, data)
}

func (sys *system) openBot() error {
	s := sys.s
	if err := os.MkdirAll(s.WorkDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", s.WorkDir, err)
	}
	def, err := loadDefaultConfig(s)
	if err != nil {
		return err
	}
	images, err := newImageCache(s, sys.log, sys.reg, nil)
	if err != nil {
		return err
	}
	if _, err := metrics.Register(sys.reg, metrics.NewDisk("work", s.WorkDir)); err != nil {
		return err
	}
	box, err := openSandbox(s, sys.log)
	if err != nil {
		return err
	}
	// turtles' own infrastructure patterns, embedded and tested
	// (triage.Defaults): a broken one is a build that must not ship.
	known, errs := triage.Defaults()
	if len(errs) > 0 {
		return fmt.Errorf("turtles' own known-issue patterns: %w", errors.Join(errs...))
	}
	if err := addKnownIssues(known, s.KnownIssues, sys.log); err != nil {
		return err
	}
	b, err := bot.New(bot.Config{
		Triage:        known,
		Sandbox:       box,
		Policy:        s.policy(),
		UntrustedHost: slices.Contains(s.UntrustedHostPools, s.Pool),
		Default:       def,
		Name:          s.BotName,
		Queue:         sys.Queue.Get(),
		Events:        sys.Events.Get(),
		Store:         sys.Store.Get(),
		Pool:          s.Pool,
		Slots:         s.Slots,
		WorkDir:       s.WorkDir,
		Heartbeat:     s.heartbeat(),
		Clock:         clockwork.NewRealClock(),
		KillGrace:     killGrace,
		RetryDelays:   s.RetryDelays,
		MaxDeliveries: s.MaxDeliveries,
		SecretsDir:    s.SecretsDir,
		VM:            sys.sharedStates(s.taskVMs(taskVMDir(s.WorkDir), images), images),
		Log:           sys.log.With("part", "bot"),
		Registerer:    sys.reg,
		// The pages and /metrics of whichever process serves them
		// count live bots from these heartbeats, and so does the bot's
		// own /healthz (--health-listen).
		Presence:      sys.presence(),
		PresenceEvery: s.BotHeartbeat,
	})
	if err != nil {
		return err
	}
	sys.Bot.Set(b)
	return nil
}

// openReceiver builds the webhook receiver of --forge. What needs forge
// lookups (pull requests of untrusted authors, comment commands) goes to
// the inbox, for the gate of the process that holds the forge token:
// in a process that holds it (serve) only if it has a gate, else such
// webhooks are ignored at the door; a hook alone cannot know, and the
// reporter takes every request (lifecycle.go: takeGateRequests).
func (sys *system) openReceiver() error {
	s := sys.s
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", s.DataDir, err)
	}
	secretValue, secretPath, err := webhookSecret(s)
	if err != nil {
		return err
	}
	inbox, _ := sys.Inbox.GetOK()
	if sys.Forge.isSet() && !sys.Gate.isSet() {
		inbox = nil
	}
	name, h, err := webhookReceiver(s, hook.Config{
		Secret:     []byte(secretValue),
		Queue:      sys.Queue.Get(),
		Inbox:      inbox,
		Deliveries: sys.Deliveries.Get(),
		Pool:       s.Pool,
		Log:        sys.log.With("part", "hook"),
		Registerer: sys.reg,
	})
	if err != nil {
		return err
	}
	sys.Receiver.Set(receiver{name: name, handler: h, secretPath: secretPath})
	return nil
}

// openHTTP listens on --listen with the pages, the API, the webhook
// receiver and /metrics, as far as the process has them: a process that
// records results serves the web package's pages and API from the state
// database; a webhook receiver alone serves only itself, /metrics and
// /healthz.
func (sys *system) openHTTP() error {
	var h http.Handler
	rcv, hasReceiver := sys.Receiver.GetOK()
	if sys.Results.isSet() {
		var hooks map[string]http.Handler
		if hasReceiver {
			hooks = map[string]http.Handler{rcv.name: rcv.handler}
		}
		st, _ := sys.Store.GetOK()
		q, _ := sys.Queue.GetOK()
		auth, err := sys.newAuth()
		if err != nil {
			return err
		}
		h = web.New(web.Config{History: sys.State.Get(), Store: st, Queue: q, Hooks: hooks, Gatherer: sys.reg, Log: sys.log.With("part", "web"),
			Actions: sys.State.Get(), Auth: auth, Bots: sys.State.Get(),
			// A bot is shown dead after a lease without a heartbeat, as the
			// queue takes its tasks back then.
			BotTimeout: sys.s.Lease})
	} else {
		mux := http.NewServeMux()
		if hasReceiver {
			mux.Handle("/hook/"+rcv.name, rcv.handler)
		}
		mux.Handle("GET /metrics", promhttp.HandlerFor(sys.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		h = mux
	}
	if err := sys.registerMonitoring(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", sys.s.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sys.onClose(func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	sys.HTTP.Set(httpServer{srv: newHTTPServer(h, sys.s), ln: ln})
	return nil
}

// holderName names this process among those sharing the state database:
// role, host, process and a random part, so that a restarted process in
// a container (same host name, pid 1) is not taken for the one before.
func holderName(role string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s@%s:%d:%x", role, host, os.Getpid(), b)
}
