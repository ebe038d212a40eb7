package amqp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Dedupe by task key.
//
// A task key's lock is a marker message (the key, and the token of one
// publish) in a lock queue that holds at most one ready marker and refuses
// (nacks) the publish of a second, atomically in the broker. The lock
// queue is the key's own (Config.LockSlots 0, the default: exact, but a
// queue is created per task, the broker's slowest operation) or one of
// LockSlots shared slots chosen by hashing the key (created once; keys
// that hash to the same slot wait for each other). Markers are transient,
// so they cost no disk write; a broker restart drops them, and claimers
// take them again (below).
//
// Publish sends the task (carrying its token) and then the marker on the
// same channel, and waits for both confirms: a marker is never in a lock
// queue without its task having been routed first, so a publisher killed
// midway leaves at worst a task without a lock, never a lock without a
// task. A refused marker means the lock is held: by the same key (the key
// is queued or running: Publish returns ErrDuplicate and records the token
// as withdrawn, so that its already queued copy is dropped), or, in a
// shared slot, by another key (a collision: the task stays queued without
// a lock).
//
// Before running a task, the claimer looks into its lock queue:
//   - its own marker and no other of the key: run it;
//   - another marker of the key: another copy is live; drop this one;
//   - none of the key: if the token was withdrawn, drop the task; else take
//     the lock now if the queue is empty (after a broker restart, or a
//     publisher that died between task and marker), or, when another key
//     holds the slot, put the task back for a second, not counted.
//
// The marker is removed when the task is acked (in the same transaction
// as the ack and the final event), dead-lettered or cancelled; a Nack,
// lease expiry or redelivery keeps it, since the task is still live.
const (
	hToken = "x-turtles-token" // the publish's token on task messages

	// markerTTL bounds the life of a marker that was never removed (its
	// remover failed); a claimer takes the lock again if it is needed.
	markerTTL = 7 * 24 * time.Hour
	// slotTTL removes a lock queue unused for that long (a key's own
	// queue, once its task is done).
	slotTTL = 7 * 24 * time.Hour
	// withdrawnTTL is how long a withdrawn token is remembered.
	withdrawnTTL = 7 * 24 * time.Hour
)

// lockRef is the lock a task message holds or should hold.
type lockRef struct {
	slot  string // queue name; "" for none (NoDedupe, or a body that is no task)
	key   string
	token string
}

func (n names) slotOf(key string, slots int) string {
	sum := sha256.Sum256([]byte(key))
	if slots <= 0 {
		return n.p + ".key." + hex.EncodeToString(sum[:16])
	}
	return n.p + ".lock." + strconv.Itoa(int(binary.BigEndian.Uint32(sum[:4])%uint32(slots)))
}

func (n names) withdrawn(token string) string { return n.p + ".withdrawn." + token }

func slotSpec(name string) queueSpec {
	return queueSpec{name: name, args: amqp.Table{
		"x-max-length": int32(1),
		"x-overflow":   "reject-publish",
		"x-expires":    int32(slotTTL.Milliseconds()),
	}}
}

func (n names) withdrawnSpec(token string) queueSpec {
	return queueSpec{name: n.withdrawn(token), args: amqp.Table{"x-expires": int32(withdrawnTTL.Milliseconds())}}
}

func (r lockRef) marker() amqp.Publishing {
	return amqp.Publishing{
		DeliveryMode: amqp.Transient,
		MessageId:    r.token,
		Expiration:   strconv.FormatInt(markerTTL.Milliseconds(), 10),
		Body:         []byte(r.key),
	}
}

// lockState is what a slot says about one task message.
type lockState int

const (
	lockOwn       lockState = iota // the task's own marker, and no other of its key
	lockOther                      // another marker of the key: another copy is live
	lockNone                       // no marker of the key; the slot is empty
	lockCollision                  // no marker of the key; another key holds the slot
)

// slotLock is a channel for looking into slots; one caller at a time,
// since a look takes the markers and puts them back. A link has one per
// work channel, so that claimers do not wait for each other's looks.
type slotLock struct {
	mu sync.Mutex
	ch *amqp.Channel
}

// looker returns a free slot channel (or the next one, if none is free),
// locked: the caller unlocks it.
func (l *link) looker() *slotLock {
	start := int(l.next.Add(1))
	for i := range l.slots {
		if s := &l.slots[(start+i)%len(l.slots)]; s.mu.TryLock() {
			return s
		}
	}
	s := &l.slots[start%len(l.slots)]
	s.mu.Lock()
	return s
}

func (s *slotLock) channel(conn *amqp.Connection) (*amqp.Channel, error) {
	if s.ch != nil && !s.ch.IsClosed() {
		return s.ch, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	s.ch = ch
	return ch, nil
}

// takeMarkers gets every marker of slot unacked (a slot rarely holds more
// than one; a look by someone else can briefly let a second in) and calls
// settle with each, which must ack or reject it.
func takeMarkers(ch *amqp.Channel, slot string, settle func(m amqp.Delivery) error) error {
	for range 16 {
		m, ok, err := ch.Get(slot, false)
		if err != nil {
			return fmt.Errorf("look into lock slot %s: %w", slot, err)
		}
		if !ok {
			return nil
		}
		if err := settle(m); err != nil {
			return err
		}
		if m.MessageCount == 0 {
			return nil
		}
	}
	return nil
}

// look reports the state of r's slot for r, leaving the slot as it was.
// If drop is set, r's own markers are removed instead of put back.
func (l *link) look(r lockRef, drop bool) (lockState, error) {
	s := l.looker()
	defer s.mu.Unlock()
	if !drop {
		return l.lookOnce(s, r, false)
	}
	for range releaseTries - 1 {
		st, err := l.lookOnce(s, r, true)
		if err != nil || st == lockOwn {
			return st, err
		}
		time.Sleep(releasePause)
	}
	return l.lookOnce(s, r, true)
}

func (l *link) lookOnce(s *slotLock, r lockRef, drop bool) (lockState, error) {
	ch, err := s.channel(l.conn)
	if err != nil {
		return 0, err
	}
	var own, other, some bool
	var held []amqp.Delivery
	err = takeMarkers(ch, r.slot, func(m amqp.Delivery) error {
		some = true
		switch {
		case string(m.Body) == r.key && m.MessageId == r.token:
			own = true
			if drop {
				return m.Ack(false)
			}
		case string(m.Body) == r.key:
			other = true
		}
		held = append(held, m)
		return nil
	})
	for _, m := range held {
		if e := m.Reject(true); e != nil && err == nil {
			err = e
		}
	}
	if err == nil && len(held) > 0 {
		err = settled(ch, r.slot)
	}
	switch {
	case err != nil:
		return 0, err
	case other:
		return lockOther, nil
	case own:
		return lockOwn, nil
	case some:
		return lockCollision, nil
	}
	return lockNone, nil
}

// settled returns once the broker has put back what ch rejected into
// slot. A reject has no reply: without this, a publish on another channel
// could reach the slot before the marker is back, find it empty, and be
// let in beside it, so that a duplicate would not be refused. The slot's
// queue handles a channel's requests in order, and a passive declare asks
// the queue itself, so its reply comes after the requeue.
func settled(ch *amqp.Channel, slot string) error {
	if _, err := ch.QueueDeclarePassive(slot, false, false, false, false, nil); err != nil {
		return fmt.Errorf("look into lock slot %s: %w", slot, err)
	}
	return nil
}

// releaseTx removes r's marker from its slot on the work channel, whose
// transaction the caller commits: the marker goes with the task's ack.
// Someone looking into the slot holds its markers for a moment (and puts
// them back asynchronously, possibly on another channel), so a missing
// marker is looked for a few times. Markers of others that it took are
// rejected back in the transaction: putBack reports that there were some,
// so that the caller waits for them (settled) after the commit. wc.mu is
// held.
func (wc *workChan) releaseTx(r lockRef) (putBack bool, err error) {
	if r.slot == "" {
		return false, nil
	}
	var others []amqp.Delivery
	for try := range releaseTries {
		found := false
		err = takeMarkers(wc.ch, r.slot, func(m amqp.Delivery) error {
			if string(m.Body) == r.key && m.MessageId == r.token {
				found = true
				return wc.ch.Ack(m.DeliveryTag, false)
			}
			others = append(others, m)
			return nil
		})
		if found || err != nil || try == releaseTries-1 {
			break
		}
		if try > 0 { // the first retry is a round trip later already
			time.Sleep(releasePause)
		}
	}
	for _, m := range others {
		if e := wc.ch.Reject(m.DeliveryTag, true); e != nil && err == nil {
			err = e
		}
	}
	return len(others) > 0, err
}

// How often and how far apart a release looks for a marker it misses.
const (
	releaseTries = 5
	releasePause = 20 * time.Millisecond
)

// lockTask resolves the lock of a claimed task message (see the top of
// this file): run reports whether to run it now, wait whether to put it
// back for later (its slot is held by another key); held is the lock it
// holds, zero when it runs without (no dedupe).
func (q *Queue) lockTask(ctx context.Context, l *link, r lockRef) (run, wait bool, held lockRef, err error) {
	if r.slot == "" {
		return true, false, lockRef{}, nil
	}
	if err := l.declare(slotSpec(r.slot)); err != nil {
		return false, false, lockRef{}, err
	}
	for range 3 {
		st, err := l.look(r, false)
		if err != nil {
			return false, false, lockRef{}, err
		}
		switch st {
		case lockOwn:
			return true, false, r, nil
		case lockOther:
			if _, err := l.lookOnceLocked(r); err != nil { // drop our own marker, if any
				return false, false, lockRef{}, err
			}
			return false, false, lockRef{}, nil
		}
		_, withdrawn, err := l.exists(q.n.withdrawn(r.token))
		if err != nil {
			return false, false, lockRef{}, err
		}
		if withdrawn {
			if err := l.deleteQueue(q.n.withdrawn(r.token)); err != nil {
				q.c.log.Warn("dropping a withdrawn token's record failed; it expires", "err", err)
			}
			return false, false, lockRef{}, nil
		}
		if st == lockCollision {
			return false, true, lockRef{}, nil
		}
		ok, err := l.publish(ctx, "", r.slot, r.marker())
		if err != nil {
			return false, false, lockRef{}, err
		}
		if ok {
			return true, false, r, nil
		}
	}
	return false, true, lockRef{}, nil // the slot keeps changing hands
}

// lookOnceLocked is lookOnce with drop, taking the slot channel's lock.
func (l *link) lookOnceLocked(r lockRef) (lockState, error) {
	s := l.looker()
	defer s.mu.Unlock()
	return l.lookOnce(s, r, true)
}

// unlock removes r's marker outside a transaction: for tasks that end
// while parked or dead-lettered. A failure leaves the marker until its
// TTL; it is logged, not returned, because the task itself is done.
func (q *Queue) unlock(r lockRef) {
	if r.slot == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := q.c.retry(ctx, func(l *link) error {
		if err := l.declare(slotSpec(r.slot)); err != nil {
			return err
		}
		_, err := l.look(r, true)
		return err
	})
	if err != nil {
		q.c.log.Error("unlock task key; it stays locked until the marker expires", "key", r.key, "err", err)
	}
}

// DeclareLocks creates every lock slot now rather than on first use, so
// that no publish pays for a queue creation (benchmarks; a fresh broker).
func (q *Queue) DeclareLocks(ctx context.Context) error {
	if q.c.cfg.LockSlots <= 0 {
		return nil // a queue per key, made by its publish
	}
	return q.c.retry(ctx, func(l *link) error {
		seen := map[string]bool{}
		for i := range q.c.cfg.LockSlots {
			name := q.n.p + ".lock." + strconv.Itoa(i)
			if seen[name] {
				continue
			}
			seen[name] = true
			if err := l.declare(slotSpec(name)); err != nil {
				return err
			}
		}
		return nil
	})
}

// slotWait is how long a task whose slot another key holds waits before
// it is claimed again (rounded up to the delay ladder).
const slotWait = time.Second
