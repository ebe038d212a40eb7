// Package state defines the database turtles keeps beside its queue: what
// must survive any one process and be shared by every replica of a hook,
// reporter, gate, scanner or web server. The broker (or the embedded
// queue) carries work; everything else that is not a log lives here:
//
//   - the webhook delivery log (which deliveries were handled),
//   - exact dedupe of task keys (one live task per key, across replicas),
//   - the final event per (task key, attempt) and whether it was posted,
//   - approvals of the trust gate and the scanner's ETags,
//   - tasks, attempts, events and per-test results (the JSON API's history).
//
// Backends live in sub-packages and all pass the contract suite in
// state/statetest: state/sqlite (embedded, for `turtles serve`) and
// state/postgres (for the distributed mode). Only the wiring in cmd/
// imports a backend; everything else takes a DB, or a narrower interface
// of its own that a DB satisfies.
//
// This package imports only the domain types (package turtles) and the
// standard library.
package state

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/turtles-ci/turtles"
)

// Errors of every method, classified by type: callers decide with
// errors.Is, never by the text.
var (
	// ErrNotFound is returned by lookups of one thing (Get, LastFinal,
	// Approval, MarkPosted) that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable wraps the cause when the database cannot be reached
	// or cannot take writes (connection refused or lost, server shutting
	// down, disk full, lock not granted in time). Nothing was recorded,
	// or, for a write whose commit was in flight, it may have been: every
	// write is safe to repeat. A webhook answers 503 so that the forge
	// sends it again. The handle recovers by itself once the database is
	// back; there is no need to reopen it.
	ErrUnavailable = errors.New("state database unavailable")
	// ErrInvalid is returned for arguments no database could hold: an
	// empty key, ID or token, a final event that is not final.
	ErrInvalid = errors.New("invalid argument")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("state database closed")
)

// Options configure a backend. The zero value is ready to use.
type Options struct {
	// Now is the clock of the times the database records (deliveries,
	// reservations, finals, approvals) and of events without a time.
	// Default time.Now.
	Now func() time.Time
	// Log receives what is worth telling but not an error (an attempt
	// lost before it started). Nil discards.
	Log *slog.Logger
}

// WithDefaults returns o with its zero fields set.
func (o Options) WithDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// DB is the state. Every method is safe for concurrent use, from any
// number of handles on the same database (goroutines, processes,
// machines): "exactly one" below holds across all of them.
//
// Every method may return ErrUnavailable (wrapping the cause) and, after
// Close, ErrClosed; a cancelled ctx returns ctx.Err() wrapped. Other
// errors are listed per method.
type DB interface {
	// FirstDelivery records a webhook delivery key (a forge's delivery ID,
	// or "sha256:<hex>" of a body) and reports whether it is new: false
	// when it had been recorded before. Exactly one of any number of
	// concurrent calls with the same id gets true. ErrInvalid for "".
	FirstDelivery(ctx context.Context, id string) (bool, error)
	// Seen reports whether id was recorded by FirstDelivery (and not
	// pruned since). It records nothing.
	Seen(ctx context.Context, id string) (bool, error)

	// Reserve makes token the holder of task key, unless another token
	// holds it: the dedupe a hook does before it publishes a task. ok is
	// true when token holds the key after the call, including when it
	// held it already (a hook retrying its own reservation); holder is
	// then token's reservation. ok is false when another token holds it,
	// and holder is that one. Of any number of concurrent calls on a free
	// key with different tokens, exactly one gets ok. ErrInvalid for an
	// empty key or token.
	Reserve(ctx context.Context, key, token string) (ok bool, holder Reservation, err error)
	// Settle marks token's reservation of key published: its task is in
	// the queue. Until then another hook that finds the key reserved
	// cannot tell the forge "already queued", since the publish may still
	// fail and free the key. Nothing when another token holds it.
	Settle(ctx context.Context, key, token string) error
	// Free ends token's reservation of key, once the task's final event
	// is recorded, and reports whether it did: false when the key is free
	// or held by another token (a late duplicate of an older run's final
	// event must not free a newer reservation). The token therefore
	// travels with the task. ErrInvalid for an empty key or token.
	Free(ctx context.Context, key, token string) (bool, error)
	// Live returns the reservation of key, and whether there is one: the
	// scanner and the gate ask before they publish.
	Live(ctx context.Context, key string) (r Reservation, live bool, err error)
	// Reservations lists reservations made before before, oldest first,
	// at most limit (default 100, at most 1000): what a janitor checks
	// against the queue, to free the keys of tasks that were never
	// published (a hook killed between Reserve and publish).
	Reservations(ctx context.Context, before time.Time, limit int) ([]Reservation, error)
	// Unsettled is Reservations of those not settled (Settle): made
	// before a publish that never ended, by a process that died.
	Unsettled(ctx context.Context, before time.Time, limit int) ([]Reservation, error)

	// RecordFinal records ev, a final event (EventFinished), as the final
	// event of its task key and attempt, unless one was recorded already:
	// the first wins, persistently, so that the status a reporter posts
	// for (key, attempt) is the same whichever reporter posts it and
	// however often the event (or another final event of the same
	// attempt) arrives. It returns the winner, and first true when that
	// is ev, recorded by this call: exactly one of any number of
	// concurrent calls for one (key, attempt) gets true. ErrInvalid for
	// an event that is not EventFinished or has no outcome.
	RecordFinal(ctx context.Context, ev turtles.Event) (winner Final, first bool, err error)
	// LastFinal returns the final of key's highest attempt, so that a
	// reporter never lets an older attempt's event replace a newer
	// attempt's status. ErrNotFound if key has none.
	LastFinal(ctx context.Context, key string) (Final, error)
	// MarkPosted records that the final of (key, attempt) was posted to
	// the forge (or given up on for good); Unposted no longer lists it.
	// Marking it again is no error. ErrNotFound if it was never recorded.
	MarkPosted(ctx context.Context, key string, attempt int) error
	// ClaimPost claims the posting of the final of (key, attempt) for
	// holder, for lease from now: ok when the final is not marked posted
	// and no other holder's claim is live (a holder may renew its own),
	// so that of several live reporters exactly one posts it. prev is the
	// holder of an earlier claim that lapsed with the final unposted, ""
	// if none: that holder may have posted before it died, so the new one
	// should look at the forge first. ErrNotFound if it was never
	// recorded; ErrInvalid for an empty holder or a lease <= 0.
	ClaimPost(ctx context.Context, key string, attempt int, holder string, lease time.Duration) (ok bool, prev string, err error)
	// Unposted lists finals recorded and not marked posted whose claim
	// (ClaimPost) is not live, oldest first, at most limit (default 100,
	// at most 1000): what a reporter that takes over from a dead one
	// posts.
	Unposted(ctx context.Context, limit int) ([]Final, error)

	// Approve records a maintainer's approval to run untrusted code at
	// a.Repo and a.SHA (one per commit; a.PR says where it was given).
	// first is false when the commit was approved before; the earlier
	// approval is kept. A zero a.Time is now. ErrInvalid for an empty
	// repo, SHA or approver.
	Approve(ctx context.Context, a Approval) (first bool, err error)
	// Approval returns the approval of repo at sha. ErrNotFound if none.
	Approval(ctx context.Context, repo, sha string) (Approval, error)

	// ETag returns the entity tag recorded for key (a URL the scanner
	// polls), or "" if none is.
	ETag(ctx context.Context, key string) (string, error)
	// SetETag records etag for key, replacing the one before; "" forgets
	// it. ErrInvalid for an empty key.
	SetETag(ctx context.Context, key, etag string) error

	// Record applies a task event to the history of tasks and attempts.
	// Events are applied once per ID (an event without an ID is applied
	// every time): a duplicate returns Recorded.New false and changes
	// nothing. An older attempt's events change only that attempt, never
	// the task (a bot that lost its lease cannot turn a finished task
	// back to running). Heartbeats are not remembered by ID; they keep
	// the time on a running attempt and create nothing. An EventLost
	// ends the attempt still running as infra (see Recorded.Lost).
	Record(ctx context.Context, ev turtles.Event) (Recorded, error)
	// RecordTests stores the per-test results of one attempt, replacing
	// what was recorded for it before.
	RecordTests(ctx context.Context, res turtles.Result) error
	// List returns tasks matching f, most recently updated first.
	List(ctx context.Context, f Filter) ([]Task, error)
	// Get returns one task by ID (turtles.Task.ID) with its attempts.
	// ErrNotFound if unknown.
	Get(ctx context.Context, id string) (Task, error)
	// Tests summarises per-test results, worst first: most flakes, then
	// most failures (not with FlakyOnly), then by repo, context and name.
	Tests(ctx context.Context, f TestFilter) ([]TestStats, error)
	// KnownIssues counts, per known issue, the attempts whose verdict its
	// pattern decided, most occurrences first.
	KnownIssues(ctx context.Context, f IssueFilter) ([]IssueStats, error)

	// Heartbeat records what bot b says of itself, replacing what it said
	// before (an upsert by b.Name). Seen is set to now (Options.Now), not
	// taken from b; a zero b.Started keeps the start recorded before (now
	// for a bot new to the database). ErrInvalid for an empty name or
	// pool, negative slots or busy slots, or b.Every <= 0.
	Heartbeat(ctx context.Context, b Bot) error
	// Bots lists the bots that heartbeat and were not pruned since, alive
	// or not (Bot.Alive), by pool and then name.
	Bots(ctx context.Context) ([]Bot, error)

	// RecordAction records what a person did from the dashboard. A zero
	// a.At is now. Every call adds one record, also one equal to an
	// earlier one (a rerun clicked twice is two actions). ErrInvalid for
	// an empty task, kind or user.
	RecordAction(ctx context.Context, a Action) error
	// Actions returns the actions recorded on task (its ID), oldest
	// first, at most the newest 1000; none is no error.
	Actions(ctx context.Context, task string) ([]Action, error)
	// TestRuns returns the results of one test (f.Repo and f.Name; f.Context
	// and f.Since narrow it), most recently finished first, then by
	// context and attempt: the history a test's page draws as a grid.
	// ErrInvalid without a repo or a name.
	TestRuns(ctx context.Context, f TestFilter) ([]TestRun, error)

	// Prune forgets what p says, and returns how many rows it deleted
	// (with p.DryRun, how many it would delete).
	Prune(ctx context.Context, p Prune) (Pruned, error)

	// Close releases the handle. It does not wait for calls in flight
	// on other goroutines to end; those may fail with ErrClosed.
	Close() error
}

// Reservation is the hold of one token on a task key.
type Reservation struct {
	Key   string    `json:"key"`
	Token string    `json:"token"`
	Since time.Time `json:"since"`
	// Settled says the task was published (DB.Settle).
	Settled bool `json:"settled"`
}

// Final is the final event recorded for one attempt of a task key.
type Final struct {
	Key     string `json:"key"`
	Attempt int    `json:"attempt"`
	// Event is the event that won: the one the reporter posts.
	Event turtles.Event `json:"event"`
	// Recorded is when it was recorded.
	Recorded time.Time `json:"recorded"`
	// Posted is when MarkPosted was called; zero if not yet.
	Posted time.Time `json:"posted,omitzero"`
	// Poster holds the claim to post it (ClaimPost) until ClaimedUntil;
	// "" if never claimed.
	Poster       string    `json:"poster,omitempty"`
	ClaimedUntil time.Time `json:"claimed_until,omitzero"`
}

// Approval is a maintainer's permission to run untrusted code at one
// commit.
type Approval struct {
	Repo     string    `json:"repo"`
	SHA      string    `json:"sha"`
	PR       int       `json:"pr,omitempty"`
	Approver string    `json:"approver"`
	Time     time.Time `json:"time"`
}

// Recorded says what Record did with an event.
type Recorded struct {
	// New is false when the event's ID had been recorded before: nothing
	// changed.
	New bool
	// Lost is the attempt an EventLost ended, as the result the bot would
	// have stored, so that the caller can end the attempt's stored files
	// with the reason; nil when the event ended none (the task had not
	// started, or its attempt had ended already).
	Lost *turtles.Result
}

// Prune says what to forget: everything older than each non-zero
// cutoff. Reservations are never pruned by age: their keys would be
// free while their tasks may still be queued.
type Prune struct {
	// Deliveries recorded before this time: forges redeliver within
	// hours, a week is plenty.
	Deliveries time.Time
	// Events: the IDs of events recorded before this time; they only
	// guard against duplicates delivered close together.
	Events time.Time
	// Finals recorded before this time, posted or not: a final that
	// could not be posted within the retention never will be.
	Finals time.Time
	// Tasks last updated before this time, when finished, with their
	// attempts.
	Tasks time.Time
	// Tests: the per-test results of attempts that finished before this
	// time (`turtles store prune` passes the cutoff of the logs it
	// deletes, so that no test result outlives its log).
	Tests time.Time
	// Approvals given before this time.
	Approvals time.Time
	// Bots last seen before this time: a dead bot is kept a while, so
	// that the pages and turtles_pool_bots_alive show its pool without a
	// live bot rather than forget the pool.
	Bots time.Time
	// Actions taken before this time (`turtles serve` passes the cutoff
	// of tasks: an action is kept as long as the history it acted on).
	Actions time.Time
	// DryRun counts and deletes nothing.
	DryRun bool
}

// Pruned counts the rows Prune deleted, by kind.
type Pruned struct {
	Deliveries, Events, Finals, Tasks, Attempts, Tests, Approvals, IssueHits, Bots, Actions int64
}

// Reserver is db as the reservations of task keys that package queue's
// dedupe takes (queue.Reserver), which knows nothing of Reservation.
type Reserver struct{ DB DB }

// Reserve is DB.Reserve, with only whether the holder settled.
func (r Reserver) Reserve(ctx context.Context, key, token string) (ok, settled bool, err error) {
	ok, holder, err := r.DB.Reserve(ctx, key, token)
	return ok, holder.Settled, err
}

// Settle is DB.Settle.
func (r Reserver) Settle(ctx context.Context, key, token string) error {
	return r.DB.Settle(ctx, key, token)
}

// Free is DB.Free.
func (r Reserver) Free(ctx context.Context, key, token string) (bool, error) {
	return r.DB.Free(ctx, key, token)
}
