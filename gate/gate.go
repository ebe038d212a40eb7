// Package gate decides whose code turtles runs. The webhook receiver
// vouches only for what a signed payload proves (a push to the repository
// itself); everything that needs a question to the forge comes here as a
// Request: every pull request, and comment commands (/retest,
// /test CONTEXT, /hold [CONTEXT], /ok-to-test).
//
// The gate holds the forge credentials of the reporter side (read-only
// lookups, plus commit statuses); bots never import it. cmd/turtles runs it
// beside the reporter, fed by a queue.Inbox.
package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/command"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/queue"
)

// Request is what the webhook receiver could not decide alone. It travels
// as JSON through a queue.Inbox.
type Request struct {
	Repo turtles.Repo `json:"repo"`
	PR   int          `json:"pr"`
	// SHA is the head commit of a pull request event; empty for a comment,
	// whose payload does not name it.
	SHA string `json:"sha,omitempty"`
	// Ref is the ref of that head on the forge (refs/pull/N/head), if
	// known; for the task's record.
	Ref string `json:"ref,omitempty"`
	// Base and BaseSHA are the pull request's base branch and commit, if
	// known (see turtles.Task).
	Base    string `json:"base,omitempty"`
	BaseSHA string `json:"base_sha,omitempty"`
	// User is the pull request's author, or the commenter.
	User string `json:"user"`
	// Association is GitHub's author_association of User, if known. A
	// hint only (see Gate.Trusted): never enough to trust.
	Association string `json:"association,omitempty"`
	// Commands are the comment's commands; none for a pull request event.
	Commands []command.Command `json:"commands,omitempty"`
	// Pool is the pool of plan tasks.
	Pool string `json:"pool"`
}

// Statuses the gate sets on the plan context, for people.
const (
	// WaitingDescription begins the waiting status; Waiting adds the
	// commit, so that a maintainer can copy the command that approves it.
	WaitingDescription = "Waiting for a maintainer's /ok-to-test"
	approvedFormat     = "Approved by @%s for this commit"
)

// Waiting is the description of the waiting status of commit sha: the
// whole command a maintainer writes to approve it.
func Waiting(sha string) string {
	return forge.Truncate(WaitingDescription+" "+sha, forge.MaxDescription)
}

// IsApproval reports whether st is the gate's record that a maintainer
// approved the commit: the forge itself keeps approvals, per commit, and
// only those with write access can set statuses.
func IsApproval(st forge.Status) bool {
	return st.Context == turtles.PlanContext && st.State == forge.Success &&
		strings.HasPrefix(st.Description, "Approved by @") && strings.HasSuffix(st.Description, " for this commit")
}

// IsWaiting reports whether st is the gate's "waiting for /ok-to-test".
func IsWaiting(st forge.Status) bool {
	return st.Context == turtles.PlanContext && st.State == forge.Pending && strings.HasPrefix(st.Description, WaitingDescription)
}

// Publisher puts tasks on the queue; queue.Queue satisfies it. Liveness
// is the state database's: cmd/turtles gives the gate and the scanner a
// queue.Dedupe queue, whose Publish reserves the task's key there first
// and returns queue.ErrDuplicate while another run holds it (the broker
// refuses nothing).
type Publisher interface {
	Publish(ctx context.Context, t turtles.Task) error
}

// Emitter stores events; queue.Events satisfies it.
type Emitter interface {
	Emit(ctx context.Context, ev turtles.Event) error
}

// Config configures a Gate. Lookup, Forge, Queue and Events are required.
type Config struct {
	Lookup forge.Lookup
	Forge  forge.Forge
	Queue  Publisher
	Events Emitter
	// Policy is what untrusted work may ask for (config.Policy).
	Policy config.Policy
	// Orgs are organizations whose members are trusted.
	Orgs []string
	// Allow are logins trusted without asking the forge.
	Allow []string
	// Default is the configuration of repositories without .turtles.yaml;
	// nil: they run nothing.
	Default *config.Config
	// Log gets one line per decision; nil discards.
	Log *slog.Logger
	// Now is the clock for task creation; time.Now when nil.
	Now func() time.Time
}

// Gate decides trust and turns requests into tasks. Safe for concurrent use.
type Gate struct {
	cfg Config
	log *slog.Logger
}

// New returns a Gate for cfg.
func New(cfg Config) (*Gate, error) {
	if cfg.Lookup == nil || cfg.Forge == nil || cfg.Queue == nil || cfg.Events == nil {
		return nil, errors.New("gate: Lookup, Forge, Queue and Events are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, log: log}, nil
}

// pushAssociations are GitHub's words for someone who may push. They are
// a hint, not a proof: MEMBER is any member of the owning org, with read
// access too, and a payload says what was true when it was sent.
var pushAssociations = map[string]bool{"OWNER": true, "MEMBER": true, "COLLABORATOR": true}

// Trusted reports whether user may have code run with secrets in repo: on
// the allowlist, a member of a configured org, or able to push to repo by
// the forge's answer now. association only orders the questions (the
// push access first when it hints at one); it never decides. Nothing is
// cached here, so a revoked permission counts from the next request (the
// forge clients' conditional GETs revalidate every time).
func (g *Gate) Trusted(ctx context.Context, repo, user, association string) (bool, error) {
	if user == "" {
		return false, nil
	}
	if slices.Contains(g.cfg.Allow, user) {
		return true, nil
	}
	canPush := func() (bool, error) {
		ok, err := g.cfg.Lookup.CanPush(ctx, repo, user)
		if err != nil {
			return false, fmt.Errorf("gate: trust of %s: %w", user, err)
		}
		return ok, nil
	}
	if pushAssociations[association] {
		if ok, err := canPush(); ok || err != nil {
			return ok, err
		}
	}
	for _, org := range g.cfg.Orgs {
		ok, err := g.cfg.Lookup.IsMember(ctx, org, user)
		if err != nil {
			return false, fmt.Errorf("gate: trust of %s: %w", user, err)
		}
		if ok {
			return true, nil
		}
	}
	if pushAssociations[association] {
		return false, nil // asked already
	}
	return canPush()
}

// Handle acts on one request. Errors wrapping forge.ErrPermanent will not
// get better by retrying; others may.
func (g *Gate) Handle(ctx context.Context, r Request) error {
	log := g.log.With("repo", r.Repo.Name, "pr", r.PR, "user", r.User)
	if len(r.Commands) == 0 {
		return g.pullRequest(ctx, log, r)
	}
	trusted, err := g.Trusted(ctx, r.Repo.Name, r.User, r.Association)
	if err != nil {
		return err
	}
	if !trusted {
		log.Warn("ignoring commands from an untrusted commenter", "commands", fmt.Sprint(r.Commands))
		return nil
	}
	pr, err := g.cfg.Lookup.PullRequest(ctx, r.Repo.Name, r.PR)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	authorTrusted, err := g.Trusted(ctx, r.Repo.Name, pr.Author, "")
	if err != nil {
		return err
	}
	h := &head{plan: g.plan(r, pr, authorTrusted), trusted: authorTrusted}
	if !authorTrusted {
		sts, err := g.cfg.Lookup.Statuses(ctx, r.Repo.Name, pr.HeadSHA)
		if err != nil {
			return fmt.Errorf("gate: %w", err)
		}
		h.approved = slices.ContainsFunc(sts, IsApproval)
		h.waiting = slices.ContainsFunc(sts, IsWaiting)
	}
	log = log.With("sha", pr.HeadSHA, "author", pr.Author, "author_trusted", authorTrusted)
	for _, c := range r.Commands {
		if err := g.command(ctx, log, h, c, r.User); err != nil {
			return err
		}
	}
	return nil
}

// head is what a comment's commands act on: the pull request's head as
// the gate read it when it took the comment, which may be newer than the
// head the commenter saw.
type head struct {
	plan turtles.Task
	// trusted: the author is trusted, so any head runs.
	trusted bool
	// approved: a maintainer approved this very commit, by naming it.
	approved bool
	// waiting: its plan status is the gate's waiting status.
	waiting bool
}

// pullRequest handles a pull request: its author trusted after lookups,
// it is planned; otherwise it waits for a maintainer, unless one approved
// this very commit before.
func (g *Gate) pullRequest(ctx context.Context, log *slog.Logger, r Request) error {
	log = log.With("sha", r.SHA)
	trusted, err := g.Trusted(ctx, r.Repo.Name, r.User, r.Association)
	if err != nil {
		return err
	}
	plan := g.plan(r, forge.PullRequest{HeadSHA: r.SHA, Ref: r.Ref, BaseRef: r.Base, BaseSHA: r.BaseSHA}, trusted)
	if trusted {
		log.Info("pull request author is trusted")
		return g.publish(ctx, plan)
	}
	sts, err := g.cfg.Lookup.Statuses(ctx, r.Repo.Name, r.SHA)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	if slices.ContainsFunc(sts, IsApproval) {
		log.Info("untrusted pull request, commit approved before")
		return g.publish(ctx, plan)
	}
	log.Info("untrusted pull request waits for /ok-to-test", "association", r.Association)
	return g.wait(ctx, &head{plan: plan})
}

// wait sets h's waiting status, unless it has it already.
func (g *Gate) wait(ctx context.Context, h *head) error {
	if h.waiting {
		return nil
	}
	err := g.cfg.Forge.SetStatus(ctx, h.plan.Repo.Name, h.plan.SHA, forge.Status{
		Context: turtles.PlanContext, State: forge.Pending, Description: Waiting(h.plan.SHA)})
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	h.waiting = true
	return nil
}

func (g *Gate) plan(r Request, pr forge.PullRequest, trusted bool) turtles.Task {
	pool := r.Pool
	if pool == "" {
		pool = turtles.DefaultPool
	}
	return turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: r.Repo, SHA: pr.HeadSHA, Ref: pr.Ref, PR: r.PR,
		Base: pr.BaseRef, BaseSHA: pr.BaseSHA,
		Pool: pool, Attempt: 1, Trusted: trusted, Created: g.cfg.Now().UTC(),
	}
}

// command carries out c, given by the trusted user by, on h. For an
// untrusted author's pull request, /ok-to-test approves only the commit
// it names in full, and only when that is still the head: the comment
// does not say which head its writer saw, and the author may push between
// the comment and the gate's reading of the head. /test and /retest run
// only an approved head; on any other they only log.
func (g *Gate) command(ctx context.Context, log *slog.Logger, h *head, c command.Command, by string) error {
	log = log.With("command", c.String())
	plan := h.plan
	switch c.Name {
	case command.OKToTest:
		if !h.trusted && c.SHA != plan.SHA {
			log.Warn("approval does not name the head commit in full: nothing queued", "named", c.SHA)
			if h.approved {
				return nil
			}
			return g.wait(ctx, h)
		}
		if err := g.publish(ctx, plan); err != nil {
			return err
		}
		log.Info("commit approved")
		h.approved, h.waiting = true, false
		return g.cfg.Forge.SetStatus(ctx, plan.Repo.Name, plan.SHA, forge.Status{
			Context: turtles.PlanContext, State: forge.Success,
			Description: forge.Truncate(fmt.Sprintf(approvedFormat, by), forge.MaxDescription)})
	case command.Test, command.Retest, command.Hold:
		if !h.trusted && !h.approved {
			log.Warn("head of an untrusted pull request has no approval: nothing queued")
			return g.wait(ctx, h)
		}
		keep := func(*turtles.Task) {}
		if c.Name == command.Hold {
			keep = holdOnFailure
		}
		if c.Context != "" {
			return g.rerun(ctx, log, plan, func(st forge.Status, ok bool, name string) bool { return name == c.Context }, keep)
		}
		if c.Name == command.Retest {
			if err := g.replan(ctx, log, plan); err != nil {
				return err
			}
		}
		return g.rerun(ctx, log, plan, func(st forge.Status, ok bool, name string) bool {
			return ok && (st.State == forge.Failure || st.State == forge.Error)
		}, keep)
	}
	return nil
}

// replan queues the plan again when it failed (broken .turtles.yaml
// since fixed by a force push is a new commit; this is for infra errors).
func (g *Gate) replan(ctx context.Context, log *slog.Logger, plan turtles.Task) error {
	sts, err := g.cfg.Lookup.Statuses(ctx, plan.Repo.Name, plan.SHA)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	for _, st := range sts {
		if st.Context == turtles.PlanContext && (st.State == forge.Failure || st.State == forge.Error) {
			plan.Attempt = attemptOf(st) + 1
			log.Info("plan queued again")
			return g.publish(ctx, plan)
		}
	}
	return nil
}

// holdOnFailure makes a /hold rerun keep the VM of a task that fails
// again, as hold: on-failure does: never one given secrets, unless its
// context says on-failure-with-secrets (the bot decides that).
func holdOnFailure(t *turtles.Task) {
	if t.Image != "" && t.Hold == "" {
		t.Hold = turtles.HoldOnFailure
	}
}

// rerun queues the contexts of plan's commit that pick selects, given
// their current status, as new attempts, changed by change.
func (g *Gate) rerun(ctx context.Context, log *slog.Logger, plan turtles.Task, pick func(st forge.Status, ok bool, name string) bool, change func(*turtles.Task)) error {
	cfg, err := g.Config(ctx, plan.Repo.Name, plan.SHA)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			log.Warn("cannot rerun: broken configuration", "err", err)
			return nil
		}
		return err
	}
	if cfg == nil {
		log.Info("cannot rerun: the commit has no configuration")
		return nil
	}
	sts, err := g.cfg.Lookup.Statuses(ctx, plan.Repo.Name, plan.SHA)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	byContext := map[string]forge.Status{}
	for _, st := range sts {
		byContext[st.Context] = st
	}
	n := 0
	for _, x := range cfg.Contexts {
		st, ok := byContext[x.Name]
		if !pick(st, ok, x.Name) {
			continue
		}
		t, refused := g.cfg.Policy.Restrict(cfg.TaskOf(x, plan))
		if refused != "" {
			log.Warn("context not run: "+refused, "context", x.Name, "pool", t.Pool)
			continue
		}
		t.Attempt = attemptOf(st) + 1
		change(&t)
		if err := g.publish(ctx, t); err != nil {
			return err
		}
		n++
	}
	log.Info("contexts queued again", "count", n)
	return nil
}

// attemptOf reads the attempt from a status's log URL (.../tasks/ID/N),
// 0 when there is none: the rerun must be a higher attempt, so that its
// log is kept apart and the reporter shows it.
func attemptOf(st forge.Status) int {
	n, err := strconv.Atoi(path.Base(st.TargetURL))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Config returns the configuration at repo@sha: its .turtles.yaml, or the
// default configuration, or nil for none. A broken file is a *config.Error.
func (g *Gate) Config(ctx context.Context, repo, sha string) (*config.Config, error) {
	data, err := g.cfg.Lookup.File(ctx, repo, sha, config.FileName)
	if errors.Is(err, forge.ErrNotFound) {
		return g.cfg.Default, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return config.Parse(config.FileName, data)
}

// publish queues t; a task already queued or running is fine.
func (g *Gate) publish(ctx context.Context, t turtles.Task) error {
	if err := g.enqueue(ctx, t); err != nil && !errors.Is(err, queue.ErrDuplicate) {
		return err
	}
	return nil
}

// enqueue queues t, or returns queue.ErrDuplicate (wrapped) when it is
// queued or running already. Test tasks get their "queued" event, as the
// bot's plan gives them.
func (g *Gate) enqueue(ctx context.Context, t turtles.Task) error {
	err := g.cfg.Queue.Publish(ctx, t)
	if err != nil {
		return fmt.Errorf("gate: publish %s: %w", t.Key(), err)
	}
	if t.Kind != turtles.KindTest {
		return nil
	}
	ev := turtles.Event{ID: "gate-" + t.ID() + "-" + strconv.Itoa(t.Attempt), Type: turtles.EventQueued, Task: t, Time: g.cfg.Now()}
	if err := g.cfg.Events.Emit(ctx, ev); err != nil {
		return fmt.Errorf("gate: emit queued event of %s: %w", t.Key(), err)
	}
	return nil
}

// Run takes requests from inbox and handles them until ctx ends. A request
// that failed for a reason retrying may fix is not acked: it comes back
// after the inbox's lease. A rate limit pauses the gate until its reset.
func (g *Gate) Run(ctx context.Context, inbox queue.Inbox) error {
	for {
		m, err := inbox.Take(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, queue.ErrClosed) {
				return fmt.Errorf("gate: %w", err)
			}
			g.log.Warn("take request failed", "err", err)
			if sleep(ctx, time.Second) != nil {
				return nil
			}
			continue
		}
		var r Request
		if err := json.Unmarshal(m.Body(), &r); err != nil {
			g.log.Error("dropping undecodable request", "err", err)
			m.Ack(ctx)
			continue
		}
		err = g.Handle(ctx, r)
		if err != nil && !errors.Is(err, forge.ErrPermanent) {
			g.log.Warn("request failed; it will come back", "repo", r.Repo.Name, "pr", r.PR, "err", err)
			if wait := retryWait(err, g.cfg.Now()); wait > 0 && sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		if err != nil {
			g.log.Error("request dropped after a permanent error", "repo", r.Repo.Name, "pr", r.PR, "err", err)
		}
		if err := m.Ack(ctx); err != nil {
			g.log.Warn("ack request failed; it will be handled again", "err", err)
		}
	}
}

// maxRetryWait caps waiting for a rate limit's reset.
const maxRetryWait = time.Hour

type retryAter interface{ RetryAt() time.Time }

func retryWait(err error, now time.Time) time.Duration {
	var ra retryAter
	if errors.As(err, &ra) {
		return min(ra.RetryAt().Sub(now), maxRetryWait)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
