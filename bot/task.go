package bot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
)

// errLeaseLost is the cause of an attempt stopped because its lease was
// taken over: the new holder reports the task, this bot nothing.
var errLeaseLost = errors.New("lease lost: another bot owns the task now")

// errCancelled is the cause of an attempt stopped because the queue
// cancelled its task (a newer push superseded the commit): the canceller
// already reported it, this bot reports nothing.
var errCancelled = errors.New("task cancelled")

// reportTimeout bounds storing results and emitting events after a run.
const reportTimeout = 2 * time.Minute

// Reasons, for people, of failures to keep an attempt's files.
const (
	reasonStore = "the bot could not write to the log store"
	reasonLog   = "the bot could not write the task's log"
)

// Labels of turtles_bot_tasks_total for attempts this bot stopped without
// an outcome, besides the outcome classes: the task goes on elsewhere.
const (
	// labelLost: the lease ran out and the queue gave the task to
	// another bot (queue.ErrLeaseLost).
	labelLost = "lost"
	// labelReleased: the bot drained and handed the task back.
	labelReleased = "released"
)

// handle runs one delivery to its end: an acked outcome, a Nack for an
// infra failure, a Release when draining, or nothing when the lease was
// lost. The workspace is removed whatever happens.
//
// An error that stops the attempt becomes its outcome by its Fault
// (turtles.OutcomeOf): the reason goes to the status, result.json and the
// task's log, the error itself only to the bot's log.
func (b *Bot) handle(drain context.Context, d queue.Delivery) {
	t := d.Task()
	log := b.log.With("task", t.Key(), "attempt", t.Attempt, "delivery", d.Count())
	started := time.Now()
	b.m.busy.Inc()
	defer b.m.busy.Dec()
	b.running.add(t.ID())
	defer b.running.remove(t.ID())
	label := string(turtles.Infra) // what turtles_bot_tasks_total counts
	defer func() {
		b.m.tasks.WithLabelValues(b.cfg.Pool, label).Inc()
		b.m.duration.WithLabelValues(b.cfg.Pool).Observe(time.Since(started).Seconds())
	}()
	log.Info("task claimed")

	// Reporting outlives drain: a finished attempt is still reported while
	// the bot shuts down.
	report := context.WithoutCancel(drain)
	runCtx, cancel := context.WithCancelCause(drain)
	defer cancel(nil)
	stopHeartbeat := b.heartbeat(d, cancel, log)
	defer stopHeartbeat()

	// Before anything is written: an attempt never reuses a prefix.
	d, err := b.claimPrefix(report, d)
	if err != nil {
		log.Error("claim a store prefix", "err", err)
		b.retry(report, d, turtles.OutcomeOf(err), log)
		return
	}
	if queued := t.Attempt; d.Task().Attempt != queued {
		t = d.Task()
		log = b.log.With("task", t.Key(), "attempt", t.Attempt, "delivery", d.Count())
		log.Info("earlier attempts' prefixes are taken; running as a later attempt", "queued_attempt", queued)
	}

	prefix := store.AttemptPrefix(t)
	ws, out, err := b.prepare(prefix, log)
	if err != nil {
		log.Error("no workspace or live log", "err", err)
		b.retry(report, d, turtles.OutcomeOf(err), log)
		return
	}
	defer func() {
		if err := removeAll(ws.dir); err != nil {
			log.Error("remove workspace", "path", ws.dir, "err", err)
		}
	}()
	closeLog := func() error {
		ctx, c := context.WithTimeout(report, reportTimeout)
		defer c()
		return out.Close(ctx)
	}

	logURL := ""
	if b.cfg.LogURL != nil {
		logURL = b.cfg.LogURL(t)
	}
	res := turtles.Result{Task: t, Bot: b.cfg.Name, Started: started, LogURL: logURL}
	if err := b.emit(report, turtles.EventStarted, t, logURL, nil); err != nil {
		log.Warn("emit started event", "err", err) // the outcome will follow
	}
	logf(out, "bot %s: %s attempt %d (delivery %d) of %s", b.cfg.Name, t.Kind, t.Attempt, d.Count(), t.Key())

	// A plan's tasks go with its ack, in one step (see finish.go).
	var spawns *planned
	if t.Kind == turtles.KindPlan {
		spawns = &planned{}
	}
	outcome, err := b.attempt(runCtx, t, ws, out, spawns)

	if runCtx.Err() != nil && err != nil {
		// Stopped from outside. Keep the log for people; the task's outcome
		// comes from whoever runs it next.
		cause := context.Cause(runCtx)
		logf(out, "attempt stopped: %v", cause)
		if err := closeLog(); err != nil {
			log.Warn("store log", "err", err)
		}
		label = b.stopped(report, d, cause, log)
		return
	}
	if err == nil {
		ctx, c := context.WithTimeout(report, reportTimeout)
		err = b.uploadArtifacts(ctx, prefix, ws.artifacts, out.Scrubber(), out)
		c()
	}
	if err == nil {
		ctx, c := context.WithTimeout(report, holdTimeout)
		b.uploadHeld(ctx, t, prefix, logURL, ws, out, log)
		c()
	}
	if err != nil {
		outcome = b.failed(err, out, log)
	}
	b.addResults(report, prefix, ws.artifacts, out, &res)
	b.judge(report, t, ws, out, &res, &outcome, log)
	label = string(outcome.Class)

	// The reason may quote the command's output (a TAP bail out, an
	// artifact's name): it goes to result.json and to the forge.
	outcome.Reason = truncate(out.Scrubber().String(outcome.Reason))
	res.Outcome = outcome
	res.Finished = time.Now()
	res.Duration = res.Finished.Sub(res.Started).Seconds()
	logf(out, "outcome: %s%s", outcome.Class, reasonSuffix(outcome.Reason))
	// Result and log first, then the event with the ack (one step): a
	// crash in between delivers the task again rather than losing it.
	if err := b.putResult(report, prefix, res); err != nil {
		log.Error("store result", "err", err)
		outcome = turtles.OutcomeOf(err)
		label = string(outcome.Class)
	}
	if err := closeLog(); err != nil {
		log.Error("store log", "err", err)
		outcome = turtles.OutcomeOf(turtles.InfraFault(reasonStore, err))
		label = string(outcome.Class)
	}
	if c := context.Cause(runCtx); c == errLeaseLost || c == errCancelled {
		log.Warn("lease lost while reporting; not reporting", "cause", c)
		label = labelOf(c)
		return
	}
	if outcome.Class == turtles.Infra || b.retriesFailure(t, d.Count(), outcome) {
		b.retry(report, d, outcome, log)
		return
	}
	if err := b.finish(report, d, logURL, &outcome, spawns); err != nil {
		log.Error("ack with the finished event", "err", err) // the task will run again: at least once
		return
	}
	log.Info("task done", "class", outcome.Class, "reason", outcome.Reason, "seconds", res.Duration)
}

// prepare makes an attempt's workspace and its live log, stored under
// prefix. Either failing is infra; nothing is left behind then.
func (b *Bot) prepare(prefix string, log *slog.Logger) (workspace, *liveLog, error) {
	ws, err := newWorkspace(b.cfg.WorkDir)
	if err != nil {
		return workspace{}, nil, err
	}
	out, err := newLiveLog(b.cfg.Store, prefix+store.LogName, filepath.Join(ws.dir, "log"), log)
	if err != nil {
		if err := removeAll(ws.dir); err != nil {
			log.Error("remove workspace", "path", ws.dir, "err", err)
		}
		return workspace{}, nil, turtles.InfraFault(reasonStore, fmt.Errorf("live log: %w", err))
	}
	return ws, out, nil
}

// failed is the outcome of an attempt that err stopped before it had one:
// err's class and reason (turtles.OutcomeOf). The error, which may name
// the bot's paths and hosts, goes to the bot's log only; the task's log
// says where to find it.
func (b *Bot) failed(err error, out io.Writer, log *slog.Logger) turtles.Outcome {
	o := turtles.OutcomeOf(err)
	log.Warn("attempt failed", "class", o.Class, "reason", o.Reason, "err", err)
	if o.Class == turtles.Infra {
		logf(out, "not a test failure: turtles could not complete this attempt (the cause is in the log of bot %s)", b.cfg.Name)
	}
	return o
}

// stopped ends a delivery whose attempt was stopped from outside, by
// cause: a lost lease or a cancel leave it to whoever owns the task now; a
// drain releases it for another bot. It returns the metrics label.
func (b *Bot) stopped(report context.Context, d queue.Delivery, cause error, log *slog.Logger) (label string) {
	switch {
	case errors.Is(cause, errLeaseLost):
		log.Warn("lease lost; not reporting")
	case errors.Is(cause, errCancelled):
		log.Info("task cancelled; not reporting")
	default:
		ctx, c := context.WithTimeout(report, reportTimeout)
		defer c()
		if err := d.Release(ctx); err != nil {
			log.Error("release task", "err", err) // it comes back when the lease ends
		} else {
			log.Info("task released for another bot")
		}
	}
	return labelOf(cause)
}

// labelOf is the metrics label of an attempt stopped from outside by
// cause.
func labelOf(cause error) string {
	switch {
	case errors.Is(cause, errLeaseLost):
		return labelLost
	case errors.Is(cause, errCancelled):
		return string(turtles.Cancelled)
	}
	return labelReleased
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// retry gives an infra failure, or a test failure to run again
// (retriesFailure), back to the queue with the delay for its delivery
// count, and tells the reporter whether it will be retried.
func (b *Bot) retry(ctx context.Context, d queue.Delivery, outcome turtles.Outcome, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	delays := b.cfg.RetryDelays
	delay := delays[min(max(d.Count(), 1), len(delays))-1]
	dead, err := d.Nack(ctx, delay, outcome.Reason)
	if err != nil {
		log.Error("nack", "err", err) // it comes back when the lease ends
		return
	}
	logURL := ""
	if b.cfg.LogURL != nil {
		logURL = b.cfg.LogURL(d.Task())
	}
	if dead {
		// The queue emitted the final event with the dead letter, in one
		// step, so that it cannot be lost between the two.
		log.Warn("task dead-lettered after repeated infra failures", "reason", outcome.Reason)
		if r, ok := d.(renumbered); ok {
			b.deadRenumbered(ctx, r, outcome, logURL, log)
		}
		return
	}
	log.Info("task will be retried", "delay", delay)
	if err := b.emit(ctx, turtles.EventRetrying, d.Task(), logURL, &outcome); err != nil {
		log.Error("emit retrying event", "err", err)
	}
}

// deadRenumbered reports the end of a dead-lettered attempt that runs as
// a later attempt than the queue counted (claimPrefix). The queue's final
// event names its own count; the reporter has seen this attempt start and
// drops that event as older, so without this one the status would stay
// pending. Unlike the queue's, it is not written in one step with the dead
// letter: a bot that dies in between leaves the status pending.
func (b *Bot) deadRenumbered(ctx context.Context, r renumbered, outcome turtles.Outcome, logURL string, log *slog.Logger) {
	outcome.Class = turtles.Infra
	outcome.Reason = fmt.Sprintf("gave up after %d deliveries: %s", r.Count(), outcome.Reason)
	if err := b.emit(ctx, turtles.EventFinished, r.Task(), logURL, &outcome); err != nil {
		log.Error("emit final event of a renumbered dead-lettered attempt", "err", err)
	}
}

// heartbeat extends d's lease every Heartbeat until the returned stop is
// called. When the lease is lost it cancels the attempt with errLeaseLost.
func (b *Bot) heartbeat(d queue.Delivery, lost context.CancelCauseFunc, log *slog.Logger) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := b.cfg.Clock.NewTicker(b.cfg.Heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.Chan():
			}
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Heartbeat)
			err := d.Heartbeat(ctx)
			cancel()
			if errors.Is(err, queue.ErrLeaseLost) {
				log.Warn("heartbeat: lease lost")
				lost(errLeaseLost)
				return
			}
			if errors.Is(err, queue.ErrCancelled) {
				log.Info("heartbeat: task cancelled", "err", err)
				lost(errCancelled)
				return
			}
			if err != nil {
				log.Warn("heartbeat failed", "err", err) // try again next tick
				continue
			}
			// The recorder keeps the last one, to say when a bot that
			// died was last heard of. d.Task(): the attempt as renumbered.
			ctx, cancel = context.WithTimeout(context.Background(), b.cfg.Heartbeat)
			if err := b.cfg.Events.Emit(ctx, b.event(turtles.EventHeartbeat, d.Task(), "", nil)); err != nil {
				log.Warn("emit heartbeat event", "err", err)
			}
			cancel()
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// attempt checks the task's commit out and runs it.
func (b *Bot) attempt(ctx context.Context, t turtles.Task, ws workspace, out io.Writer, spawns *planned) (turtles.Outcome, error) {
	if err := b.run.checkout(ctx, t, ws, out); err != nil {
		return turtles.Outcome{}, err
	}
	if t.Kind == turtles.KindPlan {
		return b.plan(ctx, t, ws, out, spawns)
	}
	return b.run.test(ctx, t, ws, out)
}

// plan queues a test task for every context of the checkout's
// .turtles.yaml, and reports the contexts it skips: into spawns, which
// go with the plan's ack.
func (b *Bot) plan(ctx context.Context, t turtles.Task, ws workspace, out io.Writer, spawns *planned) (turtles.Outcome, error) {
	cfg, bad, err := readConfig(ws.src)
	if err != nil {
		return turtles.Outcome{}, err
	}
	if _, serr := os.Lstat(filepath.Join(ws.src, config.FileName)); bad != nil && errors.Is(serr, fs.ErrNotExist) && b.cfg.Default != nil {
		logf(out, "no %s in this commit: using the server's default configuration", config.FileName)
		cfg, bad = b.cfg.Default, nil
	}
	if bad != nil {
		logf(out, "%s", bad.Reason)
		return *bad, nil
	}
	if reason := b.cfg.Policy.CheckContexts(len(cfg.Contexts)); reason != "" {
		return failure(out, reason), nil
	}
	queued := 0
	ev := b.planEvent(ctx, t, ws, out)
	for _, x := range cfg.Contexts {
		if !x.SkippedByPaths(ev) {
			continue
		}
		// A status says so, or a scan would take it for lost work.
		tt := cfg.TaskOf(x, t)
		o := &turtles.Outcome{Class: turtles.Success, Reason: skipReason(x)}
		spawns.events = append(spawns.events, b.event(turtles.EventFinished, tt, "", o))
		logf(out, "%s skipped: %s", tt.Context, o.Reason)
	}
	for _, x := range cfg.Select(ev) {
		tt, refused := b.cfg.Policy.Restrict(cfg.TaskOf(x, t))
		if refused != "" {
			// A status says why, so the author is not left waiting.
			o := &turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: truncate("Not run: " + refused)}
			spawns.events = append(spawns.events, b.event(turtles.EventFinished, tt, "", o))
			logf(out, "%s not run: %s", tt.Context, refused)
			continue
		}
		tt.Created = time.Now()
		if err := tt.Validate(); err != nil {
			return turtles.Outcome{}, turtles.InfraFault("the plan could not queue context "+tt.Context, fmt.Errorf("queue %s: %w", tt.Key(), err))
		}
		spawns.tasks = append(spawns.tasks, queue.Spawn{Task: tt, Queued: b.event(turtles.EventQueued, tt, "", nil)})
		logf(out, "queuing %s in pool %s: %s", tt.Context, tt.Pool, tt.Command)
		queued++
	}
	return turtles.Outcome{Class: turtles.Success, Reason: fmt.Sprintf("queued %d of %d contexts", queued, len(cfg.Contexts))}, nil
}

// planEvent says what happened to t's commit, for choosing contexts: a
// pull request's base branch, a push's branch, and the changed paths
// when the task names a commit to compare with. Changed paths that cannot
// be found leave path filters off: more runs, never a missed one.
func (b *Bot) planEvent(ctx context.Context, t turtles.Task, ws workspace, out io.Writer) config.Event {
	ev := config.Event{PullRequest: t.PR != 0, Branch: t.Base}
	if branch, ok := strings.CutPrefix(t.Ref, "refs/heads/"); ok && t.PR == 0 {
		ev.Branch = branch
	}
	if t.BaseSHA == "" {
		return ev
	}
	remote, err := b.run.remote(t)
	if err != nil {
		logf(out, "cannot tell which paths changed since %s, so path filters do not apply: %v", t.BaseSHA, err)
		return ev
	}
	changed, err := remote.ChangedPaths(ctx, ws.src, t.BaseSHA, t.SHA, out)
	if err != nil {
		logf(out, "cannot tell which paths changed since %s, so path filters do not apply: %v", t.BaseSHA, err)
		return ev
	}
	logf(out, "%d paths changed since %s", len(changed), t.BaseSHA)
	ev.Changed = changed
	return ev
}

func skipReason(x config.Context) string {
	if len(x.RunIfChanged) > 0 {
		return "Skipped: no changes in run_if_changed paths"
	}
	return "Skipped: only skip_if_only_changed paths changed"
}

func (b *Bot) emit(ctx context.Context, typ turtles.EventType, t turtles.Task, logURL string, o *turtles.Outcome) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	return b.cfg.Events.Emit(ctx, b.event(typ, t, logURL, o))
}

// event is an event of this bot about t, with a fresh ID.
func (b *Bot) event(typ turtles.EventType, t turtles.Task, logURL string, o *turtles.Outcome) turtles.Event {
	var id [16]byte
	rand.Read(id[:])
	return turtles.Event{
		ID:      hex.EncodeToString(id[:]),
		Type:    typ,
		Task:    t,
		Bot:     b.cfg.Name,
		LogURL:  logURL,
		Outcome: o,
		Time:    time.Now(),
	}
}

func (b *Bot) putResult(ctx context.Context, prefix string, res turtles.Result) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := b.cfg.Store.Put(ctx, prefix+store.ResultName, bytes.NewReader(data), "application/json"); err != nil {
		return turtles.InfraFault(reasonStore, fmt.Errorf("store result: %w", err))
	}
	return nil
}
