package bot

import (
	"context"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
)

// claimPrefix claims a store prefix of its own for d's attempt
// (store.ClaimAttempt) and returns d with the task renumbered to the
// attempt it claimed: the attempt's events, result, retry and log link
// then name the prefix its log is really under. A replayed push whose
// task starts again at attempt 1 so runs as the next free attempt instead
// of writing over the first run's log.
func (b *Bot) claimPrefix(ctx context.Context, d queue.Delivery) (queue.Delivery, error) {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	t, err := store.ClaimAttempt(ctx, b.cfg.Store, d.Task(), b.cfg.Name, time.Now())
	if err != nil {
		return d, turtles.InfraFault(reasonStore, err)
	}
	if t.Attempt == d.Task().Attempt {
		return d, nil
	}
	return renumbered{Delivery: d, task: t}, nil
}

// renumbered is a delivery whose task runs as another attempt number than
// the queue counted.
type renumbered struct {
	queue.Delivery
	task turtles.Task
}

func (r renumbered) Task() turtles.Task { return r.task }
