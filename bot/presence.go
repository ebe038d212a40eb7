package bot

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Presence is where a bot says that it is alive, what it runs and how
// many slots it has: the state database (state.DB.Heartbeat), shared by
// the process that serves the pages and /metrics, which count a bot
// alive while it has missed fewer than state.MissedBeats of its beats.
type Presence interface {
	Heartbeat(ctx context.Context, b state.Bot) error
}

// slotTasks is the set of task IDs the bot's slots run now.
type slotTasks struct {
	mu    sync.Mutex
	tasks map[string]int // a task ID, and how many slots run it
}

func (r *slotTasks) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tasks == nil {
		r.tasks = map[string]int{}
	}
	r.tasks[id]++
}

func (r *slotTasks) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tasks[id]--; r.tasks[id] <= 0 {
		delete(r.tasks, id)
	}
}

// now returns the IDs run now, sorted, and how many slots are busy.
func (r *slotTasks) now() (ids []string, busy int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.tasks {
		busy += n
	}
	return slices.Sorted(maps.Keys(r.tasks)), busy
}

// announce tells Presence that the bot is alive, at once and then every
// PresenceEvery, until ctx ends. A failed beat is retried at the next
// tick; the log says when beats start failing and when they work again,
// not at every one.
func (b *Bot) announce(ctx context.Context, started time.Time) {
	if b.cfg.Presence == nil {
		return
	}
	tick := b.cfg.Clock.NewTicker(b.cfg.PresenceEvery)
	defer tick.Stop()
	failing := false
	for {
		ids, busy := b.running.now()
		beat := state.Bot{Name: b.cfg.Name, Pool: b.cfg.Pool, Slots: b.cfg.Slots, Busy: busy, Tasks: ids,
			Started: started, Every: turtles.Duration(b.cfg.PresenceEvery)}
		bctx, cancel := context.WithTimeout(ctx, b.cfg.PresenceEvery)
		err := b.cfg.Presence.Heartbeat(bctx, beat)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			b.log.Warn("bot heartbeat failed: the pages and metrics will count this bot dead until one works", "err", err)
		case err == nil && failing:
			b.log.Info("bot heartbeats work again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
		}
	}
}
