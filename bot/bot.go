// Package bot is the worker loop: claim a task from the queue, check out
// its commit in a fresh workspace, run it (a plan task publishes the test
// tasks of .turtles.yaml; a test task runs its command), stream the log to
// the store, store the result, emit events and ack. It also runs a single
// context locally for `turtles run`, by the same code path.
//
// Only the wiring in cmd/ should import it.
package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles/metrics"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/gitmirror"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/sandbox"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/triage"
)

// Config configures a Bot. The bot decides no setting itself: New refuses
// a Config that lacks one, naming the field (cmd/turtles holds the
// defaults).
type Config struct {
	// Name identifies the bot in events and results. Required.
	Name string
	// Queue hands out tasks; Events carries progress, and must be the
	// event log on the queue's storage: a task's final event goes with
	// its ack through the queue (Delivery.AckWithTasks). Required.
	Queue  queue.Queue
	Events queue.Events
	// Store keeps logs, results and artifacts. Required.
	Store store.Store
	// Pool is the pool tasks are claimed from. Required.
	Pool string
	// Slots is how many tasks run at once, at least 1. Required.
	Slots int
	// WorkDir holds one workspace per running task. It belongs to this bot
	// alone (it is locked): leftovers in it are removed at start. Required.
	WorkDir string
	// LogURL, if set, puts the link of an attempt's page in its events and
	// result.json. turtles leaves it nil: only the process that serves the
	// pages knows where they are, and it links events (report.Linked).
	LogURL func(t turtles.Task) string
	// Triage holds the server's known-issue patterns (package triage),
	// searched in the log and artifacts of every failed test attempt,
	// before the repository's own; nil: the repository's only.
	Triage *triage.Set
	// MaxDeliveries is the queue's (queue.Options.MaxDeliveries): a test
	// failure is retried (Task.Retries) only while a delivery is left,
	// so that the queue never dead-letters it as an infra failure.
	MaxDeliveries int
	// RetryDelays are the delays before an infra failure is retried, by
	// delivery count; the last one repeats. Required, none negative.
	RetryDelays []time.Duration
	// Heartbeat is how often a running task's lease is extended; keep it
	// under a third of the queue's lease. Required.
	Heartbeat time.Duration
	// Clock times the heartbeats (clockwork.NewRealClock(); tests pass a
	// fake one). Required.
	Clock clockwork.Clock
	// KillGrace is the time from SIGTERM to SIGKILL. Required.
	KillGrace time.Duration
	// Env is extra environment for task commands, "KEY=value". It may set
	// PATH; it cannot change HOME or the TURTLES_* variables.
	Env []string
	// SecretsDir holds the secrets trusted tasks may ask for by name: one
	// file per name, holding the value (as Kubernetes mounts a secret).
	// Empty: this bot has no secrets, and tasks that ask for one fail as
	// infra.
	SecretsDir string
	// Sandbox isolates the commands that run on the bot (no image, or host
	// mode). Nil: this host cannot isolate tasks, so trusted work runs as
	// the bot's own processes and untrusted work outside a guest VM is
	// refused, as infra (another bot may take it).
	Sandbox *sandbox.Sandbox
	// Policy is what plans let untrusted work ask for (config.Policy).
	Policy config.Policy
	// UntrustedHost says that the operator dedicated this bot's pool to
	// untrusted work outside guest VMs (host mode, no image); it is still
	// isolated, and refused without a Sandbox. False: such work fails
	// with a reason that says so.
	UntrustedHost bool
	// VM configures the VMs of tasks that name an image.
	VM VMConfig
	// GitMirror, if set, is where commits are fetched from instead of
	// the task's clone URL (the forge): the same OWNER/NAME at the
	// mirror (package gitmirror), so that bots need no route to the
	// forge. Nil: from the clone URL.
	GitMirror *gitmirror.Client
	// Default is the configuration plans use for a commit without
	// .turtles.yaml (the server's default); nil: such a commit fails its
	// plan with "no .turtles.yaml".
	Default *config.Config
	// Presence, if set, is told every PresenceEvery that the bot is
	// alive, with its pool, slots and the tasks it runs; nil: the bot
	// says nothing of itself (the pages and metrics do not know it).
	Presence      Presence
	PresenceEvery time.Duration
	// Log gets the bot's own log; nil discards.
	Log *slog.Logger
	// Registerer gets the bot's metrics; nil means no metrics.
	Registerer prometheus.Registerer
}

// Bot runs tasks from one pool.
type Bot struct {
	cfg     Config
	run     runner
	log     *slog.Logger
	m       *botMetrics
	running slotTasks
}

// New validates cfg and returns a bot ready to Run.
func New(cfg Config) (*Bot, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("bot: no name")
	case cfg.Queue == nil || cfg.Events == nil:
		return nil, errors.New("bot: no queue")
	case cfg.Store == nil:
		return nil, errors.New("bot: no store")
	case cfg.WorkDir == "":
		return nil, errors.New("bot: no work directory")
	case cfg.Pool == "":
		return nil, errors.New("bot: no pool")
	case cfg.Slots < 1:
		return nil, fmt.Errorf("bot: Slots is %d, want at least 1", cfg.Slots)
	case cfg.MaxDeliveries < 1:
		return nil, fmt.Errorf("bot: MaxDeliveries is %d, want at least 1", cfg.MaxDeliveries)
	case len(cfg.RetryDelays) == 0 || slices.ContainsFunc(cfg.RetryDelays, func(d time.Duration) bool { return d < 0 }):
		return nil, fmt.Errorf("bot: RetryDelays %v, want at least one, none negative", cfg.RetryDelays)
	case cfg.Heartbeat <= 0:
		return nil, fmt.Errorf("bot: Heartbeat is %s, want more than 0", cfg.Heartbeat)
	case cfg.Clock == nil:
		return nil, errors.New("bot: no clock")
	case cfg.KillGrace <= 0:
		return nil, fmt.Errorf("bot: KillGrace is %s, want more than 0", cfg.KillGrace)
	case cfg.Presence != nil && cfg.PresenceEvery <= 0:
		return nil, fmt.Errorf("bot: PresenceEvery is %s, want more than 0", cfg.PresenceEvery)
	}
	if err := cfg.VM.check(); err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	if cfg.GitMirror != nil {
		if err := cfg.GitMirror.Check(); err != nil {
			return nil, fmt.Errorf("bot: %w", err)
		}
	}
	for _, kv := range cfg.Env {
		if !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("bot: environment entry %q is not KEY=value", kv)
		}
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("bot: work directory: %w", err)
	}
	cfg.WorkDir = abs
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	return &Bot{
		cfg: cfg,
		run: runner{killGrace: cfg.KillGrace, env: cfg.Env, vm: cfg.VM.withLog(cfg.Log), secretsDir: cfg.SecretsDir,
			sandbox: cfg.Sandbox, untrustedHost: cfg.UntrustedHost, mirror: cfg.GitMirror},
		log: cfg.Log.With("bot", cfg.Name, "pool", cfg.Pool),
		m:   m,
	}, nil
}

// Run claims and runs tasks in Slots goroutines until ctx ends; then it
// claims no more. Running tasks go on until they finish or drain ends: then
// their commands are killed and their tasks released, uncounted, for
// another bot. Run returns once every slot is idle; its error is for
// problems that stop the bot (work directory in use, queue closed).
func (b *Bot) Run(ctx, drain context.Context) error {
	unlock, err := b.lockWorkDir()
	if err != nil {
		return err
	}
	defer unlock()
	b.sweep()
	b.sweepVMs()
	// Draining implies stopping: a released task must not be claimed again.
	claimCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(drain, cancel)
	defer stop()

	b.log.Info("bot started", "slots", b.cfg.Slots, "work_dir", b.cfg.WorkDir)
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	// Heartbeats go on while tasks drain: the bot is alive until Run
	// returns.
	beating, stopBeats := context.WithCancel(context.Background())
	var beats sync.WaitGroup
	beats.Go(func() { b.announce(beating, b.cfg.Clock.Now()) })
	defer beats.Wait()
	defer stopBeats()
	for range b.cfg.Slots {
		wg.Go(func() {
			if err := b.slot(claimCtx, drain); err != nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
				cancel() // the queue is gone: every slot stops
			}
		})
	}
	wg.Wait()
	b.log.Info("bot stopped")
	return first
}

// slot runs tasks one after another.
func (b *Bot) slot(ctx, drain context.Context) error {
	for ctx.Err() == nil {
		d, err := b.cfg.Queue.Claim(ctx, b.cfg.Pool)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, queue.ErrClosed) {
				return fmt.Errorf("bot: claim: %w", err)
			}
			b.log.Error("claim failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		b.handle(drain, d)
	}
	return nil
}

// lockWorkDir makes sure no other bot uses the work directory, so that the
// sweep cannot remove a live workspace.
func (b *Bot) lockWorkDir() (unlock func(), err error) {
	if err := os.MkdirAll(b.cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("bot: work directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(b.cfg.WorkDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bot: lock work directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("bot: work directory %s is in use by another bot: %w", b.cfg.WorkDir, err)
	}
	return func() { f.Close() }, nil
}

// sweep removes workspaces left by a bot that died.
func (b *Bot) sweep() {
	entries, err := os.ReadDir(b.cfg.WorkDir)
	if err != nil {
		b.log.Warn("sweep work directory", "err", err)
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), workspacePrefix) {
			continue
		}
		path := filepath.Join(b.cfg.WorkDir, e.Name())
		if err := removeAll(path); err != nil {
			b.log.Warn("remove leftover workspace", "path", path, "err", err)
		} else {
			b.log.Info("removed leftover workspace", "path", path)
		}
	}
}

const tasksHelp = "Task attempts run by this bot, by pool and how they ended: " +
	"an outcome class (success, failure, infra, cancelled), or lost (the lease went to another bot) " +
	"or released (handed back on drain)."

// botMetrics are the bot's Prometheus collectors.
type botMetrics struct {
	tasks    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	busy     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*botMetrics, error) {
	m := &botMetrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_bot_tasks_total",
			Help: tasksHelp,
		}, []string{"pool", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "turtles_bot_task_duration_seconds",
			Help:    "Wall time of task attempts, from claim to ack.",
			Buckets: prometheus.ExponentialBuckets(1, 3, 10), // 1s .. 5.5h
		}, []string{"pool"}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "turtles_bot_busy_slots",
			Help: "Slots running a task now.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.tasks, err = metrics.Register(reg, m.tasks)
	if err != nil {
		return nil, err
	}
	m.duration, err = metrics.Register(reg, m.duration)
	if err != nil {
		return nil, err
	}
	m.busy, err = metrics.Register(reg, m.busy)
	if err != nil {
		return nil, err
	}
	return m, nil
}
