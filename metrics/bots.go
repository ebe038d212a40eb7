package metrics

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles/state"
)

// BotLister lists the bots that heartbeat (state.DB.Bots).
type BotLister interface {
	Bots(ctx context.Context) ([]state.Bot, error)
}

var (
	botsAliveDesc = prometheus.NewDesc("turtles_pool_bots_alive",
		"Bots of the pool alive now: heard of within "+strconv.Itoa(state.MissedBeats)+" of their heartbeat periods. "+
			"0 for a pool whose bots all stopped, or that has queued tasks and no bot.", []string{"pool"}, nil)
	slotsDesc = prometheus.NewDesc("turtles_pool_slots",
		"Slots of the pool's live bots.", []string{"pool"}, nil)
	busySlotsDesc = prometheus.NewDesc("turtles_pool_busy_slots",
		"Slots of the pool's live bots that run a task.", []string{"pool"}, nil)
	lastBeatDesc = prometheus.NewDesc("turtles_bot_last_heartbeat_timestamp_seconds",
		"When each bot, alive or not, last heartbeat (until it is pruned, --retain-bots).", []string{"bot", "pool"}, nil)
)

// Bots collects what the bots' heartbeats say, at scrape time, from the
// state database all processes share: in whichever process serves
// /metrics, a bot process that dies drops out of turtles_pool_bots_alive
// a few heartbeats later.
type Bots struct {
	bots BotLister
	// pools, if set, lists pools that have tasks in the queue: such a
	// pool without a bot that ever heartbeat counts 0 alive, not absent.
	pools func(ctx context.Context) ([]string, error)
	now   func() time.Time
}

// NewBots returns the collector of bots' heartbeats listed by l, as of
// now. pools may be nil.
func NewBots(l BotLister, pools func(ctx context.Context) ([]string, error), now func() time.Time) *Bots {
	return &Bots{bots: l, pools: pools, now: now}
}

// Describe implements prometheus.Collector.
func (c *Bots) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{botsAliveDesc, slotsDesc, busySlotsDesc, lastBeatDesc} {
		ch <- d
	}
}

// collectTimeout bounds a scrape's queries, so that a database that hangs
// fails the scrape rather than hold it.
const collectTimeout = 5 * time.Second

// Collect implements prometheus.Collector. When the database does not
// answer, the scrape fails (and `up` says so): a count of 0 live bots
// would page for the wrong reason.
func (c *Bots) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	bots, err := c.bots.Bots(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(botsAliveDesc, err)
		return
	}
	type pool struct{ alive, slots, busy int }
	pools := map[string]*pool{}
	at := func(name string) *pool {
		if pools[name] == nil {
			pools[name] = &pool{}
		}
		return pools[name]
	}
	now := c.now()
	for _, b := range bots {
		p := at(b.Pool)
		ch <- prometheus.MustNewConstMetric(lastBeatDesc, prometheus.GaugeValue, float64(b.Seen.UnixMilli())/1000, b.Name, b.Pool)
		if !b.Alive(now) {
			continue
		}
		p.alive++
		p.slots += b.Slots
		p.busy += b.Busy
	}
	if c.pools != nil {
		queued, err := c.pools(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(botsAliveDesc, err)
			return
		}
		for _, name := range queued {
			at(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		p := pools[name]
		ch <- prometheus.MustNewConstMetric(botsAliveDesc, prometheus.GaugeValue, float64(p.alive), name)
		ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(p.slots), name)
		ch <- prometheus.MustNewConstMetric(busySlotsDesc, prometheus.GaugeValue, float64(p.busy), name)
	}
}
