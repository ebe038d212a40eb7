package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

type botList struct {
	bots []state.Bot
	err  error
}

func (l botList) Bots(context.Context) ([]state.Bot, error) { return l.bots, l.err }

func TestBots(t *testing.T) {
	every := turtles.Duration(5 * time.Second)
	bots := botList{bots: []state.Bot{
		{Name: "a", Pool: "public", Slots: 2, Busy: 1, Seen: t0, Every: every},
		{Name: "b", Pool: "public", Slots: 4, Busy: 4, Seen: t0.Add(-15 * time.Second), Every: every},
		// Dead: its slots count for nothing, its pool stays, at 0.
		{Name: "c", Pool: "vm", Slots: 8, Busy: 8, Seen: t0.Add(-16 * time.Second), Every: every},
	}}
	queued := func(context.Context) ([]string, error) { return []string{"public", "arm"}, nil }
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewBots(bots, queued, func() time.Time { return t0 }))
	const want = `
# HELP turtles_pool_bots_alive Bots of the pool alive now: heard of within 3 of their heartbeat periods. 0 for a pool whose bots all stopped, or that has queued tasks and no bot.
# TYPE turtles_pool_bots_alive gauge
turtles_pool_bots_alive{pool="arm"} 0
turtles_pool_bots_alive{pool="public"} 2
turtles_pool_bots_alive{pool="vm"} 0
# HELP turtles_pool_busy_slots Slots of the pool's live bots that run a task.
# TYPE turtles_pool_busy_slots gauge
turtles_pool_busy_slots{pool="arm"} 0
turtles_pool_busy_slots{pool="public"} 5
turtles_pool_busy_slots{pool="vm"} 0
# HELP turtles_pool_slots Slots of the pool's live bots.
# TYPE turtles_pool_slots gauge
turtles_pool_slots{pool="arm"} 0
turtles_pool_slots{pool="public"} 6
turtles_pool_slots{pool="vm"} 0
# HELP turtles_bot_last_heartbeat_timestamp_seconds When each bot, alive or not, last heartbeat (until it is pruned, --retain-bots).
# TYPE turtles_bot_last_heartbeat_timestamp_seconds gauge
turtles_bot_last_heartbeat_timestamp_seconds{bot="a",pool="public"} 1.71457932e+09
turtles_bot_last_heartbeat_timestamp_seconds{bot="b",pool="public"} 1.714579305e+09
turtles_bot_last_heartbeat_timestamp_seconds{bot="c",pool="vm"} 1.714579304e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// TestBotsDatabaseDown: a database that does not answer fails the
// scrape, rather than report 0 live bots.
func TestBotsDatabaseDown(t *testing.T) {
	for name, c := range map[string]*Bots{
		"bots":  NewBots(botList{err: errors.New("connection refused")}, nil, time.Now),
		"queue": NewBots(botList{}, func(context.Context) ([]string, error) { return nil, errors.New("broker down") }, time.Now),
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		if _, err := reg.Gather(); err == nil {
			t.Errorf("%s down: Gather succeeded", name)
		}
	}
}
