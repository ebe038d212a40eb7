// Package results records task events in the history of the state
// database (package state), the history the JSON API and the pages show:
// it applies each event (state.DB.Record), reads the per-test results of
// each attempt that ended from its result.json in the store
// (state.DB.RecordTests), and ends the stored log of an attempt whose bot
// died, with the reason, since that bot cannot.
//
// The Recorder is a report.Handler: serve and the reporter run it beside
// the status reporter on the same event stream. Events are applied once
// per ID, so at-least-once delivery is harmless.
//
// cmd/turtles wires it; it imports the domain types, package state and
// package store.
package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// History is the part of state.DB the Recorder writes. RecordFinal is
// the reporter's record of final events (state.DB.RecordFinal): the
// Recorder records the final event that won there, so that the history
// and the forge's statuses agree.
type History interface {
	Record(ctx context.Context, ev turtles.Event) (state.Recorded, error)
	RecordTests(ctx context.Context, res turtles.Result) error
	RecordFinal(ctx context.Context, ev turtles.Event) (winner state.Final, first bool, err error)
}

// Keys is the part of state.DB that frees task keys: Free ends token's
// reservation of key, and does nothing (false) when another token holds
// it or none does.
type Keys interface {
	Free(ctx context.Context, key, token string) (bool, error)
}

// Config configures a Recorder. History is required.
type Config struct {
	History History
	// Keys, if set, is where the reservations of task keys are freed
	// when a task's final event is recorded. Nil frees none.
	Keys Keys
	// Store, if set, is where the Recorder reads each ended attempt's
	// result.json for its per-test results. Nil: tasks and attempts only.
	Store store.Store
	// EndLog, if set, ends the stored files of an attempt whose bot
	// stopped heart-beating: it appends res.Outcome.Reason to the log of
	// res.Task's attempt and stores res as its result, so that the raw
	// log and pages read from the store see the attempt ended. Nil
	// leaves the store alone.
	EndLog func(ctx context.Context, res turtles.Result) error
	// Observe, if set, is called with each event the Recorder records
	// for the first time (the final event that won, for a final event),
	// never for a duplicate: the metrics of tasks (metrics.Tasks).
	Observe func(turtles.Event)
	// Log gets what is worth telling but not an error; nil discards.
	Log *slog.Logger
}

// Recorder records events in the history.
type Recorder struct {
	cfg Config
}

// New returns a Recorder for cfg. It panics without a History: that is
// a wiring mistake.
func New(cfg Config) *Recorder {
	if cfg.History == nil {
		panic("results: New without a History")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{cfg: cfg}
}

// Handle records ev. It implements report.Handler. An error (the
// database is unavailable) makes the consumer try again; what was
// recorded is not recorded twice.
func (r *Recorder) Handle(ctx context.Context, ev turtles.Event) error {
	w := r.winner(ctx, ev)
	rec, err := r.cfg.History.Record(ctx, w)
	if err != nil {
		return fmt.Errorf("record %s event %s of %s: %w", ev.Type, ev.ID, ev.Task.Key(), err)
	}
	if rec.New && r.cfg.Observe != nil {
		r.cfg.Observe(w)
	}
	if lost := rec.Lost; lost != nil {
		if ev.Outcome != nil && ev.Outcome.Reason != "" {
			r.cfg.Log.Warn("attempt lost", "task", lost.Task.Key(), "attempt", lost.Task.Attempt, "bot", lost.Bot, "queue", ev.Outcome.Reason)
		}
		if r.cfg.EndLog != nil {
			if err := r.cfg.EndLog(ctx, *lost); err != nil {
				r.cfg.Log.Warn("end the files of a lost attempt", "task", lost.Task.Key(), "attempt", lost.Task.Attempt, "err", err)
			}
		}
	}
	if err := r.free(ctx, ev); err != nil {
		return err
	}
	// Also for an event recorded before: a process that died between
	// Record and here left the tests unrecorded, and RecordTests
	// replaces what was recorded.
	if ev.Type == turtles.EventFinished || ev.Type == turtles.EventRetrying {
		return r.recordTests(ctx, ev)
	}
	return nil
}

// winner returns the final event that won ev's attempt when ev is
// final (two runs of one attempt, or a bot that finished after its
// attempt was declared lost, end it twice): what the reporter posts is
// what the history shows, whichever came first to which process. Any
// other event is itself. When the winner cannot be known (the database
// is away), ev is returned: Record fails the same way.
func (r *Recorder) winner(ctx context.Context, ev turtles.Event) turtles.Event {
	if ev.Type != turtles.EventFinished || ev.Outcome == nil {
		return ev
	}
	w, _, err := r.cfg.History.RecordFinal(ctx, ev)
	if err != nil {
		return ev
	}
	if w.Event.ID != ev.ID {
		r.cfg.Log.Info("another final event of this attempt won; recording that one", "task", ev.Task.Key(),
			"attempt", ev.Task.Attempt, "event_id", ev.ID, "winner", w.Event.ID)
	}
	return w.Event
}

// free frees the key of the task that ev ends, if it is a final event
// of a run published with dedupe. Also for an event recorded before (a
// process died between Record and here); freeing twice is harmless, and
// the token keeps a late final of an older run from freeing a newer
// run's reservation.
func (r *Recorder) free(ctx context.Context, ev turtles.Event) error {
	if r.cfg.Keys == nil || ev.Type != turtles.EventFinished || ev.Task.Token == "" {
		return nil
	}
	if _, err := r.cfg.Keys.Free(ctx, ev.Task.Key(), ev.Task.Token); err != nil {
		return fmt.Errorf("free the key %s: %w", ev.Task.Key(), err)
	}
	return nil
}

// maxResultSize bounds the result.json the recorder reads.
const maxResultSize = 64 << 20

// recordTests records the per-test results of the attempt ev ended, from
// its result.json. A result that is missing (the attempt died before
// writing one) or unreadable is logged, not retried: the next event must
// not wait behind it. An error of the database is returned.
func (r *Recorder) recordTests(ctx context.Context, ev turtles.Event) error {
	if r.cfg.Store == nil || ev.Task.Kind != turtles.KindTest || ev.Task.Attempt < 1 {
		return nil
	}
	key := store.AttemptPrefix(ev.Task) + store.ResultName
	rc, _, err := r.cfg.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.cfg.Log.Warn("read result for per-test results", "key", key, "err", err)
		return nil
	}
	defer rc.Close()
	var res turtles.Result
	if err := json.NewDecoder(io.LimitReader(rc, maxResultSize)).Decode(&res); err != nil {
		r.cfg.Log.Warn("decode result for per-test results", "key", key, "err", err)
		return nil
	}
	res.Task = ev.Task // the event's identity, not the file's say
	if ev.LogURL != "" {
		// The serving process linked the event; an older bot's link in
		// result.json pointed at its own default URL.
		res.LogURL = ev.LogURL
	}
	if err := r.cfg.History.RecordTests(ctx, res); err != nil {
		return fmt.Errorf("record per-test results of %s attempt %d: %w", ev.Task.Key(), ev.Task.Attempt, err)
	}
	return nil
}

// ParseAge reads an age such as "14d", "36h" or "90m": time.ParseDuration
// plus days, which people use for retention and history.
func ParseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("bad age %q: want e.g. 14d or 36h", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad age %q: want e.g. 14d or 36h", s)
	}
	return d, nil
}
