package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

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

// finish emits the finished event and acks d. emitErr means the event did
// not go out and the task should be retried; ackErr means it did not end
// and will run again (at least once).
func (b *Bot) finish(ctx context.Context, d queue.Delivery, logURL string, o *turtles.Outcome) (emitErr, ackErr error) {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	f, ok := d.(atomicFinisher)
	if !ok {
		if err := b.emit(ctx, turtles.EventFinished, d.Task(), logURL, o); err != nil {
			return err, nil
		}
		return nil, d.Ack(ctx)
	}
	var id [16]byte
	rand.Read(id[:])
	return nil, f.AckWithEvent(ctx, turtles.Event{
		ID:      hex.EncodeToString(id[:]),
		Type:    turtles.EventFinished,
		Task:    d.Task(),
		Bot:     b.cfg.Name,
		LogURL:  logURL,
		Outcome: o,
		Time:    time.Now(),
	})
}
