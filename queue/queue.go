// Package queue defines the durable queue that carries work and progress
// between the parts of turtles: tasks from the webhook receiver to bots,
// events from bots and hooks to the reporter and the recorder, and
// requests from the webhook receiver to the trust gate. Queue is the one
// interface every backend implements in full (queue/sqlite, embedded, the
// default; queue/amqp, RabbitMQ); the contract suite in queue/queuetest
// holds each to it. Policy that does not depend on the backend (what event
// ends a dead-lettered, cancelled or lost attempt; validation; when a task
// has been delivered too often) is written once here, as functions the
// backends call (policy.go). So is the exact dedupe of task keys, in
// front of any backend, over the state database (Dedupe, dedupe.go): the
// backends carry work and dedupe nothing.
//
// Delivery is at least once: a task is removed only by AckWithTasks, after
// its result is stored. A bot that dies loses its lease and the task is
// delivered again; a task delivered too often is dead-lettered.
//
// Anything may import this package; only cmd/ (and bench/) import the
// backends.
package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
)

var (
	// ErrDuplicate is returned by the Publish of a Dedupe queue when a
	// task with the same Key is live: queued, delayed or running (its
	// reservation is held). The caller has nothing to do.
	ErrDuplicate = errors.New("task already queued or running")
	// ErrLeaseLost is returned by a Delivery's methods when its lease
	// expired and the task may have been given to someone else, and by
	// Ack of an event or inbox message that came back to the queue. The
	// holder must stop reporting for it; its outcome will come from the
	// new holder.
	ErrLeaseLost = errors.New("lease lost")
	// ErrCancelled is returned by a Delivery's methods when the task was
	// cancelled (Queue.Cancel). The holder stops the attempt and reports
	// nothing: the canceller already emitted the task's final event.
	ErrCancelled = errors.New("task cancelled")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("queue closed")
	// ErrInvalid is wrapped by the error for a task that fails
	// turtles.Task.Validate: it will never be accepted, so retrying is
	// pointless.
	ErrInvalid = errors.New("invalid task")
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

// Options tune a backend. Every field is required: cmd/turtles decides
// the values (Validate says which one is missing).
type Options struct {
	// Lease is how long a claim lasts without a heartbeat.
	Lease time.Duration
	// MaxDeliveries bounds how often one publish of a task is delivered
	// (redeliveries after lease loss and Nacks count). Past it, the task
	// is dead-lettered.
	MaxDeliveries int
	// Poll is how often a waiting Claim, Receive or Take looks for work
	// that another process wrote (a publish in this process wakes it at
	// once). Real time, whatever Clock is.
	Poll time.Duration
	// Clock is the time the queue keeps: when leases end, when a Nack's
	// delay is over, the times in the events it emits. A fake clock in
	// tests; what a broker times itself (RabbitMQ's TTLs) stays real.
	Clock clockwork.Clock
}

// Validate returns an error naming the first field that is unset or
// invalid.
func (o Options) Validate() error {
	switch {
	case o.Lease <= 0:
		return fmt.Errorf("queue options: Lease is %s, want > 0", o.Lease)
	case o.MaxDeliveries < 1:
		return fmt.Errorf("queue options: MaxDeliveries is %d, want >= 1", o.MaxDeliveries)
	case o.Poll <= 0:
		return fmt.Errorf("queue options: Poll is %s, want > 0", o.Poll)
	case o.Clock == nil:
		return errors.New("queue options: Clock is nil")
	}
	return nil
}

// Queue is the durable queue; every backend implements all of it. Unless
// a method says otherwise, it returns ErrClosed after Close, an error
// wrapping ErrUnavailable when the backend failed (see there), and ctx's
// error when ctx ended first. Methods are safe for concurrent use. Two
// handles on the same storage (two processes) share tasks, events and
// inbox messages.
type Queue interface {
	// Publish stores a valid task durably before returning.
	//
	// A backend dedupes nothing: every publish is queued, also one of a
	// key that is live. Exact dedupe of task keys is one path in front of
	// any backend, Dedupe (dedupe.go), which reserves the key in the
	// state database and returns ErrDuplicate while another run holds
	// it; the task's final event frees it. An invalid task is an error
	// wrapping ErrInvalid. On ErrUnavailable the task may have been
	// stored all the same.
	Publish(ctx context.Context, t turtles.Task) error

	// Claim blocks until a task of pool is available or ctx ends. Higher
	// priority first, then oldest first; tasks delayed by Nack are not
	// available before their delay. The returned task's Attempt is raised
	// by one for every earlier delivery. A message that is not a valid
	// task, or that has been delivered MaxDeliveries times, is
	// dead-lettered instead of returned (with the task's final infra
	// event, DeadEvent). A task taken back from a holder that stopped
	// heart-beating is delivered again with a LostEvent for the lost
	// attempt. Both events are emitted in the same step as the change.
	Claim(ctx context.Context, pool string) (Delivery, error)

	// Cancel withdraws the tasks of repo@sha that belong to pull request
	// pr (0: a branch push), such as those of a pull request's old head
	// after a new push. Queued ones are never delivered; the Heartbeat
	// (and every other method) of running ones returns ErrCancelled. Each
	// gets its final CancelledEvent with reason, durably and in the same
	// step as its removal, so that no status stays pending. A task of the
	// commit published after Cancel (a retest) is not affected. It
	// returns how many tasks it cancelled, as far as the backend can
	// count them (RabbitMQ: those held by this handle); none is not an
	// error.
	Cancel(ctx context.Context, repo, sha string, pr int, reason string) (int, error)

	// CancelTask withdraws the task of key (turtles.Task.Key), queued,
	// delayed or running, as Cancel withdraws the tasks of a commit: the
	// dashboard's cancel of one context. Whatever pull request or push
	// published it, one key is one live task (Dedupe). A task of the key
	// published after CancelTask (a rerun) is not affected. It returns how
	// many it cancelled, as far as the backend can count them (RabbitMQ:
	// those held by this handle); none is not an error.
	CancelTask(ctx context.Context, key, reason string) (int, error)

	// Emit stores ev durably in the event log before returning.
	Emit(ctx context.Context, ev turtles.Event) error

	// Receive blocks until an event not yet acked is available or ctx
	// ends. Events of one task are received in the order emitted (and
	// those the queue emits itself, with the step that causes them, are
	// in that order too: the event log lives on the queue's storage). An
	// event received but not acked is received again, after a lease or
	// when this handle is closed; consumers drop duplicates by Event.ID.
	Receive(ctx context.Context) (EventDelivery, error)

	// Put stores body durably in the inbox before returning.
	Put(ctx context.Context, body []byte) error

	// Take blocks until an inbox message not yet acked is available or
	// ctx ends. A message taken and not acked within a lease is taken
	// again.
	Take(ctx context.Context) (InboxMessage, error)

	// DeadLetters lists dead-lettered messages, newest first.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)

	// RemoveDead removes one dead letter with dl's body and time, as
	// DeadLetters listed it: a person dealt with it (requeued its task).
	// It reports false, and no error, when there is none (already
	// removed, or never there).
	RemoveDead(ctx context.Context, dl DeadLetter) (bool, error)

	// Stats counts tasks per pool and state, for metrics.
	Stats(ctx context.Context) ([]Stat, error)

	// Close releases the handle; waiting calls return ErrClosed. Leased
	// tasks are not acked: they come back after their lease (or at once,
	// if the backend can tell); events received and not acked come back.
	// A second Close returns ErrClosed.
	Close() error
}

// Delivery is one claimed task and its lease. Every method returns
// ErrLeaseLost once the lease was lost (the task may run elsewhere now)
// and ErrCancelled once the task was cancelled; on those the holder stops
// and reports nothing more.
type Delivery interface {
	Task() turtles.Task
	// Count is how many times this publish was delivered, 1 the first time.
	Count() int
	// Heartbeat extends the lease by the queue's lease duration.
	Heartbeat(ctx context.Context) error
	// Nack returns the task to the queue, available again after delay.
	// If the task was delivered MaxDeliveries times it is dead-lettered
	// instead, and the queue emits its final infra event (DeadEvent) in
	// the same step, so the caller must not; dead reports which happened.
	Nack(ctx context.Context, delay time.Duration, reason string) (dead bool, err error)
	// Release returns the task at once without counting the delivery, for
	// a bot that drains before starting it.
	Release(ctx context.Context) error
	// AckWithTasks ends the task: every spawn is queued with its Queued
	// event (a plan queues the commit's test tasks), events are emitted
	// (the task's final event last), and the task is removed, in one
	// step: all of it or none. Done as separate publishes before the ack,
	// a bot killed in between would run the plan again, which queues the
	// tasks again, and a task that had finished meanwhile would run a
	// second time. A backend queues every spawn; Dedupe leaves out those
	// whose key another run holds and returns them as dups, neither
	// queued again nor announced. With no spawns and no events it is a
	// plain ack. ErrLeaseLost means the task is no longer held and none
	// of it happened (the task runs again), or, when the connection broke
	// during the commit, all of it did; never a part. Other errors change
	// nothing: the task is still held.
	AckWithTasks(ctx context.Context, spawns []Spawn, events []turtles.Event) (dups []string, err error)
}

// EventDelivery is one received event.
type EventDelivery interface {
	Event() turtles.Event
	// Ack removes the event; call it once every consumer handled it.
	Ack(ctx context.Context) error
}

// InboxMessage is one taken inbox message.
type InboxMessage interface {
	Body() []byte
	// Ack removes the message once handled. ErrLeaseLost if it went back
	// to the inbox meanwhile (it will be taken again).
	Ack(ctx context.Context) error
}

// Events is the event-log part of Queue, for those that only emit or
// receive events (the reporter's consumer, the gate, fakes in tests).
// Every Queue is one; it is not a backend of its own.
type Events interface {
	Emit(ctx context.Context, ev turtles.Event) error
	Receive(ctx context.Context) (EventDelivery, error)
}

// Inbox is the inbox part of Queue: verified forge requests that need
// forge lookups before they become tasks (an untrusted author, a comment
// command), from the webhook receiver, which holds no forge credentials,
// to the gate, which does. Every Queue is one.
type Inbox interface {
	Put(ctx context.Context, body []byte) error
	Take(ctx context.Context) (InboxMessage, error)
}

var (
	_ Events = Queue(nil)
	_ Inbox  = Queue(nil)
)

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
