package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
)

// The dashboard's rerun and approve (package login): what /test CONTEXT
// and /ok-to-test do, for a person the caller checked may push to the
// repository, on the commit named, with the same trust decisions.

// Commit is a commit the dashboard acts on, as the history records it.
type Commit struct {
	Repo turtles.Repo
	SHA  string
	// PR is the pull request the commit was tested for, 0 for a push.
	PR  int
	Ref string
	// Pool is the pool of its plan task.
	Pool string
}

// Refusal is an action the gate will not carry out, for a reason the
// person who asked can act on; it changed nothing.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

func refuse(format string, args ...any) error { return &Refusal{Reason: fmt.Sprintf(format, args...)} }

// Rerun queues context of c again as attempt, and returns the task
// queued: the plan when context is the plan's, else the context as the
// commit's configuration says now. A pull request's commit runs only when
// its author is trusted or the commit was approved, as for /test; a
// pushed commit came from someone who may push. The error is a *Refusal
// when the gate will not (no approval, no such context, a broken
// configuration, a policy that refuses it), wraps queue.ErrDuplicate when
// the task is queued or running already, and is the forge's or the
// queue's otherwise.
func (g *Gate) Rerun(ctx context.Context, c Commit, context string, attempt int) (turtles.Task, error) {
	plan, err := g.dashboardPlan(ctx, c)
	if err != nil {
		return turtles.Task{}, err
	}
	log := g.log.With("repo", c.Repo.Name, "sha", c.SHA, "pr", c.PR, "context", context, "attempt", attempt)
	t := plan
	if context != turtles.PlanContext {
		cfg, err := g.Config(ctx, c.Repo.Name, c.SHA)
		var ce *config.Error
		switch {
		case errors.As(err, &ce):
			return turtles.Task{}, refuse("the commit's %s is broken: %v", config.FileName, ce)
		case err != nil:
			return turtles.Task{}, err
		case cfg == nil:
			return turtles.Task{}, refuse("the commit has no %s", config.FileName)
		}
		i := slices.IndexFunc(cfg.Contexts, func(x config.Context) bool { return x.Name == context })
		if i < 0 {
			return turtles.Task{}, refuse("the commit's %s has no context %q", config.FileName, context)
		}
		var refused string
		t, refused = g.cfg.Policy.Restrict(cfg.TaskOf(cfg.Contexts[i], plan))
		if refused != "" {
			return turtles.Task{}, refuse("context %s does not run here: %s", context, refused)
		}
	}
	t.Attempt = max(attempt, 1)
	if err := g.enqueue(ctx, t); err != nil {
		return turtles.Task{}, err
	}
	log.Info("queued again from the dashboard", "trusted", t.Trusted)
	return t, nil
}

// dashboardPlan is the plan task of c, trusted as the gate would trust
// it, or a *Refusal for the commit of an untrusted author's pull request
// that no one approved.
func (g *Gate) dashboardPlan(ctx context.Context, c Commit) (turtles.Task, error) {
	r := Request{Repo: c.Repo, PR: c.PR, Pool: c.Pool}
	if c.PR == 0 {
		// Only those who may push push a branch.
		return g.plan(r, forge.PullRequest{HeadSHA: c.SHA, Ref: c.Ref}, true), nil
	}
	pr, err := g.cfg.Lookup.PullRequest(ctx, c.Repo.Name, c.PR)
	if err != nil {
		return turtles.Task{}, fmt.Errorf("gate: %w", err)
	}
	trusted, err := g.Trusted(ctx, c.Repo.Name, pr.Author, "")
	if err != nil {
		return turtles.Task{}, err
	}
	plan := g.plan(r, forge.PullRequest{HeadSHA: c.SHA, Ref: c.Ref, BaseRef: pr.BaseRef, BaseSHA: pr.BaseSHA}, trusted)
	if trusted {
		return plan, nil
	}
	sts, err := g.cfg.Lookup.Statuses(ctx, c.Repo.Name, c.SHA)
	if err != nil {
		return turtles.Task{}, fmt.Errorf("gate: %w", err)
	}
	if !slices.ContainsFunc(sts, IsApproval) {
		return turtles.Task{}, refuse("commit %s of pull request #%d by @%s is not approved: approve it first", forge.ShortSHA(c.SHA), c.PR, pr.Author)
	}
	return plan, nil
}

// Approve approves c, the head of a pull request by an untrusted author,
// for by (a login the caller checked may push), and queues its plan: what
// /ok-to-test SHA does. The error is a *Refusal when there is nothing to
// approve (a push, a trusted author, a commit approved before, one that
// is no longer the head), wraps queue.ErrDuplicate when the plan is
// queued or running already, and is the forge's or the queue's
// otherwise.
func (g *Gate) Approve(ctx context.Context, c Commit, by string) (turtles.Task, error) {
	if c.PR == 0 {
		return turtles.Task{}, refuse("a pushed commit needs no approval: only pull requests by untrusted authors wait for one")
	}
	pr, err := g.cfg.Lookup.PullRequest(ctx, c.Repo.Name, c.PR)
	if err != nil {
		return turtles.Task{}, fmt.Errorf("gate: %w", err)
	}
	// As /ok-to-test names the head in full: the author may push between
	// the page and the click, and only the commit seen is approved.
	if pr.HeadSHA != c.SHA {
		return turtles.Task{}, refuse("commit %s is no longer the head of pull request #%d (now %s): approve the head", forge.ShortSHA(c.SHA), c.PR, forge.ShortSHA(pr.HeadSHA))
	}
	trusted, err := g.Trusted(ctx, c.Repo.Name, pr.Author, "")
	if err != nil {
		return turtles.Task{}, err
	}
	if trusted {
		return turtles.Task{}, refuse("@%s is trusted: their commits need no approval", pr.Author)
	}
	sts, err := g.cfg.Lookup.Statuses(ctx, c.Repo.Name, c.SHA)
	if err != nil {
		return turtles.Task{}, fmt.Errorf("gate: %w", err)
	}
	if slices.ContainsFunc(sts, IsApproval) {
		return turtles.Task{}, refuse("commit %s was approved before", forge.ShortSHA(c.SHA))
	}
	plan := g.plan(Request{Repo: c.Repo, PR: c.PR, Pool: c.Pool}, pr, false)
	if err := g.enqueue(ctx, plan); err != nil {
		return turtles.Task{}, err
	}
	g.log.Info("commit approved from the dashboard", "repo", c.Repo.Name, "sha", c.SHA, "pr", c.PR, "by", by)
	err = g.cfg.Forge.SetStatus(ctx, plan.Repo.Name, plan.SHA, forge.Status{
		Context: turtles.PlanContext, State: forge.Success,
		Description: forge.Truncate(fmt.Sprintf(approvedFormat, by), forge.MaxDescription)})
	if err != nil {
		return plan, fmt.Errorf("gate: record the approval: %w", err)
	}
	return plan, nil
}
