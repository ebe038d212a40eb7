package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/session"
	"github.com/turtles-ci/turtles/state"
)

// Actions: POST /actions/{kind} with the form fields task (the task's
// ID) and csrf. Before anything changes, in this order: a valid session
// (403), a request from this server's pages (Origin or Referer, and the
// CSRF token of the session: 403), a known task (404), and write access
// to its repository, which the forge is asked at this moment (403).
// Then the action runs, and is recorded with its result, also when it
// was refused because the task had ended (409).

// Kinds of actions.
const (
	Rerun   = "rerun"
	Cancel  = "cancel"
	Approve = "approve"
	Requeue = "requeue"
)

// maxForm bounds an action's form.
const maxForm = 16 << 10

// taskIDRe is turtles.Task.ID's form.
var taskIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)

// outcome is what came of an action: an HTTP status, and the result for
// people, which is recorded.
type outcome struct {
	code   int
	result string
}

func done(format string, args ...any) outcome {
	return outcome{code: http.StatusSeeOther, result: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) outcome {
	return outcome{code: http.StatusConflict, result: "refused: " + fmt.Sprintf(format, args...)}
}

// target is what an action acts on: the task's record, or for a dead
// letter or a commit waiting for approval, what the form and the queue
// say of it.
type target struct {
	id   string
	task state.Task
	// known: the history has the task.
	known bool
	repo  string
}

func (a *Auth) act(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	switch kind {
	case Rerun, Cancel, Approve, Requeue:
	default:
		a.page(w, http.StatusNotFound, fmt.Sprintf("There is no action %q: rerun, cancel, approve or requeue.", kind), "/")
		return
	}
	s, ok := a.session(r)
	if !ok {
		a.page(w, http.StatusForbidden, "Sign in to act: your session is missing or has expired.", "/login")
		return
	}
	if !a.sameOrigin(r) {
		a.log.Warn("action from another origin refused", "user", s.User(), "kind", kind,
			"origin", r.Header.Get("Origin"), "referer", r.Header.Get("Referer"))
		a.page(w, http.StatusForbidden, "This action did not come from a page of this server.", "/")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		a.page(w, http.StatusBadRequest, "The form could not be read.", "/")
		return
	}
	if !a.cfg.Keys.CheckCSRF(s, r.PostForm.Get("csrf")) {
		a.log.Warn("action with a wrong CSRF token refused", "user", s.User(), "kind", kind)
		a.page(w, http.StatusForbidden, "This action did not come from a page of this server (its form token is not yours). Reload the page and try again.", "/")
		return
	}
	id := r.PostForm.Get("task")
	if !taskIDRe.MatchString(id) {
		a.page(w, http.StatusBadRequest, "The form names no task.", "/")
		return
	}
	back := a.back(r, id)
	ctx := r.Context()
	tg, code, msg := a.target(ctx, kind, id, r.PostForm)
	if code != 0 {
		a.page(w, code, msg, back)
		return
	}
	p := a.providers[s.Forge]
	if p.Push == nil {
		a.page(w, http.StatusForbidden, "This server cannot ask "+p.Title+" who may act: it has no forge credentials.", back)
		return
	}
	can, err := p.Push.CanPush(ctx, tg.repo, s.Login)
	if err != nil {
		a.log.Warn("cannot ask the forge who may act", "user", s.User(), "repo", tg.repo, "err", err)
		a.page(w, http.StatusBadGateway, p.Title+" could not be asked whether you may act on "+tg.repo+". Try again.", back)
		return
	}
	if !can {
		a.log.Info("action refused: no write access", "user", s.User(), "kind", kind, "task", id, "repo", tg.repo)
		a.page(w, http.StatusForbidden, fmt.Sprintf("%s says @%s may not push to %s, and only those who may can %s its tasks.", p.Title, s.Login, tg.repo, kind), back)
		return
	}

	var out outcome
	switch kind {
	case Rerun:
		out = a.rerun(ctx, s, tg)
	case Cancel:
		out = a.cancel(ctx, s, tg)
	case Approve:
		out = a.approve(ctx, s, tg)
	case Requeue:
		out = a.requeue(ctx, s, tg)
	}
	act := state.Action{Task: id, Kind: kind, User: s.User(), At: a.cfg.Now(), Result: out.result}
	a.log.Info("action", "user", act.User, "kind", kind, "task", id, "repo", tg.repo, "result", out.result)
	if err := a.cfg.History.RecordAction(context.WithoutCancel(ctx), act); err != nil {
		a.log.Error("record an action", "user", act.User, "kind", kind, "task", id, "result", out.result, "err", err)
		if out.code == http.StatusSeeOther {
			a.page(w, http.StatusInternalServerError, "Done ("+out.result+"), but the record of it could not be kept; see the server log.", back)
			return
		}
	}
	if out.code == http.StatusSeeOther {
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	a.page(w, out.code, out.result, back)
}

// target looks up what kind acts on; a non-zero code refuses with msg.
func (a *Auth) target(ctx context.Context, kind, id string, form url.Values) (target, int, string) {
	tg := target{id: id}
	t, err := a.cfg.History.Get(ctx, id)
	switch {
	case err == nil:
		tg.task, tg.known, tg.repo = t, true, t.Repo
		return tg, 0, ""
	case !errors.Is(err, state.ErrNotFound):
		a.log.Error("look up a task for an action", "task", id, "err", err)
		return tg, http.StatusServiceUnavailable, "The history cannot be read now. Try again."
	}
	switch kind {
	case Approve:
		// A pull request waiting for approval has no task yet: the form
		// names its commit, which must be the one of the plan task ID.
		repo, sha := form.Get("repo"), form.Get("sha")
		pr, err := strconv.Atoi(form.Get("pr"))
		plan := turtles.Task{Repo: turtles.Repo{Name: repo}, SHA: sha, Context: turtles.PlanContext}
		if repo == "" || err != nil || pr < 1 || plan.ID() != id {
			return tg, http.StatusNotFound, "No such task, and the form names no commit of it to approve."
		}
		tg.task = state.Task{ID: id, Key: plan.Key(), Kind: turtles.KindPlan, Repo: repo, SHA: sha, PR: pr, Context: turtles.PlanContext}
		tg.repo = repo
		return tg, 0, ""
	case Requeue:
		// A dead letter's task may have left the history (pruned): the
		// queue keeps it.
		dl, ok, err := a.deadLetter(ctx, id)
		if err != nil {
			a.log.Error("list dead letters for an action", "task", id, "err", err)
			return tg, http.StatusServiceUnavailable, "The queue cannot be read now. Try again."
		}
		if !ok {
			return tg, http.StatusNotFound, "No such task, and no dead letter of it."
		}
		tg.repo = dl.Task.Repo.Name
		return tg, 0, ""
	}
	return tg, http.StatusNotFound, "No such task."
}

// lastAttempt is the highest attempt the history has of t.
func lastAttempt(t state.Task) int {
	n := 0
	for _, x := range t.Attempts {
		n = max(n, x.Number)
	}
	return n
}

// commit is the commit of t for the gate; its plan goes to t's pool when
// t is the plan, else to the plans' pool.
func (a *Auth) commit(t state.Task) gate.Commit {
	pool := a.cfg.Pool
	if t.Context == turtles.PlanContext && t.Pool != "" {
		pool = t.Pool
	}
	return gate.Commit{Repo: turtles.Repo{Name: t.Repo, CloneURL: a.cfg.CloneURL(t.Repo)}, SHA: t.SHA, PR: t.PR, Ref: t.Ref, Pool: pool}
}

// gateOutcome is the outcome of a gate's error.
func (a *Auth) gateOutcome(kind string, tg target, err error) outcome {
	var ref *gate.Refusal
	switch {
	case errors.As(err, &ref):
		return conflict("%s", ref.Reason)
	case errors.Is(err, queue.ErrDuplicate):
		return conflict("the task is queued or running already")
	}
	a.log.Warn("action failed", "kind", kind, "task", tg.id, "err", err)
	code := http.StatusBadGateway
	if errors.Is(err, queue.ErrUnavailable) {
		code = http.StatusServiceUnavailable
	}
	return outcome{code: code, result: "failed: " + failure(err)}
}

// failure says, for people, whose failure err is.
func failure(err error) string {
	var rl interface{ RetryAt() time.Time }
	switch {
	case errors.As(err, &rl):
		return "the forge's rate limit is used up until " + rl.RetryAt().UTC().Format("15:04 UTC") + "; try again then"
	case errors.Is(err, queue.ErrUnavailable):
		return "the queue is unavailable; try again"
	case errors.Is(err, forge.ErrPermanent):
		return "the forge refused a lookup; see the server log"
	}
	return "the forge or the queue did not answer; try again"
}

func (a *Auth) rerun(ctx context.Context, s session.Session, tg target) outcome {
	t := tg.task
	if t.State != state.Finished {
		return conflict("the task is %s: cancel it or let it end before running it again", t.State)
	}
	if a.cfg.Gate == nil {
		return outcome{code: http.StatusServiceUnavailable, result: "failed: this server has no forge credentials to read the commit's configuration"}
	}
	q, err := a.cfg.Gate.Rerun(ctx, a.commit(t), t.Context, lastAttempt(t)+1)
	if err != nil {
		return a.gateOutcome(Rerun, tg, err)
	}
	return done("queued as attempt %d", q.Attempt)
}

func (a *Auth) cancel(ctx context.Context, s session.Session, tg target) outcome {
	t := tg.task
	if t.State == state.Finished {
		how := "finished"
		if t.Outcome != nil {
			how += " (" + string(t.Outcome.Class) + ")"
		}
		return conflict("the task has already %s", how)
	}
	n, err := a.cfg.Queue.CancelTask(ctx, t.Key, "cancelled by "+s.User()+" from the dashboard")
	if err != nil {
		return a.gateOutcome(Cancel, tg, err)
	}
	if n == 0 {
		// Another process holds it (RabbitMQ cannot count those), or it
		// ended meanwhile: either way its final event says.
		return done("cancel sent")
	}
	return done("cancelled")
}

func (a *Auth) approve(ctx context.Context, s session.Session, tg target) outcome {
	if a.cfg.Gate == nil {
		return outcome{code: http.StatusServiceUnavailable, result: "failed: this server has no forge credentials to approve with"}
	}
	plan, err := a.cfg.Gate.Approve(ctx, a.commit(tg.task), s.Login)
	if err != nil {
		return a.gateOutcome(Approve, tg, err)
	}
	return done("approved commit %s; its plan is queued", forge.ShortSHA(plan.SHA))
}

// deadLetter returns the newest dead letter of task id.
func (a *Auth) deadLetter(ctx context.Context, id string) (queue.DeadLetter, bool, error) {
	dls, err := a.cfg.Queue.DeadLetters(ctx)
	if err != nil {
		return queue.DeadLetter{}, false, err
	}
	for _, dl := range dls { // newest first
		if dl.Task.Repo.Name != "" && dl.Task.ID() == id {
			return dl, true, nil
		}
	}
	return queue.DeadLetter{}, false, nil
}

func (a *Auth) requeue(ctx context.Context, s session.Session, tg target) outcome {
	if tg.known && tg.task.State != state.Finished {
		return conflict("the task is %s already", tg.task.State)
	}
	dl, ok, err := a.deadLetter(ctx, tg.id)
	if err != nil {
		return a.gateOutcome(Requeue, tg, err)
	}
	if !ok {
		return conflict("the task has no dead letter to requeue")
	}
	// A requeue removes the letter once its task is queued again; should
	// that removal fail, the record of a requeue after the letter died
	// says it was requeued. (The queue's clock
	// stamps the letter; machines' clocks agree well within the time a
	// person takes to click.)
	acts, err := a.cfg.History.Actions(ctx, tg.id)
	if err != nil {
		return a.gateOutcome(Requeue, tg, err)
	}
	for _, x := range acts {
		if x.Kind == Requeue && x.At.After(dl.Time) && strings.HasPrefix(x.Result, "queued") {
			return conflict("%s requeued this dead letter already, at %s", x.User, x.At.UTC().Format("2006-01-02 15:04 UTC"))
		}
	}
	t := dl.Task
	t.Attempt = max(lastAttempt(tg.task), t.Attempt) + 1
	t.Created = a.cfg.Now().UTC()
	t.Token = ""
	if err := a.cfg.Queue.Publish(ctx, t); err != nil {
		return a.gateOutcome(Requeue, tg, err)
	}
	// Dealt with: off the Now page and out of the dead-letter alert.
	if _, err := a.cfg.Queue.RemoveDead(ctx, dl); err != nil {
		a.log.Warn("remove the dead letter of a requeued task; it stays listed", "task", tg.id, "err", err)
	}
	if t.Kind == turtles.KindTest {
		// As the gate does for the tasks it queues: the history and the
		// commit status say "queued" until a bot starts it.
		ev := turtles.Event{ID: fmt.Sprintf("requeue-%s-%d", t.ID(), t.Attempt), Type: turtles.EventQueued, Task: t, Time: a.cfg.Now()}
		if err := a.cfg.Queue.Emit(ctx, ev); err != nil {
			a.log.Warn("emit the queued event of a requeued task; its start will say", "task", tg.id, "err", err)
		}
	}
	return done("queued again as attempt %d", t.Attempt)
}

// sameOrigin reports whether r came from a page of this server, as far
// as the browser says: Sec-Fetch-Site, Origin and Referer, when sent,
// must name this origin. A request that sends none of them is left to
// the CSRF token.
func (a *Auth) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && originOf(u) == a.origin
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && originOf(u) == a.origin
	}
	return true
}

// back is where the browser goes after an action on task id: the page
// it came from on this server, else the task's page.
func (a *Auth) back(r *http.Request, id string) string {
	if ref, err := url.Parse(r.Header.Get("Referer")); err == nil && originOf(ref) == a.origin {
		if p, ok := safePath(ref.RequestURI()); ok {
			return p
		}
	}
	return "/tasks/" + id
}
