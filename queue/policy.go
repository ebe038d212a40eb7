package queue

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
)

// Policy every backend follows, written once: what a backend stores for a
// task, and what ends an attempt that its holder did not end.

// EncodeTask validates t and encodes it as backends store it. An invalid
// task is an error wrapping ErrInvalid.
func EncodeTask(t turtles.Task) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	body, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode task: %w", err)
	}
	return body, nil
}

// ValidateSpawns checks the tasks AckWithTasks is to queue, before any of
// it happens: an error wraps ErrInvalid and names the task.
func ValidateSpawns(spawns []Spawn) error {
	for _, s := range spawns {
		if err := s.Task.Validate(); err != nil {
			return fmt.Errorf("spawn %s: %w: %w", s.Task.Key(), ErrInvalid, err)
		}
	}
	return nil
}

// Exhausted reports whether a task delivered count times may not be
// delivered again.
func (o Options) Exhausted(count int) bool { return count >= o.MaxDeliveries }

// End is what replaces a delivery that ended without an ack: the task is
// queued again as its next attempt, or dead-lettered.
type End struct {
	// Dead: the task is dead-lettered, with Reason.
	Dead   bool
	Reason string
	// Event ends the attempt and goes in the same step as the change:
	// the final infra event (DeadEvent) when Dead, a LostEvent when a
	// lost holder's task runs again, nil when the holder gave the task
	// back itself (Nack) and reports the retry.
	Event *turtles.Event
}

// Lost decides the fate of the count-th delivery of t (its Attempt the
// one that delivery ran) whose holder stopped reporting: an expired lease,
// a message the broker took back with its holder's connection. cause says
// what the backend saw, for people.
func (o Options) Lost(t turtles.Task, count int, cause string) End {
	now := o.Clock.Now()
	if o.Exhausted(count) {
		reason := GaveUp(count, cause)
		ev := DeadEvent(t, reason, now)
		return End{Dead: true, Reason: reason, Event: &ev}
	}
	ev := LostEvent(t, cause, now)
	return End{Event: &ev}
}

// Nacked decides the fate of the count-th delivery of t that its holder
// gave back (Nack) for reason.
func (o Options) Nacked(t turtles.Task, count int, reason string) End {
	if !o.Exhausted(count) {
		return End{}
	}
	why := GaveUp(count, reason)
	ev := DeadEvent(t, why, o.Clock.Now())
	return End{Dead: true, Reason: why, Event: &ev}
}

// GaveUp is the reason of a task dead-lettered after count deliveries,
// the last of which ended because of cause.
func GaveUp(count int, cause string) string {
	return fmt.Sprintf("gave up after %d deliveries: %s", count, cause)
}

// StoppedBeating is the cause of a lost delivery whose holder last
// heart-beat (or claimed it) at beat.
func StoppedBeating(beat time.Time) string {
	return "the bot stopped heart-beating at " + beat.UTC().Format("15:04:05 UTC")
}

// DeadEvent is the final event of t (its Attempt the last one delivered),
// which a backend that dead-letters it emits in the same step: whoever
// dead-letters it, a Nack or the queue after a dead bot's last lease, its
// status must not stay pending.
func DeadEvent(t turtles.Task, reason string, now time.Time) turtles.Event {
	return queueEvent("dead-", turtles.EventFinished, t, turtles.Infra, reason, now)
}

// CancelledEvent is the final event of t, cancelled for reason (see
// Queue.Cancel); t's Attempt is the one running, or for a queued task the
// one that would have come next.
func CancelledEvent(t turtles.Task, reason string, now time.Time) turtles.Event {
	return queueEvent("cancel-", turtles.EventFinished, t, turtles.Cancelled, reason, now)
}

// LostEvent is the event a backend emits when it takes t back from a
// holder that stopped heart-beating before reporting (an expired lease, a
// message the broker returned because its holder's connection ended), in
// the same step that queues the next delivery: the holder reports nothing
// more, so without it the attempt would stay running for ever. t is the
// task as the lost delivery had it (its Attempt that delivery's), reason
// says what the backend saw. The recorder ends the attempt with it, naming
// the bot; the reporter ignores it (the task runs again).
//
// A backend that dead-letters the task instead emits its final infra
// event, which ends the attempt too, and no LostEvent (see Options.Lost).
func LostEvent(t turtles.Task, reason string, now time.Time) turtles.Event {
	return queueEvent("lost-", turtles.EventLost, t, turtles.Infra, reason, now)
}

// queueEvent is an event the queue emits itself, with an ID of its own.
func queueEvent(prefix string, typ turtles.EventType, t turtles.Task, class turtles.Class, reason string, now time.Time) turtles.Event {
	var id [12]byte
	rand.Read(id[:]) // never fails (crypto/rand docs)
	return turtles.Event{
		ID:      prefix + hex.EncodeToString(id[:]),
		Type:    typ,
		Task:    t,
		Time:    now,
		Outcome: &turtles.Outcome{Class: class, ExitCode: -1, Reason: reason},
	}
}
