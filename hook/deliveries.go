package hook

import (
	"context"
	"sync"
)

// keyLock lets one request at a time through per key. The zero value is
// ready to use.
type keyLock struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed on unlock
}

// lock waits until no one else holds key, or ctx ends (ok false), and
// returns the function that lets the next one through.
func (l *keyLock) lock(ctx context.Context, key string) (unlock func(), ok bool) {
	for {
		l.mu.Lock()
		busy, taken := l.held[key]
		if !taken {
			if l.held == nil {
				l.held = map[string]chan struct{}{}
			}
			done := make(chan struct{})
			l.held[key] = done
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				l.mu.Unlock()
				close(done)
			}, true
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// DeliveryLog remembers which webhook deliveries were handled, so that a
// delivery sent again (GitHub's "Redeliver", or a retry after a timeout we
// did answer) does not publish its tasks a second time.
//
// The receiver records two keys per delivery: the forge's delivery ID and
// "sha256:<hex>" of the body ("gitlab:" before either for GitLab). The ID
// is not signed, so only the body's hash stops a stranger who replays a
// payload under a new ID.
//
// The receiver asks Seen before publishing and calls FirstDelivery only
// after the tasks were published, so that a delivery whose publish failed
// is handled in full when it is sent again.
type DeliveryLog interface {
	// Seen reports whether id was recorded by FirstDelivery. It records
	// nothing. An error means the log could not be read.
	Seen(ctx context.Context, id string) (bool, error)
	// FirstDelivery records id and reports whether it was new: false when
	// it had been recorded before. An error means it was not recorded:
	// the receiver answers 503, so that the forge sends it again.
	FirstDelivery(ctx context.Context, id string) (bool, error)
}

// MemoryDeliveries is a DeliveryLog in memory, for tests and tools. It
// forgets everything on restart and never forgets anything before that.
// The zero value is ready to use; it is safe for concurrent use.
type MemoryDeliveries struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Seen implements DeliveryLog.
func (m *MemoryDeliveries) Seen(ctx context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen[id], nil
}

// FirstDelivery implements DeliveryLog.
func (m *MemoryDeliveries) FirstDelivery(ctx context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[id] {
		return false, nil
	}
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	m.seen[id] = true
	return true, nil
}
