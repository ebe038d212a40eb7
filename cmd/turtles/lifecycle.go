package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/report"
	"github.com/turtles-ci/turtles/web"
)

// eventDrainTimeout bounds step 3 of a stop: waiting for the events the
// bot emitted to be handled. Events are durable: what is left (the forge
// is down, another process's consumer is the active one) is handled at
// the next start, so waiting longer only delays the stop.
const eventDrainTimeout = 30 * time.Second

// httpShutdownTimeout bounds the wait for requests in flight at the end
// of a stop; a live log page that streams is cut after it.
const httpShutdownTimeout = 5 * time.Second

// run runs the parts sys holds until ctx ends (a signal) or one of them
// fails, then stops them in this order, each step after the one before
// has ended:
//
//  1. Take no new work: the bot claims no more tasks, the gate takes no
//     more requests, the scanner stops.
//  2. Running tasks finish, for up to --drain-timeout or until a second
//     signal (again), then are put back on the queue: the bot's Run
//     returns.
//  3. The events the bot emitted are handled: a mark emitted now comes
//     back through the event consumer only after every event before it
//     (turtles.EventMark).
//  4. The HTTP server stops: log pages and the API stay up until here.
//
// Parts close after run, with the system.
func (sys *system) run(ctx context.Context, again <-chan os.Signal) error {
	log := sys.log
	stopping, stop := context.WithCancel(ctx)
	defer stop()
	var (
		errMu sync.Mutex
		errs  []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
		stop()
	}

	// What takes in work, stopped at step 1.
	intake, stopIntake := context.WithCancel(context.Background())
	defer stopIntake()
	var intakeWG sync.WaitGroup
	if inbox, ok := sys.Inbox.GetOK(); ok && sys.Forge.isSet() {
		intakeWG.Go(func() {
			if err := sys.takeGateRequests(intake, inbox); err != nil {
				fail(err)
			}
		})
	}
	if sc, ok := sys.Scanner.GetOK(); ok {
		intakeWG.Go(func() {
			if sys.s.ScanInterval == 0 {
				if _, err := sc.Scan(intake); err != nil && intake.Err() == nil {
					log.Warn("scan at start", "err", err)
				}
				return
			}
			sc.Run(intake, sys.s.ScanInterval)
		})
	}
	// Processes with the retention settings prune (a bot or scanner uses
	// the database for dedupe only, and takes no --retain-* flags).
	if db, ok := sys.State.GetOK(); ok && (sys.Deliveries.isSet() || sys.Results.isSet()) {
		intakeWG.Go(func() { sys.runPruner(intake, db) })
	}
	// Where final events free task keys, stale reservations are freed too.
	if db, ok := sys.State.GetOK(); ok && sys.Results.isSet() {
		j := janitor{db: db, bound: sys.s.reservationBound(), unsettled: sys.s.unsettledBound(), clock: clockwork.NewRealClock(), log: log.With("part", "janitor")}
		intakeWG.Go(func() { j.run(intake) })
	}

	// The event consumer, stopped at step 3.
	events, stopEvents := context.WithCancel(context.Background())
	defer stopEvents()
	var eventsWG sync.WaitGroup
	var marked *markedEvents
	if res, ok := sys.Results.GetOK(); ok {
		marked = &markedEvents{Events: sys.Events.Get(), log: log, waiting: map[string]chan struct{}{}}
		// Bots do not know where the pages are served; this process does.
		link := func(t turtles.Task) string { return web.LogURL(sys.s.PublicURL, t) }
		handlers := []report.Handler{report.Linked(res, link)}
		rep, hasReporter := sys.Reporter.GetOK()
		if hasReporter {
			handlers = append(handlers, report.Linked(rep, link))
		}
		eventsWG.Go(func() {
			if hasReporter {
				// What a reporter before this one recorded and did not
				// post (it died, the forge was down), now and whenever
				// a claim to post (one lease) may have lapsed since.
				sweep := func() {
					if n, err := rep.PostUnposted(events); err != nil && events.Err() == nil {
						log.Warn("post the final statuses left unposted; their events post them when they come again", "posted", n, "err", err)
					} else if n > 0 {
						log.Info("posted final statuses left unposted", "posted", n)
					}
				}
				sweep()
				eventsWG.Go(func() {
					tick := time.NewTicker(sys.s.Lease)
					defer tick.Stop()
					for {
						select {
						case <-events.Done():
							return
						case <-tick.C:
							sweep()
						}
					}
				})
			}
			c := &report.Consumer{Events: marked, Handlers: handlers, Log: log.With("part", "events"), MinBackoff: eventRetryMin, MaxBackoff: eventRetryMax}
			if err := c.Run(events); err != nil {
				fail(err)
			}
		})
	}

	// The HTTP server, stopped at step 4.
	httpDone := make(chan struct{})
	srv, hasHTTP := sys.HTTP.GetOK()
	if hasHTTP {
		go func() {
			defer close(httpDone)
			if err := srv.srv.Serve(srv.ln); !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("web server: %w", err))
			}
		}()
	}

	b, hasBot := sys.Bot.GetOK()
	botDone := make(chan struct{})
	if hasBot {
		go func() {
			defer close(botDone)
			if err := sys.runBot(intake, again, b); err != nil {
				fail(err)
			}
		}()
	}

	<-stopping.Done()
	stopIntake() // 1
	intakeWG.Wait()
	if hasBot {
		<-botDone // 2
		if marked != nil {
			sys.drainEvents(marked) // 3
		}
	}
	stopEvents()
	eventsWG.Wait()
	if hasHTTP { // 4
		shutdown, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		if err := srv.srv.Shutdown(shutdown); err != nil {
			log.Warn("web server: requests cut at shutdown", "err", err)
		}
		cancel()
		<-httpDone
	}
	log.Info("stopped")
	errMu.Lock()
	defer errMu.Unlock()
	return errors.Join(errs...)
}

// runBot runs b until ctx ends, then drains: running tasks get the drain
// timeout or until again fires, then are put back on the queue.
func (sys *system) runBot(ctx context.Context, again <-chan os.Signal, b *bot.Bot) error {
	drain, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-ctx.Done()
		sys.log.Info("draining: taking no new tasks; running tasks may finish", "timeout", sys.s.DrainTimeout,
			"hint", "press Ctrl-C again to stop now and put them back on the queue")
		select {
		case <-again:
			sys.log.Info("stopping now: running tasks go back on the queue")
		case <-time.After(sys.s.DrainTimeout):
			sys.log.Info("drain timeout: running tasks go back on the queue")
		case <-drain.Done():
		}
		stop()
	}()
	return b.Run(ctx, drain)
}

// drainEvents waits until the consumer of m has handled every event
// emitted so far: it emits a mark and waits for it to come back, for up
// to eventDrainTimeout.
func (sys *system) drainEvents(m *markedEvents) {
	ctx, cancel := context.WithTimeout(context.Background(), eventDrainTimeout)
	defer cancel()
	id := newID()
	back := m.await(id)
	mark := turtles.Event{ID: id, Type: turtles.EventMark, Bot: sys.s.BotName, Time: time.Now().UTC()}
	if err := m.Emit(ctx, mark); err != nil {
		sys.log.Warn("events not all handled before the stop; the rest are handled at the next start", "err", err)
		return
	}
	select {
	case <-back:
		sys.log.Debug("events handled")
	case <-ctx.Done():
		sys.log.Warn("events not all handled before the stop; the rest are handled at the next start", "waited", eventDrainTimeout)
	}
}

// markedEvents is an event log whose marks reach no handler: Receive acks
// them and tells whoever awaits one that it came back.
type markedEvents struct {
	queue.Events
	log     *slog.Logger
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

// await returns a channel closed when the mark id is received.
func (m *markedEvents) await(id string) <-chan struct{} {
	ch := make(chan struct{})
	m.mu.Lock()
	m.waiting[id] = ch
	m.mu.Unlock()
	return ch
}

// Receive returns the next event that is not a mark.
func (m *markedEvents) Receive(ctx context.Context) (queue.EventDelivery, error) {
	for {
		d, err := m.Events.Receive(ctx)
		if err != nil || d.Event().Type != turtles.EventMark {
			return d, err
		}
		if err := d.Ack(ctx); err != nil {
			m.log.Warn("ack mark event", "err", err)
		}
		m.mu.Lock()
		if ch, ok := m.waiting[d.Event().ID]; ok {
			close(ch)
			delete(m.waiting, d.Event().ID)
		}
		m.mu.Unlock()
	}
}

// takeGateRequests takes the requests webhook receivers put in the inbox
// until ctx ends: the gate decides them, or, in a process without forge
// lookups, each is dropped with a warning. Either way they do not pile
// up unread behind a reporter that cannot decide them.
func (sys *system) takeGateRequests(ctx context.Context, inbox queue.Inbox) error {
	if g, ok := sys.Gate.GetOK(); ok {
		return g.Run(ctx, inbox)
	}
	log := sys.log.With("part", "gate")
	for {
		m, err := inbox.Take(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, queue.ErrClosed) {
				return fmt.Errorf("gate requests: %w", err)
			}
			log.Warn("take request failed", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		var r gate.Request
		if err := json.Unmarshal(m.Body(), &r); err != nil {
			log.Error("dropping undecodable request", "err", err)
		} else {
			log.Warn("webhook needs the trust gate, which needs forge credentials this process lacks: dropped",
				"repo", r.Repo.Name, "pr", r.PR, "user", r.User, "hint", sys.Gate.why)
		}
		// Acked even when the stop began meanwhile: it was handled.
		ack, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := m.Ack(ack); err != nil {
			log.Warn("ack request failed; it will be dropped again", "err", err)
		}
		cancel()
	}
}
