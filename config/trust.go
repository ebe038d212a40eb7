package config

import "github.com/turtles-ci/turtles"

// InternalPool is the pool of bots inside a trusted network. Untrusted work
// (a stranger's pull request, even approved with /ok-to-test) never runs
// there.
const InternalPool = "internal"

// Restrict returns t as it may run for its author: untrusted work loses
// its secrets, and false means t must not run at all (its pool is for
// trusted work only). Every place that turns a configuration into tasks
// (the bot's plan, the gate, the scanner) calls it, so that no path hands
// secrets to a stranger.
func Restrict(t turtles.Task) (turtles.Task, bool) {
	if t.Trusted {
		return t, true
	}
	t.Secrets = nil
	return t, t.Pool != InternalPool
}
