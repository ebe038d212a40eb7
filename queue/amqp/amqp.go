// Package amqp is the RabbitMQ (AMQP 0.9.1) queue backend, for turtles
// running as separate processes on many machines: hooks publish, bots
// claim, a reporter consumes events. It passes the same contract suite
// (queue/queuetest) as the embedded backend; docs/distributed.md describes
// the topology it declares and the long-task mechanism.
//
// Only the wiring in cmd/ (and bench/) should import it; everything else
// takes the queue.Queue interface.
package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/turtles-ci/turtles/queue"
)

// Config configures a handle. URL, Prefix, Options and ParkAfter are
// required (cmd/turtles decides them); the others may be zero.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://.
	URL string
	// Prefix starts every exchange and queue name; every process of one
	// turtles uses the same.
	Prefix string
	// Options are the queue options (lease, max deliveries, poll, clock).
	// The clock times leases held by this process (lease expiry, inbox
	// leases); what the broker times (delays, parked copies)
	// runs on real time.
	Options queue.Options
	// ParkAfter is how long a claimed task is held as an unacked delivery
	// before it is parked (acked, with a copy parked in the broker and a
	// lease queue held by this connection). It must be well below the
	// broker's consumer_timeout (30 minutes by default). Real time.
	ParkAfter time.Duration
	// Pools are reported by Stats even when this handle never used them.
	Pools []string
	// Name identifies the connection in the broker's UI.
	Name string
	// StillDownEvery is how often a broker outage is logged again while
	// it lasts; 0 logs only when the connection is lost and when it is
	// back. Reconnect tries themselves are not logged.
	StillDownEvery time.Duration
	Log            *slog.Logger
}

// Metadata headers on task messages.
const (
	hDeliveries = "x-turtles-deliveries" // earlier deliveries of this publish
	// hToken identifies one publish of a task: its copies (parked,
	// delayed, redelivered) carry it. turtles reads it no more since
	// dedupe left the broker (the reservation token is in the task); it
	// tells copies of one publish apart for people looking at the queues.
	hToken  = "x-turtles-token"
	hPool   = "x-turtles-pool"
	hReason = "x-turtles-reason"
	hTime   = "x-turtles-time" // unix nanoseconds of dead-lettering
	hLease  = "x-turtles-lease"
)

// maxPriority is the work queues' x-max-priority. Task priority p maps to
// 2p and a retried task to 2p+1, so that a task coming back goes ahead of
// fresh tasks of its priority (it is older) and behind higher priorities.
const maxPriority = 19

// delayLadder are the delayed-retry queues' TTLs. A Nack's delay is
// rounded up to the next step (capped at the last): a fixed set of queues
// that Stats can find, and that hold messages of one TTL each, so that
// RabbitMQ's expire-at-head-only rule never holds a short delay behind a
// long one.
var delayLadder = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour,
}

func delayStep(d time.Duration) time.Duration {
	for _, s := range delayLadder {
		if d <= s {
			return s
		}
	}
	return delayLadder[len(delayLadder)-1]
}

// names builds the topology's names from the prefix.
type names struct{ p string }

func (n names) workExchange() string   { return n.p + ".work" }
func (n names) eventsExchange() string { return n.p + ".events" }

// event routes an encoded event to the events exchange.
func (n names) event(msg amqp.Publishing) routed {
	return routed{n.eventsExchange(), "event", msg}
}
func (n names) work(pool string) string {
	return n.p + ".work." + pool
}
func (n names) delay(pool string, d time.Duration) string {
	return n.p + ".delay." + pool + "." + strconv.FormatInt(d.Milliseconds(), 10)
}
func (n names) parked(pool string, d time.Duration) string {
	return n.p + ".parked." + pool + "." + strconv.FormatInt(d.Milliseconds(), 10)
}
func (n names) reap() string           { return n.p + ".reap" }
func (n names) inbox() string          { return n.p + ".inbox" }
func (n names) cancelExchange() string { return n.p + ".cancel" }
func (n names) wakeExchange() string   { return n.p + ".wake" }
func (n names) cancels() string        { return n.p + ".cancels" }
func (n names) dead() string           { return n.p + ".dead" }
func (n names) events() string         { return n.p + ".events" }
func (n names) lease(id string) string { return n.p + ".lease." + id }
func (n names) done(id string) string  { return n.p + ".done." + id }

// queueSpec is a queue's declaration; declaring it again with the same
// arguments is a no-op, with others a channel error, so every process
// must build it from the same code.
type queueSpec struct {
	name      string
	args      amqp.Table
	exclusive bool
	bind      [2]string // exchange, routing key; empty for none
}

func (n names) workSpec(pool string) queueSpec {
	return queueSpec{name: n.work(pool), args: amqp.Table{"x-max-priority": int32(maxPriority)},
		bind: [2]string{n.workExchange(), pool}}
}

func (n names) delaySpec(pool string, d time.Duration) queueSpec {
	return queueSpec{name: n.delay(pool, d), args: amqp.Table{
		"x-message-ttl":             d.Milliseconds(),
		"x-dead-letter-exchange":    n.workExchange(),
		"x-dead-letter-routing-key": pool,
	}}
}

func (n names) parkedSpec(pool string, d time.Duration) queueSpec {
	return queueSpec{name: n.parked(pool, d), args: amqp.Table{
		"x-message-ttl":             d.Milliseconds(),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": n.reap(),
	}}
}

// doneSpec marks a parked lease as finished for the reaper.
func (n names) doneSpec(id string) queueSpec {
	return queueSpec{name: n.done(id), args: amqp.Table{"x-expires": int32((24 * time.Hour).Milliseconds())}}
}

func (n names) fixedSpecs() []queueSpec {
	return []queueSpec{
		{name: n.dead()},
		{name: n.reap()},
		{name: n.inbox()},
		{name: n.cancels(), args: amqp.Table{
			"x-max-length":  int32(cancelsKept),
			"x-message-ttl": int32(cancelTTL.Milliseconds()),
		}, bind: [2]string{n.cancelExchange(), ""}},
		{name: n.events(), args: amqp.Table{"x-single-active-consumer": true}, bind: [2]string{n.eventsExchange(), "event"}},
	}
}

func newToken() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand docs)
	return hex.EncodeToString(b[:])
}

// Redact returns rawURL without its password, for logs.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// link is one connection and its long-lived channels. When any of them
// closes, the whole link is dropped and the client dials a new one.
type link struct {
	conn *amqp.Connection
	pub  *amqp.Channel // confirm mode: every publish waits for the broker
	work []*workChan   // basic.get and the acks of held deliveries, in tx mode
	up   time.Time

	next atomic.Uint32 // round robin over work
	dead chan struct{}
	// why is the error that closed the connection or a channel first,
	// nil when turtles closed it; set before dead is closed.
	why error

	mu       sync.Mutex
	decl     *amqp.Channel // declarations; reopened after a channel error
	inbox    *amqp.Channel // inbox gets (Take); reopened after a channel error
	wake     *amqp.Channel // wake-ups (wake.go); reopened after a channel error
	declared map[string]bool
}

func (l *link) alive() bool {
	select {
	case <-l.dead:
		return false
	default:
	}
	// The connection is marked closed before its channels fail their
	// calls, and before l.dead is closed: an operation that failed with
	// the connection must see it dead, or it is not tried again.
	return !l.conn.IsClosed()
}

// broken reports whether l can no longer be used after an operation
// failed with err: it is dead, or err is its connection breaking. amqp091
// shuts a connection down in a goroutine of its own after a write to it
// failed, so IsClosed may not say so yet when the failed call returns;
// broken then closes it, so that the next link is a new connection.
func (l *link) broken(err error) bool {
	if !l.alive() {
		return true
	}
	if connBroke(err) {
		l.conn.Close()
		return true
	}
	return false
}

// connBroke reports whether err is a connection's socket failing. Only
// the socket's own errors: a context's deadline is a net.Error too, and a
// broker that is slow to answer has not broken the connection.
func connBroke(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// channel returns the declaration channel, reopened if an error closed it.
func (l *link) channel() (*amqp.Channel, error) {
	if l.decl != nil && !l.decl.IsClosed() {
		return l.decl, nil
	}
	ch, err := l.conn.Channel()
	if err != nil {
		return nil, err
	}
	l.decl = ch
	return ch, nil
}

// declare declares s once per connection.
func (l *link) declare(s queueSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.declared[s.name] {
		return nil
	}
	ch, err := l.channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(s.name, !s.exclusive, false, s.exclusive, false, s.args); err != nil {
		return fmt.Errorf("declare queue %s: %w", s.name, err)
	}
	if s.bind[0] != "" {
		if err := ch.QueueBind(s.name, s.bind[1], s.bind[0], false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", s.name, err)
		}
	}
	if !s.exclusive {
		l.declared[s.name] = true
	}
	return nil
}

// deleteQueue deletes a queue and forgets that it was declared.
func (l *link) deleteQueue(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.declared, name)
	ch, err := l.channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDelete(name, false, false, false); err != nil {
		return fmt.Errorf("delete queue %s: %w", name, err)
	}
	return nil
}

// exists reports whether queue name exists; a queue held exclusively by
// another connection exists. It uses a throwaway channel because a
// passive declare of a missing queue closes its channel.
func (l *link) exists(name string) (n int, ok bool, err error) {
	ch, err := l.conn.Channel()
	if err != nil {
		return 0, false, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	var ae *amqp.Error
	switch {
	case err == nil:
		return q.Messages, true, nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return 0, false, nil
	case errors.As(err, &ae) && ae.Code == amqp.ResourceLocked:
		return 0, true, nil
	}
	return 0, false, err
}

// workChans is how many transactional channels a link claims on, so
// that claimers in one process do not wait for each other's round trips.
const workChans = 4

// workChan is a channel in tx mode for basic.get and the acks of what it
// got; one call at a time, so that a get never lands inside another
// caller's transaction.
type workChan struct {
	mu sync.Mutex
	ch *amqp.Channel
}

// get fetches one message from queue name on a free work channel (or the
// next one, if none is free), which the message must be acked on.
func (l *link) get(name string) (amqp.Delivery, *workChan, bool, error) {
	start := int(l.next.Add(1))
	wc := l.work[start%len(l.work)]
	for i := range l.work {
		if c := l.work[(start+i)%len(l.work)]; c.mu.TryLock() {
			wc = c
			c.mu.Unlock()
			break
		}
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	m, ok, err := wc.ch.Get(name, false)
	return m, wc, ok, err
}

// ack acks a message fetched on wc, and commits.
func (wc *workChan) ack(tag uint64) error {
	return wc.commit(context.Background(), tag, nil)
}

// commit publishes pubs and acks tag in one transaction: all or nothing happens, whenever this process dies.
// What replaces a message (its final event, its next delivery, its dead
// letter) is never published without the message being acked, nor acked
// without it: either would run or report a task twice, or lose it. A
// commit returns once the broker has the publishes on disk.
func (wc *workChan) commit(ctx context.Context, tag uint64, pubs []routed) error {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if err := publishTx(ctx, wc.ch, pubs); err != nil {
		return err
	}
	if err := wc.ch.Ack(tag, false); err != nil {
		return err
	}
	return wc.ch.TxCommit()
}

// publishAll publishes pubs one by one and waits for each confirm: for
// what has no message to be acked with (parked tasks).
func (l *link) publishAll(ctx context.Context, pubs []routed) error {
	for _, p := range pubs {
		ok, err := l.publish(ctx, p.exchange, p.key, p.msg)
		if err == nil && !ok {
			err = fmt.Errorf("publish to %q/%q: broker refused the message", p.exchange, p.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// publish publishes msg and waits for the broker's confirm. ok is false
// when the broker refused it.
func (l *link) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) (ok bool, err error) {
	dc, err := l.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		return false, fmt.Errorf("publish to %q/%q: %w", exchange, key, err)
	}
	ok, err = dc.WaitContext(ctx)
	if err != nil {
		return false, fmt.Errorf("publish to %q/%q: wait for confirm: %w", exchange, key, err)
	}
	if !ok && !l.alive() || l.pub.IsClosed() {
		// A closing channel nacks what it had not confirmed.
		return false, fmt.Errorf("publish to %q/%q: connection lost before the confirm", exchange, key)
	}
	return ok, nil
}

// publishTx publishes pubs on ch, a channel in tx mode, for the caller's
// transaction.
func publishTx(ctx context.Context, ch *amqp.Channel, pubs []routed) error {
	for _, p := range pubs {
		if err := ch.PublishWithContext(ctx, p.exchange, p.key, false, false, p.msg); err != nil {
			return fmt.Errorf("publish to %q/%q: %w", p.exchange, p.key, err)
		}
	}
	return nil
}

// routed is a message and where it goes.
type routed struct {
	exchange, key string
	msg           amqp.Publishing
}

// client keeps one link up, redialling with backoff when it drops.
type client struct {
	cfg   Config
	n     names
	log   *slog.Logger
	done  chan struct{}
	once  sync.Once
	ended chan struct{} // closed when the dial loop has returned

	mu    sync.Mutex
	cur   *link
	ready chan struct{} // closed when cur is set
	onUp  func(*link)   // after every reconnect (not the first dial)
}

// validate returns an error naming the first required field that is
// unset or invalid.
func (cfg Config) validate() error {
	switch {
	case cfg.URL == "":
		return errors.New("amqp: no URL")
	case cfg.Prefix == "":
		return errors.New("amqp: no Prefix")
	case cfg.ParkAfter <= 0:
		return fmt.Errorf("amqp: ParkAfter is %s, want > 0", cfg.ParkAfter)
	}
	if err := cfg.Options.Validate(); err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	return nil
}

// newClient connects for a handle.
func newClient(cfg Config) (*client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = discard()
	}
	c := &client{cfg: cfg, n: names{cfg.Prefix}, log: cfg.Log.With("broker", Redact(cfg.URL)),
		done: make(chan struct{}), ended: make(chan struct{}), ready: make(chan struct{})}
	// The first dial fails loudly: a wrong URL or password is a
	// configuration error, not an outage to wait out.
	l, err := c.dial()
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(cfg.URL), queue.Unavailable(err))
	}
	c.set(l)
	go c.loop(l)
	return c, nil
}

func (c *client) dial() (*link, error) {
	props := amqp.NewConnectionProperties()
	if c.cfg.Name != "" {
		props.SetClientConnectionName(c.cfg.Name)
	}
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: props,
		Dial:       amqp.DefaultDial(10 * time.Second),
	})
	if err != nil {
		return nil, err
	}
	l := &link{conn: conn, up: time.Now(), dead: make(chan struct{}), declared: map[string]bool{}}
	fail := func(err error) (*link, error) {
		conn.Close()
		return nil, err
	}
	if l.pub, err = conn.Channel(); err != nil {
		return fail(err)
	}
	if err := l.pub.Confirm(false); err != nil {
		return fail(fmt.Errorf("confirm mode: %w", err))
	}
	// Transactions on the work channels let a bot emit a task's final
	// event and ack it in one step (delivery.AckWithTasks).
	for range workChans {
		ch, err := conn.Channel()
		if err != nil {
			return fail(err)
		}
		if err := ch.Tx(); err != nil {
			return fail(fmt.Errorf("tx mode: %w", err))
		}
		l.work = append(l.work, &workChan{ch: ch})
	}
	ch, err := l.channel()
	if err != nil {
		return fail(err)
	}
	for ex, kind := range map[string]string{c.n.workExchange(): amqp.ExchangeDirect,
		c.n.eventsExchange(): amqp.ExchangeDirect, c.n.cancelExchange(): amqp.ExchangeFanout,
		c.n.wakeExchange(): amqp.ExchangeFanout} {
		if err := ch.ExchangeDeclare(ex, kind, true, false, false, false, nil); err != nil {
			return fail(fmt.Errorf("declare exchange %s: %w", ex, err))
		}
	}
	for _, s := range c.n.fixedSpecs() {
		if err := l.declare(s); err != nil {
			return fail(err)
		}
	}
	watch := []chan *amqp.Error{
		conn.NotifyClose(make(chan *amqp.Error, 1)),
		l.pub.NotifyClose(make(chan *amqp.Error, 1)),
	}
	for _, wc := range l.work {
		watch = append(watch, wc.ch.NotifyClose(make(chan *amqp.Error, 1)))
	}
	for _, w := range watch {
		go func() {
			// A *amqp.Error, or nil (no error) when the channel closed
			// without one: a nil pointer is not a nil error.
			var why error
			if err := <-w; err != nil {
				why = err
			}
			conn.Close()
			l.mu.Lock()
			defer l.mu.Unlock()
			select {
			case <-l.dead:
			default:
				l.why = why
				close(l.dead)
			}
		}()
	}
	return l, nil
}

// cause says why l died, for the log; l must be dead.
func (l *link) cause() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.why == nil {
		return "connection closed by turtles"
	}
	return l.why.Error()
}

func (c *client) set(l *link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = l
	close(c.ready)
}

// loop redials whenever the current link dies, until Close. It logs
// state changes, not tries: the connection lost (with the cause), still
// down every StillDownEvery, and back (with how long it was down).
func (c *client) loop(l *link) {
	defer close(c.ended)
	for {
		select {
		case <-c.done:
			l.conn.Close()
			return
		case <-l.dead:
		}
		c.mu.Lock()
		c.cur, c.ready = nil, make(chan struct{})
		c.mu.Unlock()
		lost := time.Now()
		c.log.Warn("broker connection lost; reconnecting", "cause", l.cause())
		var tries int
		if l, tries = c.redial(lost); l == nil {
			return
		}
		c.log.Info("broker connection back", "down_for", time.Since(lost).Round(time.Millisecond), "tries", tries)
		if c.onUp != nil {
			c.onUp(l)
		}
		c.set(l)
	}
}

// redial dials with backoff (100 ms doubling to 10 s) until a dial
// succeeds, and returns the link and the number of tries; nil when the
// client is closed first.
func (c *client) redial(lost time.Time) (*link, int) {
	var still <-chan time.Time
	if c.cfg.StillDownEvery > 0 {
		t := time.NewTicker(c.cfg.StillDownEvery)
		defer t.Stop()
		still = t.C
	}
	backoff := 100 * time.Millisecond
	for tries := 1; ; tries++ {
		l, err := c.dial()
		if err == nil {
			return l, tries
		}
		wait := time.NewTimer(backoff)
		for waiting := true; waiting; {
			select {
			case <-c.done:
				wait.Stop()
				return nil, tries
			case <-still:
				c.log.Warn("broker still down", "down_for", time.Since(lost).Round(100*time.Millisecond), "tries", tries, "err", err)
			case <-wait.C:
				waiting = false
			}
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// link returns the current link, waiting for a reconnect if there is none.
func (c *client) link(ctx context.Context) (*link, error) {
	for {
		c.mu.Lock()
		l, ready := c.cur, c.ready
		c.mu.Unlock()
		if c.closed() {
			return nil, queue.ErrClosed
		}
		if l != nil && l.alive() {
			return l, nil
		}
		select {
		case <-ready:
		case <-c.done:
			return nil, queue.ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the broker: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond): // the link died before the loop noticed
		}
	}
}

// untilClosed returns a context that ends when the client is closed, for
// a handle's background loops.
func (c *client) untilClosed() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.done
		cancel()
	}()
	return ctx
}

func (c *client) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// retry runs op on the current link until it succeeds, ctx ends or the
// client is closed; it retries only when the link died under op, so that
// an outage is waited out and a broker error is returned. It returns
// when ctx ends even if op is still waiting for the broker (see try).
// Its errors are ErrClosed or wrap ErrUnavailable.
func (c *client) retry(ctx context.Context, op func(l *link) error) error {
	for {
		l, err := c.link(ctx)
		if err != nil {
			if errors.Is(err, queue.ErrClosed) {
				return err
			}
			return queue.Unavailable(err)
		}
		err = try(ctx, l, op)
		if err == nil || !l.broken(err) || c.closed() {
			if err != nil && c.closed() {
				return queue.ErrClosed
			}
			return queue.Unavailable(err)
		}
		if ctx.Err() != nil {
			return queue.Unavailable(fmt.Errorf("%w (while the broker connection was down)", err))
		}
		select {
		case <-c.done:
			return queue.ErrClosed
		case <-ctx.Done():
			return queue.Unavailable(err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// try runs op on l and returns its error, or ctx's once ctx ends first.
// Most channel calls (declarations, gets, commits) take no context: on a
// broker that stopped answering without closing the connection (a cut
// network, a frozen node) they wait until the missed heartbeats end it,
// 30 s, far past a webhook's deadline. op then goes on in the background
// until the broker answers or the link dies, and its outcome is unknown
// to the caller, as that of a publish whose confirm was lost with the
// connection: every caller already handles that (a token per publish,
// transactions for acks). A caller must not touch what op writes after
// try returned ctx's error.
func try(ctx context.Context, l *link, op func(l *link) error) error {
	if ctx.Done() == nil {
		return op(l)
	}
	done := make(chan error, 1)
	go func() { done <- op(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the broker did not answer: %w", context.Cause(ctx))
	}
}

func (c *client) close() error {
	err := queue.ErrClosed
	c.once.Do(func() {
		close(c.done)
		<-c.ended
		err = nil
	})
	return err
}
