package bot

import (
	"context"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

// atomicFinisher is implemented by deliveries that emit a task's final
// event and ack it in one step (queue/amqp, in a broker transaction), so
// that a bot killed between the two cannot leave a task reported and then
// run (and reported) again.
type atomicFinisher interface {
	AckWithEvent(ctx context.Context, ev turtles.Event) error
}

// planned is what a plan queues and reports: it goes with the plan's
// final event and ack, in one step (Delivery.AckWithTasks), so that a bot
// killed midway neither queues a test task twice (one that had finished
// would run again) nor loses one.
type planned struct {
	tasks  []queue.Spawn
	events []turtles.Event // the skipped contexts' final events
}

// finish emits the finished event and acks d, with what the plan queues
// if spawns is set. emitErr means the event did not go out and the task
// should be retried; ackErr means it did not end and will run again (at
// least once).
func (b *Bot) finish(ctx context.Context, d queue.Delivery, logURL string, o *turtles.Outcome, spawns *planned) (emitErr, ackErr error) {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	final := b.event(turtles.EventFinished, d.Task(), logURL, o)
	if spawns != nil {
		dups, err := d.AckWithTasks(ctx, spawns.tasks, append(spawns.events, final))
		for _, key := range dups {
			b.log.Info("plan: task already queued or running", "plan", d.Task().Key(), "task", key)
		}
		return nil, err
	}
	f, ok := d.(atomicFinisher)
	if !ok {
		if err := b.cfg.Events.Emit(ctx, final); err != nil {
			return err, nil
		}
		return nil, d.Ack(ctx)
	}
	return nil, f.AckWithEvent(ctx, final)
}
