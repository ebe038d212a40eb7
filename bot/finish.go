package bot

import (
	"context"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// planned is what a plan queues and reports: it goes with the plan's
// final event and ack, so that a bot killed midway neither queues a test
// task twice (one that had finished would run again) nor loses one.
type planned struct {
	tasks  []queue.Spawn
	events []turtles.Event // the skipped contexts' final events
}

// finish emits the task's finished event and acks d, with what a plan
// queues (spawns, nil for a test task), in one step
// (Delivery.AckWithTasks): a bot killed in between cannot leave a task
// reported and then run, and reported, again. After an error the task
// runs again, unless the queue's commit went through unseen (then all of
// it happened; never a part).
func (b *Bot) finish(ctx context.Context, d queue.Delivery, logURL string, o *turtles.Outcome, spawns *planned) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	if spawns == nil {
		spawns = &planned{}
	}
	final := b.event(turtles.EventFinished, d.Task(), logURL, o)
	dups, err := d.AckWithTasks(ctx, spawns.tasks, append(spawns.events, final))
	for _, key := range dups {
		b.log.Info("plan: task already queued or running", "plan", d.Task().Key(), "task", key)
	}
	return err
}
