// Package scan restores work that webhooks lost. The forge is the source
// of truth: for every open pull request and configured branch of each
// repository, the scanner computes the contexts the head commit should
// have and queues those with no status and no queued or running task.
// Lost deliveries, a wiped queue or a reporter down for a day cost no
// work, only time.
//
// It runs on the reporter side, with the forge credentials (read-only
// lookups, through conditional requests so that an unchanged repository
// costs almost no rate limit). cmd/turtles wires it (`turtles scan`, and a
// loop in `turtles serve`).
package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
)

// Repo is one repository to scan.
type Repo struct {
	Name     string
	CloneURL string
	// Branches whose heads are tested on push, such as "main".
	Branches []string
}

// Config configures a Scanner. Lookup, Gate, Queue and Events are required.
type Config struct {
	Lookup forge.Lookup
	// Gate decides trust and reads configurations; untrusted pull requests
	// go through it as a webhook would send them.
	Gate  *gate.Gate
	Queue gate.Publisher
	// Policy is what untrusted work may ask for (config.Policy).
	Policy config.Policy
	Events gate.Emitter
	Repos  []Repo
	// Pool of plan tasks; turtles.DefaultPool when empty.
	Pool string
	Log  *slog.Logger
	Now  func() time.Time
}

// Scanner scans repositories. Safe for one Scan at a time.
type Scanner struct {
	cfg Config
	log *slog.Logger
}

// New returns a Scanner for cfg.
func New(cfg Config) (*Scanner, error) {
	if cfg.Lookup == nil || cfg.Gate == nil || cfg.Queue == nil || cfg.Events == nil {
		return nil, errors.New("scan: Lookup, Gate, Queue and Events are required")
	}
	if cfg.Pool == "" {
		cfg.Pool = turtles.DefaultPool
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scanner{cfg: cfg, log: log}, nil
}

// Stats counts what one scan did.
type Stats struct {
	Commits int // head commits looked at
	Queued  int // tasks queued (they had no status and no task)
	Live    int // tasks without status that were already queued or running
	Waiting int // untrusted pull requests waiting for /ok-to-test
	Errors  int // repositories or commits skipped after an error
}

// Scan scans every repository once. It goes on after an error of one
// repository or commit (counted in Stats.Errors, logged), but stops at a
// rate limit and returns it: its RetryAt method says when to go on.
func (s *Scanner) Scan(ctx context.Context) (Stats, error) {
	var st Stats
	for _, r := range s.cfg.Repos {
		if err := s.repo(ctx, r, &st); err != nil {
			if retryAt(err) != (time.Time{}) || ctx.Err() != nil {
				return st, err
			}
			st.Errors++
			s.log.Warn("scan of repository failed", "repo", r.Name, "err", err)
		}
	}
	s.log.Info("scan done", "commits", st.Commits, "queued", st.Queued, "live", st.Live, "waiting", st.Waiting, "errors", st.Errors)
	return st, nil
}

func (s *Scanner) repo(ctx context.Context, r Repo, st *Stats) error {
	repo := turtles.Repo{Name: r.Name, CloneURL: r.CloneURL}
	prs, err := s.cfg.Lookup.PullRequests(ctx, r.Name)
	if err != nil {
		return fmt.Errorf("scan %s: %w", r.Name, err)
	}
	for _, b := range r.Branches {
		sha, err := s.cfg.Lookup.BranchHead(ctx, r.Name, b)
		if errors.Is(err, forge.ErrNotFound) {
			s.log.Debug("configured branch does not exist", "repo", r.Name, "branch", b)
			continue
		}
		if err != nil {
			return fmt.Errorf("scan %s: %w", r.Name, err)
		}
		plan := s.plan(repo, sha, "refs/heads/"+b, 0, true)
		if err := s.commit(ctx, plan, config.Event{Branch: b}, st); err != nil {
			if retryAt(err) != (time.Time{}) {
				return err
			}
			st.Errors++
			s.log.Warn("scan of branch failed", "repo", r.Name, "branch", b, "err", err)
		}
	}
	for _, pr := range prs {
		if err := s.pull(ctx, repo, pr, st); err != nil {
			if retryAt(err) != (time.Time{}) {
				return err
			}
			st.Errors++
			s.log.Warn("scan of pull request failed", "repo", r.Name, "pr", pr.Number, "err", err)
		}
	}
	return nil
}

// pull scans a pull request's head: a trusted author's, or an approved
// one, is planned like a push; any other waits for a maintainer.
func (s *Scanner) pull(ctx context.Context, repo turtles.Repo, pr forge.PullRequest, st *Stats) error {
	trusted, err := s.cfg.Gate.Trusted(ctx, repo.Name, pr.Author, "")
	if err != nil {
		return err
	}
	plan := s.plan(repo, pr.HeadSHA, pr.Ref, pr.Number, trusted)
	plan.Base, plan.BaseSHA = pr.BaseRef, pr.BaseSHA
	if !trusted {
		sts, err := s.cfg.Lookup.Statuses(ctx, repo.Name, pr.HeadSHA)
		if err != nil {
			return err
		}
		approved := false
		for _, x := range sts {
			approved = approved || gate.IsApproval(x)
		}
		if !approved {
			st.Commits++
			st.Waiting++
			for _, x := range sts {
				if gate.IsWaiting(x) {
					return nil // said so already
				}
			}
			return s.cfg.Gate.Handle(ctx, gate.Request{Repo: repo, PR: pr.Number, SHA: pr.HeadSHA, Base: pr.BaseRef, BaseSHA: pr.BaseSHA, User: pr.Author, Pool: s.cfg.Pool})
		}
	}
	return s.commit(ctx, plan, config.Event{PullRequest: true, Branch: pr.BaseRef}, st)
}

func (s *Scanner) plan(repo turtles.Repo, sha, ref string, pr int, trusted bool) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: repo, SHA: sha, Ref: ref, PR: pr, Pool: s.cfg.Pool, Attempt: 1, Trusted: trusted,
		Created: s.cfg.Now().UTC(),
	}
}

// commit queues the contexts of plan's commit that run by themselves for
// ev (auto, branch rules; changed paths are not known here, so path
// filters do not filter) and have no status. A commit with no status at
// all whose contexts have path filters gets its plan task instead, which
// knows the changed paths when the plan names a base commit. A broken .turtles.yaml is
// left to the plan task, which reports it.
func (s *Scanner) commit(ctx context.Context, plan turtles.Task, ev config.Event, st *Stats) error {
	st.Commits++
	log := s.log.With("repo", plan.Repo.Name, "sha", plan.SHA, "pr", plan.PR)
	sts, err := s.cfg.Lookup.Statuses(ctx, plan.Repo.Name, plan.SHA)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, x := range sts {
		have[x.Context] = true
	}
	cfg, err := s.cfg.Gate.Config(ctx, plan.Repo.Name, plan.SHA)
	var ce *config.Error
	if errors.As(err, &ce) {
		if have[turtles.PlanContext] {
			return nil
		}
		return s.publish(ctx, log, plan, st)
	}
	if err != nil {
		return err
	}
	if cfg == nil {
		return nil
	}
	selected := cfg.Select(ev)
	if len(sts) == 0 && plan.BaseSHA != "" && slices.ContainsFunc(selected, config.Context.HasPathFilters) {
		// Nothing was ever reported for this commit: its webhook was lost.
		// Path filters need the changed paths, which the plan task finds.
		return s.publish(ctx, log, plan, st)
	}
	for _, x := range selected {
		if have[x.Name] {
			continue
		}
		t, refused := s.cfg.Policy.Restrict(cfg.TaskOf(x, plan))
		if refused != "" {
			continue // the plan reported it; a rescan would only repeat it
		}
		if err := s.publish(ctx, log, t, st); err != nil {
			return err
		}
	}
	return nil
}

func (s *Scanner) publish(ctx context.Context, log *slog.Logger, t turtles.Task, st *Stats) error {
	err := s.cfg.Queue.Publish(ctx, t)
	if errors.Is(err, queue.ErrDuplicate) {
		st.Live++
		return nil
	}
	if err != nil {
		return fmt.Errorf("scan: publish %s: %w", t.Key(), err)
	}
	st.Queued++
	log.Info("queued missing work", "context", t.Context)
	if t.Kind != turtles.KindTest {
		return nil
	}
	ev := turtles.Event{ID: fmt.Sprintf("scan-%s-%d", t.ID(), s.cfg.Now().UnixNano()), Type: turtles.EventQueued, Task: t, Time: s.cfg.Now()}
	if err := s.cfg.Events.Emit(ctx, ev); err != nil {
		return fmt.Errorf("scan: emit queued event of %s: %w", t.Key(), err)
	}
	return nil
}

// Run scans at once and then every interval until ctx ends. After a rate
// limit it waits until the limit's reset instead (at most an hour).
func (s *Scanner) Run(ctx context.Context, interval time.Duration) {
	for {
		wait := interval
		if _, err := s.Scan(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if at := retryAt(err); at != (time.Time{}) {
				wait = max(min(at.Sub(s.cfg.Now()), time.Hour), interval)
				s.log.Warn("scan stopped by a rate limit", "resume_in", wait)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

type retryAter interface{ RetryAt() time.Time }

// retryAt is when a rate-limited forge wants to be asked again; zero for
// other errors.
func retryAt(err error) time.Time {
	var ra retryAter
	if errors.As(err, &ra) {
		return ra.RetryAt()
	}
	return time.Time{}
}
