package state

import "time"

// MissedBeats is how many heartbeat periods in a row a bot may miss
// before it counts as not alive: one late beat (a busy database, a long
// garbage collection) does not make a bot dead.
const MissedBeats = 3

// Alive reports whether b was heard of within MissedBeats of its
// heartbeat periods before now. The one rule the pages and the metrics
// (turtles_pool_bots_alive) share.
func (b Bot) Alive(now time.Time) bool {
	return b.Every > 0 && now.Sub(b.Seen) <= MissedBeats*time.Duration(b.Every)
}
