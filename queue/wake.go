package queue

import "sync"

// Wakeups lets a backend's waiters (Claim, Receive) sleep until there may
// be something for them in this process, keyed by pool or topic. A waiter
// takes the channel BEFORE looking, then sleeps on it only if it found
// nothing: a Wake between the look and the sleep is not missed.
// The zero value is ready to use.
type Wakeups struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// Chan returns the channel that is closed at the next Wake(key).
func (w *Wakeups) Chan(key string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.chans == nil {
		w.chans = map[string]chan struct{}{}
	}
	c, ok := w.chans[key]
	if !ok {
		c = make(chan struct{})
		w.chans[key] = c
	}
	return c
}

// Wake wakes everyone waiting on key.
func (w *Wakeups) Wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.chans[key]; ok {
		close(c)
		delete(w.chans, key)
	}
}
