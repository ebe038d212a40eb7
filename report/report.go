// Package report turns task events into commit statuses on the forge: the
// last step of the data flow (hook -> queue -> bot -> events -> report).
//
// It holds the forge credentials through a forge.Forge; bots never import
// it. cmd/turtles wires a Reporter, and any other Handler such as the
// results recorder, into Consume, which drains the event log.
package report

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles/metrics"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
)

// Handler consumes task events.
type Handler interface {
	// Handle acts on ev. It is called once per event in emit order per
	// task, and again after a failure or a restart (delivery is at least
	// once), so it must be idempotent. An error wrapping forge.ErrPermanent
	// drops the event; any other error makes Consume try again later.
	Handle(ctx context.Context, ev turtles.Event) error
}

// DefaultRemember is how many task keys a Reporter remembers by default.
const DefaultRemember = 10000

// Config configures a Reporter. Forge is required.
type Config struct {
	Forge forge.Forge
	// Log receives one record per dropped or failed status; nil discards.
	Log *slog.Logger
	// Registerer gets turtles_statuses_total{state} and
	// turtles_forge_errors_total{kind}; nil means no metrics.
	Registerer prometheus.Registerer
	// Remember bounds the task keys kept to refuse regressions (see
	// Reporter). Default DefaultRemember.
	Remember int
}

// Reporter is a Handler that sets one commit status per task, with the
// task's context as the status context.
//
// A status never goes back: once a final status (success, failure, error)
// was set for attempt N of a task key, events of attempts <= N are dropped,
// so a late "started" from a bot that lost its lease cannot turn a green
// status pending again. Events of an attempt older than the newest seen are
// dropped too. A higher attempt (a retry, a retest) reports again.
//
// That memory is in process and bounded (least recently used keys are
// forgotten first). After a restart, or for a forgotten key, the event log
// is replayed from the first unacked event: a final status may be set
// again, which GitHub treats as a no-op, and a stale non-final event whose
// final status was set before the restart could still be posted. Delivery
// is at least once, never exactly once.
type Reporter struct {
	forge forge.Forge
	log   *slog.Logger

	statuses *prometheus.CounterVec
	errors   *prometheus.CounterVec

	mu     sync.Mutex
	recent *recent
}

var _ Handler = (*Reporter)(nil)

// New returns a Reporter for cfg. It panics if cfg.Forge is nil or the
// metrics clash with others of the same name, as prometheus.MustRegister
// does: both are wiring mistakes, not run-time conditions.
func New(cfg Config) *Reporter {
	if cfg.Forge == nil {
		panic("report: New without a Forge")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.Remember
	if n <= 0 {
		n = DefaultRemember
	}
	r := &Reporter{
		forge:  cfg.Forge,
		log:    log,
		recent: newRecent(n),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_statuses_total",
			Help: "Commit statuses set on the forge, by state.",
		}, []string{"state"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_forge_errors_total",
			Help: "Failed attempts to set a commit status, by kind: permanent, rate_limit, retryable.",
		}, []string{"kind"}),
	}
	if cfg.Registerer != nil {
		r.statuses = mustRegister(cfg.Registerer, r.statuses)
		r.errors = mustRegister(cfg.Registerer, r.errors)
	}
	return r
}

// mustRegister registers c, or reuses the collector already registered
// under its name, so that two reporters in one process share counters.
func mustRegister(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	c, err := metrics.Register(reg, c)
	if err != nil {
		panic(fmt.Sprintf("report: %v", err))
	}
	return c
}

// Handle implements Handler. Events of one task key must not be handled
// concurrently; Consume calls it serially.
func (r *Reporter) Handle(ctx context.Context, ev turtles.Event) error {
	t := ev.Task
	key, attempt := t.Key(), t.Attempt
	r.mu.Lock()
	st := r.recent.get(key)
	if attempt > st.seen {
		st.seen = attempt
	}
	// "queued" comes from the planner, "started" from a bot: a late
	// "queued" must not show Queued over Running.
	stale := attempt <= st.final || attempt < st.seen ||
		ev.Type == turtles.EventQueued && attempt <= st.started
	if ev.Type != turtles.EventQueued && attempt > st.started {
		st.started = attempt
	}
	red := st.planRed
	r.recent.put(key, st)
	r.mu.Unlock()
	if stale {
		r.log.Debug("status dropped: a later or final status was already set",
			"task", key, "attempt", attempt, "event", ev.Type, "event_id", ev.ID)
		return nil
	}

	status, ok := statusFor(ev, red)
	if !ok {
		return nil
	}
	status.Description = forge.Truncate(status.Description, forge.MaxDescription)
	if err := r.forge.SetStatus(ctx, t.Repo.Name, t.SHA, status); err != nil {
		r.errors.WithLabelValues(errorKind(err)).Inc()
		return fmt.Errorf("report %s %s of %s attempt %d: %w", status.State, ev.Type, key, attempt, err)
	}
	r.statuses.WithLabelValues(string(status.State)).Inc()

	if status.State != forge.Pending {
		r.mu.Lock()
		st := r.recent.get(key)
		st.final = max(st.final, attempt)
		st.planRed = t.Context == turtles.PlanContext && status.State != forge.Success
		r.recent.put(key, st)
		r.mu.Unlock()
	}
	return nil
}

// statusFor maps an event to the status people should see, or false when
// the event changes nothing they need to see. planRed says an earlier
// attempt of this plan task left a red status that a success must clear.
func statusFor(ev turtles.Event, planRed bool) (forge.Status, bool) {
	st := forge.Status{Context: ev.Task.Context, TargetURL: ev.LogURL}
	if ev.Task.Context == turtles.PlanContext {
		// A healthy commit shows only its test contexts; the plan speaks up
		// when .turtles.yaml is broken or planning failed.
		if ev.Type != turtles.EventFinished || ev.Outcome != nil && ev.Outcome.Class == turtles.Success && !planRed {
			return forge.Status{}, false
		}
	}
	switch ev.Type {
	case turtles.EventQueued:
		st.State, st.Description = forge.Pending, "Queued"
	case turtles.EventStarted:
		st.State, st.Description = forge.Pending, "Running"
		if ev.Bot != "" {
			st.Description = "Running on " + ev.Bot
		}
	case turtles.EventRetrying:
		// The event carries the attempt that failed; name the one to come.
		st.State = forge.Pending
		st.Description = fmt.Sprintf("Infrastructure problem, retrying (attempt %d)", ev.Task.Attempt+1)
		if ev.Outcome != nil && strings.TrimSpace(ev.Outcome.Reason) != "" {
			st.Description += ": " + strings.TrimSpace(ev.Outcome.Reason)
		}
	case turtles.EventFinished:
		st.State, st.Description = finished(ev)
	default:
		return forge.Status{}, false
	}
	return st, true
}

// finished is the state and description of a task's final status. It is
// the one place a class is put into words for people: an outcome's reason
// never says its class (turtles.Fault), so an infra or cancelled status
// leads with it, and a failure's reason ("exit status 1", ".turtles.yaml:7:
// ...") stands alone, the red mark saying the rest.
func finished(ev turtles.Event) (forge.State, string) {
	o := ev.Outcome
	if o == nil {
		return forge.Error, "Finished without an outcome"
	}
	reason := strings.TrimSpace(o.Reason)
	orDefault := func(def string) string {
		if reason == "" {
			return def
		}
		return reason
	}
	prefixed := func(prefix string) string {
		if reason == "" {
			return prefix
		}
		return prefix + ": " + reason
	}
	switch o.Class {
	case turtles.Success:
		if ev.Task.Context == turtles.PlanContext {
			return forge.Success, "Read .turtles.yaml"
		}
		return forge.Success, orDefault("Tests passed")
	case turtles.Failure:
		if ev.Task.Context == turtles.PlanContext {
			return forge.Failure, orDefault("Cannot read .turtles.yaml")
		}
		return forge.Failure, orDefault("Tests failed")
	case turtles.Infra:
		return forge.Error, prefixed("Infrastructure failure")
	case turtles.Cancelled:
		return forge.Error, prefixed("Cancelled")
	default:
		return forge.Error, fmt.Sprintf("Unknown outcome %q", o.Class)
	}
}

// retryAter is implemented by forge errors that know when to try again,
// such as *forge.RateLimitError.
type retryAter interface{ RetryAt() time.Time }

func errorKind(err error) string {
	var ra retryAter
	switch {
	case errors.Is(err, forge.ErrPermanent):
		return "permanent"
	case errors.As(err, &ra):
		return "rate_limit"
	default:
		return "retryable"
	}
}

// keyState is what the Reporter remembers of one task key.
type keyState struct {
	seen    int  // highest attempt an event was seen for
	started int  // highest attempt a non-queued event was seen for
	final   int  // highest attempt a final status was set for
	planRed bool // a plan task's last final status was not success
}

// recent is an LRU map of task keys to their state.
type recent struct {
	max   int
	order *list.List // of *entry, most recent first
	byKey map[string]*list.Element
}

type entry struct {
	key string
	st  keyState
}

func newRecent(max int) *recent {
	return &recent{max: max, order: list.New(), byKey: make(map[string]*list.Element)}
}

func (c *recent) get(key string) keyState {
	if e, ok := c.byKey[key]; ok {
		return e.Value.(*entry).st
	}
	return keyState{}
}

func (c *recent) put(key string, st keyState) {
	if e, ok := c.byKey[key]; ok {
		e.Value.(*entry).st = st
		c.order.MoveToFront(e)
		return
	}
	c.byKey[key] = c.order.PushFront(&entry{key: key, st: st})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*entry).key)
	}
}
