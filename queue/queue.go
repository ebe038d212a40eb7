// Package queue defines the durable work queue that carries tasks from the
// webhook receiver to bots, and the event log that carries progress from
// bots to the reporter. Backends live in sub-packages (queue/sqlite for the
// embedded default; queue/amqp for RabbitMQ) and all pass the contract
// suite in queue/queuetest.
//
// Delivery is at least once: a task is removed only by Ack, after its
// result is stored. A bot that dies loses its lease and the task is
// delivered again; a task delivered too often is dead-lettered.
package queue

import (
	"context"
	"errors"
	"time"

	"github.com/turtles-ci/turtles"
)

var (
	// ErrDuplicate is returned by Publish when a task with the same Key is
	// already queued or running. The caller has nothing to do.
	ErrDuplicate = errors.New("task already queued or running")
	// ErrLeaseLost is returned by Heartbeat, Ack and Nack when the lease
	// expired and the task may have been given to someone else. The holder
	// must stop reporting for it; its outcome will come from the new holder.
	ErrLeaseLost = errors.New("lease lost")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("queue closed")
	// ErrUnavailable is wrapped by the error of any method whose backend
	// could not be reached or did not answer in time: the broker is down
	// or unresponsive, the connection broke, the database is locked past
	// its timeout or failed to write. It is our failure, not the caller's
	// input; the operation may be tried again later (a webhook answers
	// 503 so that the forge redelivers). When ctx ended while waiting for
	// the backend, the error wraps ctx's error too. Whether the operation
	// took effect is unknown unless its method says otherwise.
	ErrUnavailable = errors.New("queue unavailable")
)

// Unavailable marks err, a backend's failure, as ErrUnavailable; its
// message is err's. Nil and ErrClosed stay as they are.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
		return err
	}
	return unavailable{err}
}

type unavailable struct{ err error }

func (u unavailable) Error() string   { return u.err.Error() }
func (u unavailable) Unwrap() []error { return []error{ErrUnavailable, u.err} }

// Options tune a queue backend. Zero values mean the defaults below.
type Options struct {
	// Lease is how long a claim lasts without a heartbeat. Default 2m.
	Lease time.Duration
	// MaxDeliveries bounds how often one publish of a task is delivered
	// (redeliveries after lease loss and Nacks count). Past it, the task is
	// dead-lettered. Default 5.
	MaxDeliveries int
	// Poll is how often a waiting Claim looks for work when the backend
	// cannot be woken up by a publish in another process. Default 200ms.
	Poll time.Duration
}

// WithDefaults returns o with zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 5
	}
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	return o
}

// Queue is the work queue.
type Queue interface {
	// Publish stores a valid task durably before returning. It returns
	// ErrDuplicate if a task with the same Key is queued or running, and
	// a validation error for an invalid task.
	Publish(ctx context.Context, t turtles.Task) error
	// Claim blocks until a task of the pool is available or ctx ends (then
	// it returns ctx.Err()). Higher priority first, then oldest first;
	// tasks delayed by Nack are not available before their delay. The
	// returned task's Attempt is raised by one for every earlier delivery.
	// A message that is not a valid task, or that has been delivered
	// MaxDeliveries times, is dead-lettered instead of returned.
	Claim(ctx context.Context, pool string) (Delivery, error)
	// DeadLetters lists dead-lettered messages, newest first.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	// Stats counts tasks per pool and state, for metrics.
	Stats(ctx context.Context) ([]Stat, error)
	// Close releases the backend. Leased tasks are not acked: they come
	// back after their lease (or at once, if the backend can tell).
	Close() error
}

// Delivery is one claimed task and its lease.
type Delivery interface {
	Task() turtles.Task
	// Count is how many times this publish was delivered, 1 the first time.
	Count() int
	// Heartbeat extends the lease by the queue's lease duration.
	// ErrLeaseLost if the lease had already expired and was taken.
	Heartbeat(ctx context.Context) error
	// Ack removes the task for good. Call it after the result is stored.
	Ack(ctx context.Context) error
	// Nack returns the task to the queue, available again after delay.
	// If the task was delivered MaxDeliveries times it is dead-lettered
	// with reason instead; dead reports which happened. A backend that
	// also carries Events emits the final infra event of a task it
	// dead-letters (here or in Claim), so the caller must not.
	Nack(ctx context.Context, delay time.Duration, reason string) (dead bool, err error)
	// Release returns the task at once without counting the delivery, for
	// a bot that drains before starting it.
	Release(ctx context.Context) error
	// AckWithTasks ends the task by queuing others (a plan queues the
	// commit's test tasks), in one step: every spawn whose key is not
	// queued or running is queued with its Queued event, events are
	// emitted (the task's final event last) to the event log on the same
	// storage, and the task is acked; all of it or none. Done as separate
	// publishes before the ack, a bot killed in between runs the plan
	// again, which queues the tasks again, and a task that has finished
	// meanwhile runs a second time (dedupe covers live keys only). dups
	// are the keys that were live, neither queued again nor announced.
	// ErrLeaseLost means the task is no longer held and none of it
	// happened (the task runs again), or, when the connection broke
	// during the commit, all of it did; never a part. Other errors change
	// nothing: the task is still held.
	AckWithTasks(ctx context.Context, spawns []Spawn, events []turtles.Event) (dups []string, err error)
}

// Spawn is a task that a finishing task queues, with the event that says
// it is queued.
type Spawn struct {
	Task   turtles.Task
	Queued turtles.Event
}

// DeadLetter is a message that will not be delivered again.
type DeadLetter struct {
	// Task is the decoded task; zero if the body did not decode.
	Task   turtles.Task `json:"task"`
	Body   string       `json:"body,omitempty"`
	Reason string       `json:"reason"`
	Pool   string       `json:"pool"`
	Time   time.Time    `json:"time"`
}

// Stat is a count of tasks in one pool and state.
type Stat struct {
	Pool  string `json:"pool"`
	State string `json:"state"` // "ready", "delayed", "leased", "dead"
	Count int    `json:"count"`
}

// Events is the durable event log from bots and hooks to the reporter and
// the recorder. Events of one task are received in the order emitted.
type Events interface {
	// Emit stores ev durably before returning.
	Emit(ctx context.Context, ev turtles.Event) error
	// Receive blocks until an event not yet acked is available or ctx ends.
	// An event received but not acked within the lease is received again.
	Receive(ctx context.Context) (EventDelivery, error)
	Close() error
}

// EventDelivery is one received event.
type EventDelivery interface {
	Event() turtles.Event
	// Ack removes the event; call it once every consumer handled it.
	Ack(ctx context.Context) error
}

// ErrCancelled is returned by Heartbeat when the task was cancelled (see
// Canceller). The holder stops the attempt and reports nothing: the
// canceller already emitted the task's final event. Ack, Nack and Release
// return it too.
var ErrCancelled = errors.New("task cancelled")

// Canceller is implemented by queues that can withdraw the tasks of a
// commit, such as those of a pull request's old head after a new push.
// It is optional: the webhook receiver checks for it.
type Canceller interface {
	// Cancel removes the queued tasks of repo@sha that belong to pull
	// request pr (0: a branch push) and makes the Heartbeat of running
	// ones return ErrCancelled. For each, it emits a final event of class
	// Cancelled with reason, durably and together with the removal, so
	// that no status stays pending. It returns how many tasks it cancelled;
	// none is not an error.
	Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error)
}

// Inbox carries verified forge requests that need forge lookups before
// they become tasks (an untrusted author, a comment command), from the
// webhook receiver, which holds no forge credentials, to the gate, which
// does. Delivery is at least once. It is optional: without it the receiver
// queues no work for those requests.
type Inbox interface {
	// Put stores body durably before returning.
	Put(ctx context.Context, body []byte) error
	// Take blocks until a message not yet acked is available or ctx ends.
	// A message taken and not acked within the lease is taken again.
	Take(ctx context.Context) (InboxMessage, error)
}

// InboxMessage is one taken Inbox message.
type InboxMessage interface {
	Body() []byte
	// Ack removes the message once handled.
	Ack(ctx context.Context) error
}
