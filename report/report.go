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
	"github.com/turtles-ci/turtles/state"
)

// Handler consumes task events.
type Handler interface {
	// Handle acts on ev. It is called once per event in emit order per
	// task, and again after a failure or a restart (delivery is at least
	// once), so it must be idempotent. An error wrapping forge.ErrPermanent
	// drops the event; any other error makes Consume try again later.
	Handle(ctx context.Context, ev turtles.Event) error
}

// Finals is the part of the state database (state.DB) where a Reporter
// keeps the final event of each attempt and whether it was posted: the
// memory that makes "one final status per attempt" hold across restarts
// and across reporters sharing the database.
type Finals interface {
	RecordFinal(ctx context.Context, ev turtles.Event) (winner state.Final, first bool, err error)
	LastFinal(ctx context.Context, key string) (state.Final, error)
	ClaimPost(ctx context.Context, key string, attempt int, holder string, lease time.Duration) (ok bool, prev string, err error)
	MarkPosted(ctx context.Context, key string, attempt int) error
	Unposted(ctx context.Context, limit int) ([]state.Final, error)
}

// DefaultRemember is how many task keys a Reporter remembers by default.
const DefaultRemember = 10000

// Config configures a Reporter. Forge, Finals, Holder and Claim are
// required.
type Config struct {
	Forge  forge.Forge
	Finals Finals
	// Holder names this reporter among those sharing Finals, uniquely
	// (host and process): the holder of its claims to post.
	Holder string
	// Claim is how long a claim to post one final lasts (Finals.ClaimPost):
	// a reporter that dies holds its finals that long, and one posting
	// call may take at most half of it.
	Claim time.Duration
	// Statuses, when set, reads the statuses a commit has on the forge.
	// A reporter that takes over a final whose poster died looks there
	// first, and does not post it again if the forge has it. Without
	// it, such a final is posted a second time (forges take it as a
	// no-op update).
	Statuses forge.StatusReader
	// Log receives one record per dropped or failed status; nil discards.
	Log *slog.Logger
	// Registerer gets turtles_statuses_total{state} and
	// turtles_forge_errors_total{kind}; nil means no metrics.
	Registerer prometheus.Registerer
	// Remember bounds the task keys kept in memory to order non-final
	// statuses (see Reporter). Default DefaultRemember.
	Remember int
}

// Reporter is a Handler that sets one commit status per task, with the
// task's context as the status context.
//
// Final statuses (success, failure, error) are exact, through Finals: the
// first final event recorded for an attempt wins, whichever reporter
// handles it and however often it comes, and the winner is posted once,
// only while its attempt is the task key's latest; a final of an older
// attempt never replaces a newer attempt's. A reporter that takes over
// posts what the one before recorded and did not post (PostUnposted).
// Of several live reporters, the one that claims a final (ClaimPost)
// posts it; the others leave it, and post it only when the claim lapsed
// unposted (PostUnposted, which a reporter runs at start and then
// periodically). One that takes over from a poster that died first
// reads the forge's statuses (Config.Statuses), so that a final the dead
// one posted just before it died is not posted again.
//
// Non-final statuses (queued, running, retrying) are best effort: never
// posted over a final of the same or a newer attempt (asked of Finals),
// and ordered among themselves by a bounded memory in process (least
// recently used keys are forgotten first), so that a late "started" of an
// older attempt or a "queued" after "started" is dropped while the key is
// remembered.
type Reporter struct {
	forge    forge.Forge
	finals   Finals
	holder   string
	claim    time.Duration
	statuses forge.StatusReader
	log      *slog.Logger

	posted *prometheus.CounterVec
	errors *prometheus.CounterVec

	mu     sync.Mutex
	recent *recent

	// posting serializes post: a claim is this reporter's, not one
	// caller's, so the event consumer and the sweep (PostUnposted) must
	// not both hold it at once.
	posting sync.Mutex
	// unmarked holds the finals this reporter posted and then failed to
	// mark posted (the state database was down): a retry marks them and
	// does not post them again. Guarded by posting.
	unmarked map[finalID]bool
}

// finalID names the final of one attempt of a task key.
type finalID struct {
	key     string
	attempt int
}

var _ Handler = (*Reporter)(nil)

// New returns a Reporter for cfg. It panics if cfg.Forge or cfg.Finals is
// nil or the metrics clash with others of the same name, as
// prometheus.MustRegister does: all are wiring mistakes, not run-time
// conditions.
func New(cfg Config) *Reporter {
	if cfg.Forge == nil {
		panic("report: New without a Forge")
	}
	if cfg.Finals == nil {
		panic("report: New without Finals")
	}
	if cfg.Holder == "" || cfg.Claim <= 0 {
		panic(fmt.Sprintf("report: New with holder %q and claim %s: want both", cfg.Holder, cfg.Claim))
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
		forge:    cfg.Forge,
		finals:   cfg.Finals,
		holder:   cfg.Holder,
		claim:    cfg.Claim,
		statuses: cfg.Statuses,
		log:      log,
		recent:   newRecent(n),
		posted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_statuses_total",
			Help: "Commit statuses set on the forge, by state.",
		}, []string{"state"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turtles_forge_errors_total",
			Help: "Failed attempts to set a commit status, by kind: permanent, rate_limit, retryable.",
		}, []string{"kind"}),
	}
	if cfg.Registerer != nil {
		r.posted = mustRegister(cfg.Registerer, r.posted)
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
	if ev.Type == turtles.EventFinished && ev.Outcome != nil {
		return r.final(ctx, ev)
	}
	t := ev.Task
	key, attempt := t.Key(), t.Attempt
	r.mu.Lock()
	st := r.recent.get(key)
	if attempt > st.seen {
		st.seen = attempt
	}
	// "queued" comes from the planner, "started" from a bot: a late
	// "queued" must not show Queued over Running.
	stale := attempt < st.seen || ev.Type == turtles.EventQueued && attempt <= st.started
	if ev.Type != turtles.EventQueued && attempt > st.started {
		st.started = attempt
	}
	r.recent.put(key, st)
	r.mu.Unlock()
	if stale {
		r.log.Debug("status dropped: a later status was already set",
			"task", key, "attempt", attempt, "event", ev.Type, "event_id", ev.ID)
		return nil
	}
	status, ok := statusFor(ev, false)
	if !ok {
		return nil
	}
	last, err := r.finals.LastFinal(ctx, key)
	switch {
	case errors.Is(err, state.ErrNotFound):
	case err != nil:
		return fmt.Errorf("report %s of %s attempt %d: %w", ev.Type, key, attempt, err)
	case last.Attempt >= attempt:
		r.log.Debug("status dropped: a final status of this or a later attempt was recorded",
			"task", key, "attempt", attempt, "event", ev.Type, "event_id", ev.ID, "final_attempt", last.Attempt)
		return nil
	}
	return r.set(ctx, ev, status)
}

// final records ev, a final event, and posts the winner of its attempt
// unless that was posted or a later attempt has a final.
func (r *Reporter) final(ctx context.Context, ev turtles.Event) error {
	key, attempt := ev.Task.Key(), ev.Task.Attempt
	prev, err := r.finals.LastFinal(ctx, key)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("report final of %s attempt %d: %w", key, attempt, err)
	}
	had := err == nil
	w, first, err := r.finals.RecordFinal(ctx, ev)
	if err != nil {
		return fmt.Errorf("record final of %s attempt %d: %w", key, attempt, err)
	}
	if !w.Posted.IsZero() {
		r.log.Debug("final status dropped: posted before", "task", key, "attempt", attempt, "event_id", ev.ID)
		return nil
	}
	if !first && w.Event.ID != ev.ID {
		r.log.Debug("another final event of this attempt won; posting that one", "task", key, "attempt", attempt,
			"event_id", ev.ID, "winner", w.Event.ID)
	}
	// A plan speaks up on success only to clear the red status of an
	// earlier attempt. When the final before is unknown (this attempt's
	// own was recorded before: a retry after a failure to post), a
	// needless green status is better than a red one left standing.
	red := false
	if ev.Task.Context == turtles.PlanContext && had {
		if prev.Attempt < attempt {
			red = prev.Event.Outcome == nil || prev.Event.Outcome.Class != turtles.Success
		} else {
			red = attempt > 1
		}
	}
	return r.post(ctx, w, red)
}

// post posts w, the winning final of its attempt, if that attempt is still
// the latest of its key, and marks it posted: also when a later attempt
// superseded it, or the forge refused it for good.
func (r *Reporter) post(ctx context.Context, w state.Final, planRed bool) error {
	r.posting.Lock()
	defer r.posting.Unlock()
	ok, prev, err := r.finals.ClaimPost(ctx, w.Key, w.Attempt, r.holder, r.claim)
	if err != nil {
		return fmt.Errorf("claim the final of %s attempt %d: %w", w.Key, w.Attempt, err)
	}
	if !ok {
		r.log.Debug("final status left: posted, or claimed by another reporter", "task", w.Key, "attempt", w.Attempt)
		return nil
	}
	last, err := r.finals.LastFinal(ctx, w.Key)
	if err != nil {
		return fmt.Errorf("report final of %s attempt %d: %w", w.Key, w.Attempt, err)
	}
	status, post := statusFor(w.Event, planRed)
	switch {
	case last.Attempt > w.Attempt:
		r.log.Debug("final status dropped: a later attempt's final was recorded", "task", w.Key, "attempt", w.Attempt,
			"final_attempt", last.Attempt)
	case r.unmarked[finalID{w.Key, w.Attempt}]:
		r.log.Debug("final status posted before the state database failed; marking it", "task", w.Key, "attempt", w.Attempt)
	case post && prev != "" && r.onForge(ctx, w, status):
		r.log.Info("final status found on the forge, posted by a reporter that died", "task", w.Key, "attempt", w.Attempt,
			"poster", prev)
	case post:
		// The call must end while the claim holds.
		sctx, cancel := context.WithTimeout(ctx, r.claim/2)
		err := r.set(sctx, w.Event, status)
		cancel()
		if err != nil {
			if !errors.Is(err, forge.ErrPermanent) {
				return err
			}
			if merr := r.finals.MarkPosted(ctx, w.Key, w.Attempt); merr != nil {
				return fmt.Errorf("%w; and mark it given up: %w", err, merr)
			}
			return err
		}
	}
	id := finalID{w.Key, w.Attempt}
	if err := r.finals.MarkPosted(ctx, w.Key, w.Attempt); err != nil {
		if r.unmarked == nil {
			r.unmarked = make(map[finalID]bool)
		}
		r.unmarked[id] = true
		return fmt.Errorf("mark the final of %s attempt %d posted: %w", w.Key, w.Attempt, err)
	}
	delete(r.unmarked, id)
	return nil
}

// onForge reports whether the forge shows status as the newest of its
// context on w's commit. An error reading is logged and counts as no:
// posting again is the lesser harm.
func (r *Reporter) onForge(ctx context.Context, w state.Final, status forge.Status) bool {
	if r.statuses == nil {
		return false
	}
	t := w.Event.Task
	got, err := r.statuses.Statuses(ctx, t.Repo.Name, t.SHA)
	if err != nil {
		r.log.Warn("read the forge's statuses before posting a final again", "task", w.Key, "attempt", w.Attempt, "err", err)
		return false
	}
	want := status
	want.Description = forge.Truncate(want.Description, forge.MaxDescription)
	for _, st := range got {
		if st.Context == want.Context {
			return st.State == want.State && st.Description == want.Description && st.TargetURL == want.TargetURL
		}
	}
	return false
}

// set posts status for ev.
func (r *Reporter) set(ctx context.Context, ev turtles.Event, status forge.Status) error {
	t := ev.Task
	status.Description = forge.Truncate(status.Description, forge.MaxDescription)
	if err := r.forge.SetStatus(ctx, t.Repo.Name, t.SHA, status); err != nil {
		r.errors.WithLabelValues(errorKind(err)).Inc()
		return fmt.Errorf("report %s %s of %s attempt %d: %w", status.State, ev.Type, t.Key(), t.Attempt, err)
	}
	r.posted.WithLabelValues(string(status.State)).Inc()
	return nil
}

// unpostedBatch is how many unposted finals PostUnposted asks for at once.
const unpostedBatch = 100

// PostUnposted posts the finals recorded and not posted, oldest first:
// what a reporter that died left, and what a forge outage held back. A
// reporter that takes over calls it at start. A final the forge refuses
// for good is logged and marked; any other error stops it (the events
// behind those finals come again and are posted then).
func (r *Reporter) PostUnposted(ctx context.Context) (posted int, err error) {
	for {
		finals, err := r.finals.Unposted(ctx, unpostedBatch)
		if err != nil {
			return posted, fmt.Errorf("list unposted finals: %w", err)
		}
		for _, f := range finals {
			err := r.post(ctx, f, r.planRed(ctx, f))
			switch {
			case errors.Is(err, forge.ErrPermanent):
				r.log.Error("final status given up after a permanent error", "task", f.Key, "attempt", f.Attempt, "err", err)
			case err != nil:
				return posted, err
			default:
				posted++
			}
		}
		if len(finals) < unpostedBatch {
			return posted, nil
		}
	}
}

// planRed says, for a sweep, whether f is a plan's final after an
// attempt that may have left a red status, which a success must clear.
// The forge knows (Config.Statuses); without it, any attempt after the
// first may have. A needless green status is better than a red one left
// standing, but it is a status people did not need: the sweep runs while
// the event consumer handles the same final, which knew better.
func (r *Reporter) planRed(ctx context.Context, f state.Final) bool {
	if f.Event.Task.Context != turtles.PlanContext || f.Attempt <= 1 {
		return false
	}
	if r.statuses == nil {
		return true
	}
	t := f.Event.Task
	sts, err := r.statuses.Statuses(ctx, t.Repo.Name, t.SHA)
	if err != nil {
		r.log.Warn("read the forge's statuses for a plan's final; posting it in case a red one stands", "task", f.Key, "err", err)
		return true
	}
	for _, st := range sts {
		if st.Context == turtles.PlanContext {
			return st.State == forge.Failure || st.State == forge.Error
		}
	}
	return false
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
		if ev.Outcome != nil && ev.Outcome.Class == turtles.Failure {
			// retries: of the context, to tell a flake from a regression.
			st.Description = fmt.Sprintf("Tests failed, running them again (attempt %d of %d)", ev.Task.Attempt+1, ev.Task.Retries+1)
		}
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
	seen    int // highest attempt an event was seen for
	started int // highest attempt a non-queued event was seen for
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
