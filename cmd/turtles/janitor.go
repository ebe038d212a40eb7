package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/state"
)

// The janitor of task-key reservations (queue.Dedupe). A key is reserved
// before its task is published and freed by the task's final event; a
// process killed between the reservation and the publish (or a final
// event lost for good) would leave the key reserved, so that the task
// could never be queued again. Neither backend can be asked cheaply
// whether a task is queued (RabbitMQ cannot look into a queue), so the
// janitor frees reservations older than a bound no live task reaches in
// practice: twice the longest timeout a context may ask for, plus a
// lease. A task still live past it (a backlog of days, many retries of
// day-long runs) may then be queued a second time by a new webhook; both
// runs report the same key, and the first final event of each attempt
// wins, so no status is wrong, only work is done twice.
//
// A reservation whose publish never settled (state.DB.Settle) is freed
// much sooner: other hooks answer 503 for its key meanwhile
// (queue.Dedupe). Publishes end within the webhook publish timeout, so
// one unsettled long after it belongs to a process that died mid-way.

// janitorEvery is how often the janitor looks.
const janitorEvery = time.Minute

// reservationBound is the age past which a reservation is freed.
func (s Settings) reservationBound() time.Duration { return 2*config.MaxTimeout + s.Lease }

// unsettledBound is the age past which an unsettled reservation is freed.
func (s Settings) unsettledBound() time.Duration { return max(time.Minute, 4*s.WebhookPublishTimeout) }

// janitor frees stale reservations of task keys.
type janitor struct {
	db        state.DB
	bound     time.Duration // any reservation
	unsettled time.Duration // one whose publish never settled
	clock     clockwork.Clock
	log       *slog.Logger
}

// sweep frees the reservations made before now - bound, and the
// unsettled ones made before now - unsettled, each for its own token (one
// freed and made again meanwhile is another run's, and stays), and
// returns how many it freed.
func (j janitor) sweep(ctx context.Context) (int, error) {
	now := j.clock.Now()
	n, err := j.free(ctx, "freed an unsettled reservation of a task key: the process publishing its task died", j.unsettled,
		func() ([]state.Reservation, error) { return j.db.Unsettled(ctx, now.Add(-j.unsettled), 1000) })
	if err != nil {
		return n, err
	}
	m, err := j.free(ctx, "freed a stale reservation of a task key: its task never reached the queue, or never ended", j.bound,
		func() ([]state.Reservation, error) { return j.db.Reservations(ctx, now.Add(-j.bound), 1000) })
	return n + m, err
}

// free frees what list lists until it lists no more, and says why.
func (j janitor) free(ctx context.Context, why string, bound time.Duration, list func() ([]state.Reservation, error)) (int, error) {
	freed := 0
	for {
		rs, err := list()
		if err != nil {
			return freed, err
		}
		n := 0
		for _, r := range rs {
			ok, err := j.db.Free(ctx, r.Key, r.Token)
			if err != nil {
				return freed, err
			}
			if ok {
				n++
				j.log.Warn(why, "key", r.Key, "since", r.Since, "bound", bound)
			}
		}
		freed += n
		if len(rs) < 1000 || n == 0 {
			return freed, nil
		}
	}
}

// run sweeps at once and then every janitorEvery, until ctx ends.
func (j janitor) run(ctx context.Context) {
	for {
		if _, err := j.sweep(ctx); err != nil && ctx.Err() == nil {
			j.log.Warn("free stale reservations of task keys; trying again later", "in", janitorEvery, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-j.clock.After(janitorEvery):
		}
	}
}
