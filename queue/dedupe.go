package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
)

// Exact dedupe of task keys, written once in front of any backend: the
// backends carry work and dedupe nothing. A key is held by a reservation
// in the state database (package state; Reserver is the part of state.DB
// it needs), made before the task reaches the backend and freed when the
// task's final event is recorded (package results). The reservation's
// token travels in the task (turtles.Task.Token), so that only the final
// event of the run that holds the key frees it.

// Reserver holds reservations of task keys: the part of state.DB that
// Dedupe needs (package queue does not import package state; see there
// for the full contract). Reserve reports ok when token holds key after
// the call, also when it held it already, and otherwise whether the
// holder settled; Settle marks token's reservation published; Free ends
// token's reservation and does nothing when another token holds the key.
type Reserver interface {
	Reserve(ctx context.Context, key, token string) (ok, settled bool, err error)
	Settle(ctx context.Context, key, token string) error
	Free(ctx context.Context, key, token string) (bool, error)
}

// Dedupe returns q with exact dedupe of task keys in r: Publish, and the
// spawns of Delivery.AckWithTasks, queue a task only when its key is
// free, and return it as ErrDuplicate (for spawns, in dups) when another
// run holds it. Everything else is q's.
//
// A key is a duplicate only once its holder's task is in the queue (the
// reservation settled): while another process is still publishing it,
// that publish may fail and free the key, so a publish waits up to wait
// for it to settle or be freed, and then takes ErrUnavailable. Answering
// "already queued" at once would let the forge's second delivery of a
// webhook be answered 2xx while the first, whose publish then failed, is
// answered 503: its redelivery is then "seen before", and the task is
// lost.
//
// An error of r is returned wrapping ErrUnavailable: the caller tries
// again later (a webhook answers 503), as when the broker is down.
func Dedupe(q Queue, r Reserver, wait time.Duration) Queue {
	return &deduped{Queue: q, r: r, wait: wait}
}

type deduped struct {
	Queue
	r    Reserver
	wait time.Duration
}

// Publish reserves t's key with a fresh token, then publishes t carrying
// it. When the backend fails, the reservation is freed, so that a retry
// (the forge redelivering after a 503) is not refused as a duplicate; if
// the backend had stored the task all the same (ErrUnavailable says it
// may have), the retry queues the key a second time, which costs a
// second run of the same work and no wrong status (the first final event
// per attempt wins in the state database).
func (d *deduped) Publish(ctx context.Context, t turtles.Task) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	t.Token = newToken()
	if err := reserve(ctx, d.r, t, d.wait); err != nil {
		return err
	}
	if err := d.Queue.Publish(ctx, t); err != nil {
		free(d.r, t)
		return err
	}
	settle(ctx, d.r, t)
	return nil
}

// settlePoll is how often reserve looks whether another process's
// publish of the key settled.
const settlePoll = 50 * time.Millisecond

// reserve reserves t's key for t.Token: ErrDuplicate when another token
// holds it and its task is queued; ErrUnavailable when that task is not
// queued after wait (or ctx ended first).
func reserve(ctx context.Context, r Reserver, t turtles.Task, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ok, settled, err := r.Reserve(ctx, t.Key(), t.Token)
		switch {
		case err != nil:
			return fmt.Errorf("reserve %s: %w", t.Key(), Unavailable(err))
		case ok:
			return nil
		case settled:
			return fmt.Errorf("publish %s: %w", t.Key(), ErrDuplicate)
		case !time.Now().Before(deadline):
			return fmt.Errorf("publish %s: another process is publishing it and has not finished after %s: %w", t.Key(), wait, ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: another process is publishing it: %w", t.Key(), Unavailable(ctx.Err()))
		case <-time.After(settlePoll):
		}
	}
}

// settle marks t's reservation settled, its task being queued, whatever
// ctx says. If that fails, others that find the key wait and answer
// "unavailable" until the janitor frees the reservation.
func settle(ctx context.Context, r Reserver, t turtles.Task) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), freeTimeout)
	defer cancel()
	r.Settle(ctx, t.Key(), t.Token)
}

// free frees t's reservation after a failed publish, whatever ctx says:
// a key left reserved waits for the janitor.
func free(r Reserver, t turtles.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), freeTimeout)
	defer cancel()
	r.Free(ctx, t.Key(), t.Token)
}

// Claim implements Queue: the delivery's AckWithTasks dedupes spawns.
func (d *deduped) Claim(ctx context.Context, pool string) (Delivery, error) {
	del, err := d.Queue.Claim(ctx, pool)
	if err != nil {
		return nil, err
	}
	return &dedupedDelivery{Delivery: del, r: d.r, wait: d.wait}, nil
}

type dedupedDelivery struct {
	Delivery
	r    Reserver
	wait time.Duration
}

// AckWithTasks reserves each spawn's key before the backend's commit,
// with a token derived from the finishing task's token and the spawn's
// key: a plan that runs again after its bot died before the commit finds
// its own reservations and queues its spawns, while a spawn whose key
// another run holds is left out (a dup, with its Queued event). If the
// commit fails without taking effect, the reservations made are freed.
func (d *dedupedDelivery) AckWithTasks(ctx context.Context, spawns []Spawn, events []turtles.Event) ([]string, error) {
	if len(spawns) == 0 {
		return d.Delivery.AckWithTasks(ctx, spawns, events)
	}
	if err := ValidateSpawns(spawns); err != nil {
		return nil, fmt.Errorf("ack %s with its tasks: %w", d.Task().Key(), err)
	}
	parent := d.Task()
	var dups []string
	var keep []Spawn
	for _, s := range spawns {
		s.Task.Token = SpawnToken(parent, s.Task)
		if err := reserve(ctx, d.r, s.Task, d.wait); errors.Is(err, ErrDuplicate) {
			dups = append(dups, s.Task.Key())
			continue
		} else if err != nil {
			d.freeAll(keep)
			return nil, fmt.Errorf("ack %s with its tasks: %w", parent.Key(), err)
		}
		keep = append(keep, s)
	}
	more, err := d.Delivery.AckWithTasks(ctx, keep, events)
	if err != nil {
		if !errors.Is(err, ErrLeaseLost) {
			// Nothing happened; the task is still held. (ErrLeaseLost
			// may mean all of it did: the reservations stay, and a run of
			// the plan again finds them as its own.)
			d.freeAll(keep)
		}
		return nil, err
	}
	for _, s := range keep {
		settle(ctx, d.r, s.Task)
	}
	return append(dups, more...), nil
}

func (d *dedupedDelivery) freeAll(spawns []Spawn) {
	for _, s := range spawns {
		free(d.r, s.Task)
	}
}

// SpawnToken is the reservation token of spawn, queued by parent's
// AckWithTasks: the same for every attempt of one publish of parent,
// different for another publish (a retest queues its spawns anew).
func SpawnToken(parent, spawn turtles.Task) string {
	seed := parent.Token
	if seed == "" {
		// Published without dedupe: the attempts of one publish share
		// Created.
		seed = parent.Key() + "@" + parent.Created.UTC().Format("2006-01-02T15:04:05.999999999")
	}
	sum := sha256.Sum256([]byte(seed + "\x00" + spawn.Key()))
	return "s-" + hex.EncodeToString(sum[:16])
}

// freeTimeout bounds freeing a reservation after a failed publish, when
// the caller's ctx may have ended already.
const freeTimeout = 10 * time.Second

// newToken is a fresh reservation token.
func newToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand docs)
	return "p-" + hex.EncodeToString(b[:])
}
