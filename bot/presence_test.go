package bot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
)

// beats is a Presence that hands each heartbeat to the test.
type beats chan state.Bot

func (c beats) Heartbeat(ctx context.Context, b state.Bot) error {
	select {
	case c <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns the first heartbeat that satisfies ok, failing after a
// deadline.
func (c beats) next(t *testing.T, what string, ok func(state.Bot) bool) state.Bot {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case b := <-c:
			if ok(b) {
				return b
			}
		case <-deadline:
			t.Fatalf("no heartbeat of %s", what)
		}
	}
}

// TestPresence: the bot heartbeats from its start, says which task its
// slot runs while it runs it and that the slot is free after, and stops
// heart-beating when Run returns.
func TestPresence(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	got := beats(make(chan state.Bot))
	h.cfg.Presence, h.cfg.PresenceEvery, h.cfg.Slots = got, 20*time.Millisecond, 2
	r := h.start()
	first := got.next(t, "the start", func(state.Bot) bool { return true })
	want := state.Bot{Name: "bot-1", Pool: turtles.DefaultPool, Slots: 2, Started: first.Started, Every: turtles.Duration(20 * time.Millisecond)}
	if diff := cmp.Diff(want, first); diff != "" || first.Started.IsZero() {
		t.Errorf("first heartbeat (-want +got):\n%s", diff)
	}

	gate := filepath.Join(visibleDir(t), "gate")
	task := h.startedAndLogging(`echo running now; while [ ! -e ` + gate + ` ]; do sleep 0.05; done`)
	busy := got.next(t, "a busy slot", func(b state.Bot) bool { return b.Busy > 0 })
	want.Busy, want.Tasks = 1, []string{task.ID()}
	if diff := cmp.Diff(want, busy); diff != "" {
		t.Errorf("heartbeat while the task runs (-want +got):\n%s", diff)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.events(finishedFor(task.Key()))
	idle := got.next(t, "idle slots after the task", func(b state.Bot) bool { return b.Busy == 0 })
	want.Busy, want.Tasks = 0, nil
	if diff := cmp.Diff(want, idle, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("heartbeat after the task (-want +got):\n%s", diff)
	}

	// A beat blocked in the channel when Run is asked to stop ends with
	// ctx; none starts after Run returned.
	if err := r.stop(t, true); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		t.Errorf("heartbeat after Run returned: %+v", b)
	default:
	}
}

func TestPresenceNeedsPeriod(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	h.cfg.Presence, h.cfg.Registerer = beats(nil), nil
	if _, err := New(h.cfg); err == nil {
		t.Error("New accepted a Presence without PresenceEvery")
	}
}
