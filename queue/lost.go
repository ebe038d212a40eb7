package queue

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/turtles-ci/turtles"
)

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
// event, which ends the attempt too, and no LostEvent.
func LostEvent(t turtles.Task, reason string, now time.Time) turtles.Event {
	var id [12]byte
	rand.Read(id[:])
	return turtles.Event{
		ID:      "lost-" + hex.EncodeToString(id[:]),
		Type:    turtles.EventLost,
		Task:    t,
		Time:    now,
		Outcome: &turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: reason},
	}
}
