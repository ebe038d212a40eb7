package forgetest

import (
	"sync"
	"testing"
	"time"
)

// StatusKey is where a commit status belongs: repository (or project),
// commit and context (or name). A newer status of a key replaces the older
// one on the forge's page.
type StatusKey struct{ Repo, SHA, Context string }

// Statuses is the list of commit statuses a fake API accepted, in arrival
// order, for the fake's endpoints and for tests to wait on. It is safe for
// concurrent use.
type Statuses[S any] struct {
	key func(S) StatusKey

	mu   sync.Mutex
	list []S
	// changed is closed and replaced whenever a status arrives, so that
	// Wait wakes up without polling on a timer.
	changed chan struct{}
}

// NewStatuses makes an empty list; key tells where a status belongs.
func NewStatuses[S any](key func(S) StatusKey) *Statuses[S] {
	return &Statuses[S]{key: key, changed: make(chan struct{})}
}

// Add appends st unless refuse, called with the latest status of st's key
// (ok false if none), returns true; both happen under one lock. id is
// st's number, 1 for the first status accepted.
func (l *Statuses[S]) Add(st S, refuse func(latest S, ok bool) bool) (id int64, added bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if refuse != nil {
		if latest, ok := l.latestLocked(l.key(st)); refuse(latest, ok) {
			return 0, false
		}
	}
	l.list = append(l.list, st)
	close(l.changed)
	l.changed = make(chan struct{})
	return int64(len(l.list)), true
}

// All returns the accepted statuses in arrival order.
func (l *Statuses[S]) All() []S {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]S(nil), l.list...)
}

// Latest returns the last accepted status of k: what the forge shows.
func (l *Statuses[S]) Latest(k StatusKey) (S, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latestLocked(k)
}

func (l *Statuses[S]) latestLocked(k StatusKey) (S, bool) {
	for i := len(l.list) - 1; i >= 0; i-- {
		if l.key(l.list[i]) == k {
			return l.list[i], true
		}
	}
	var zero S
	return zero, false
}

// Numbered is a status with its id (see Add).
type Numbered[S any] struct {
	ID     int64
	Status S
}

// Current returns the latest status of every context of repo@sha, in the
// order the contexts first appeared: what the forge's status API lists.
func (l *Statuses[S]) Current(repo, sha string) []Numbered[S] {
	l.mu.Lock()
	defer l.mu.Unlock()
	latest := map[string]int{}
	var order []string
	for i, st := range l.list {
		k := l.key(st)
		if k.Repo != repo || k.SHA != sha {
			continue
		}
		if _, ok := latest[k.Context]; !ok {
			order = append(order, k.Context)
		}
		latest[k.Context] = i
	}
	out := make([]Numbered[S], 0, len(order))
	for _, c := range order {
		i := latest[c]
		out = append(out, Numbered[S]{ID: int64(i + 1), Status: l.list[i]})
	}
	return out
}

// Wait waits until at least n statuses arrived and returns them all; the
// test fails if they do not arrive within timeout.
func (l *Statuses[S]) Wait(t testing.TB, n int, timeout time.Duration) []S {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got, changed := len(l.list), l.changed
		l.mu.Unlock()
		if got >= n {
			return l.All()
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("got %d statuses within %s, want %d: %+v", got, timeout, n, l.All())
			return nil
		}
	}
}
