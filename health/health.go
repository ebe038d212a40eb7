// Package health is a liveness check fed by heartbeats: a process records
// each heartbeat that got through (a bot's, to the state database), and
// its health endpoint answers 503 once the last good one is older than a
// limit, so that Kubernetes' liveness probe (or anything else that watches
// it) restarts a process that is wedged or cut off from what it needs. It
// knows nothing of what a beat is: cmd/turtles decides that, and the
// limit.
//
// Only cmd/turtles imports it.
package health

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Beats records heartbeats and answers whether they are recent.
type Beats struct {
	clock clockwork.Clock
	stale time.Duration

	mu   sync.Mutex
	last time.Time // the last good beat; the start counts as one
	err  error     // why the beats since last failed, nil if none did
}

// New returns Beats that count the process healthy until stale has passed
// without a good beat. The start counts as a beat: a process has stale to
// make its first.
func New(clock clockwork.Clock, stale time.Duration) *Beats {
	return &Beats{clock: clock, stale: stale, last: clock.Now()}
}

// Beat records a good heartbeat.
func (b *Beats) Beat() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.err = b.clock.Now(), nil
}

// Miss records a heartbeat that failed, and why; the process stays
// healthy until stale has passed since the last good one.
func (b *Beats) Miss(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

// Check returns nil while the last good beat is recent, else an error that
// says how long ago it was and why the beats since failed.
func (b *Beats) Check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	age := b.clock.Since(b.last)
	if age <= b.stale {
		return nil
	}
	if b.err != nil {
		return fmt.Errorf("no heartbeat for %s (more than %s): the last failed: %w", age.Round(time.Second), b.stale, b.err)
	}
	return fmt.Errorf("no heartbeat for %s (more than %s)", age.Round(time.Second), b.stale)
}

// ServeHTTP answers 200 "ok" while the beats are recent, else 503 with
// what Check says.
func (b *Beats) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := b.Check(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}
