package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/queue"
)

// Consumer drains an event log into handlers, one event at a time so that
// each task's events reach the forge in the order they were emitted.
type Consumer struct {
	Events   queue.Events
	Handlers []Handler
	// Log receives retries and dropped events; nil discards.
	Log *slog.Logger
	// Sleep waits for d or until ctx ends, returning ctx's error then.
	// Default: a timer. Tests pass one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now tells the time, to wait for a rate limit's reset. Default
	// time.Now.
	Now func() time.Time
	// MinBackoff is the first delay after a retryable error, doubled on
	// each further error up to MaxBackoff. Both required, MaxBackoff no
	// less than MinBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// maxRateWait caps a forge's reset time, in case its clock is off.
const maxRateWait = time.Hour

// Run receives events, passes each to every handler in order and acks it
// once all handled it. A handler's retryable error is retried, from that
// handler on, with growing delays, or until the reset time of a rate limit
// (an error with a RetryAt() time.Time method); the event is not acked
// meanwhile, so later events wait behind it. An error wrapping
// forge.ErrPermanent is logged and the next handler runs: retrying cannot
// help, and the event must not block the log.
//
// Run returns nil when ctx ends, leaving the current event unacked to be
// received again, and an error only when the event log is closed or c
// lacks a setting (it then receives nothing).
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	c.defaults()
	receiveFailures := 0
	for {
		d, err := c.Events.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, queue.ErrClosed) {
				return fmt.Errorf("report: receive event: %w", err)
			}
			receiveFailures++
			wait := c.backoff(receiveFailures)
			c.Log.Warn("receive event failed; retrying", "in", wait, "err", err)
			if c.Sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		receiveFailures = 0
		ev := d.Event()
		if !c.handle(ctx, ev) {
			return nil
		}
		if err := d.Ack(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Handlers are idempotent: the event comes back and is
			// handled again, which is harmless.
			c.Log.Warn("ack event failed; it will be handled again", "event_id", ev.ID, "err", err)
		}
	}
}

// check says which required setting c lacks.
func (c *Consumer) check() error {
	switch {
	case c.Events == nil:
		return errors.New("report: consumer has no Events")
	case c.MinBackoff <= 0:
		return fmt.Errorf("report: consumer's MinBackoff is %s, want more than 0", c.MinBackoff)
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("report: consumer's MaxBackoff %s is less than its MinBackoff %s", c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

func (c *Consumer) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// handle runs every handler on ev, retrying retryable errors. It returns
// false if ctx ended first.
func (c *Consumer) handle(ctx context.Context, ev turtles.Event) bool {
	for i, h := range c.Handlers {
		for failures := 1; ; failures++ {
			err := h.Handle(ctx, ev)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			log := c.Log.With("event_id", ev.ID, "event", ev.Type, "task", ev.Task.Key(),
				"attempt", ev.Task.Attempt, "handler", i, "err", err)
			if errors.Is(err, forge.ErrPermanent) {
				log.Error("event dropped after a permanent error")
				break
			}
			wait := c.wait(err, failures)
			log.Warn("handling event failed; retrying", "in", wait, "failures", failures)
			if c.Sleep(ctx, wait) != nil {
				return false
			}
		}
	}
	return true
}

// wait is how long to wait after the failures-th consecutive error err.
func (c *Consumer) wait(err error, failures int) time.Duration {
	d := c.backoff(failures)
	var ra retryAter
	if errors.As(err, &ra) {
		until := min(ra.RetryAt().Sub(c.Now()), maxRateWait)
		d = max(d, until)
	}
	return d
}

// backoff is MinBackoff doubled per earlier failure, capped at MaxBackoff.
func (c *Consumer) backoff(failures int) time.Duration {
	d := c.MinBackoff
	for i := 1; i < failures && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
