package hook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"
)

// Budget bounds the bytes of webhook bodies held in memory at once, across
// every request of every receiver that shares it. Bodies are charged as
// they arrive, so a stranger who trickles a body that claims 25 MB holds
// only what was sent; and a request that cannot get room within the
// budget's wait is answered 503, so the forge delivers it again later,
// instead of the process growing until it is killed.
//
// A Budget is safe for concurrent use; make one per process with NewBudget.
type Budget struct {
	size int64
	wait time.Duration

	mu   sync.Mutex
	used int64
	// freed is closed, and replaced, whenever bytes are given back, to
	// wake every waiter.
	freed chan struct{}
}

// NewBudget returns a budget of size bytes; a request waits at most wait
// for room before it is turned away.
func NewBudget(size int64, wait time.Duration) (*Budget, error) {
	switch {
	case size < maxChunk:
		return nil, fmt.Errorf("webhook body budget: %d bytes is less than one %d-byte chunk", size, maxChunk)
	case wait < 0:
		return nil, fmt.Errorf("webhook body budget: negative wait %s", wait)
	}
	return &Budget{size: size, wait: wait, freed: make(chan struct{})}, nil
}

// InFlight is the number of body bytes held now.
func (b *Budget) InFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// take charges n bytes, waiting for room until the budget's wait is over
// or ctx ends. It reports whether the bytes were charged.
func (b *Budget) take(ctx context.Context, n int64) bool {
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if b.used+n <= b.size {
			b.used += n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(b.wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-freed:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// give returns n charged bytes.
func (b *Budget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
}

// Bodies are read and charged in chunks that grow with what was received,
// from minChunk to maxChunk: a trickled body holds little more than what
// was sent, and a real 25 MB payload takes about a hundred charges.
const (
	minChunk = 4 << 10
	maxChunk = 256 << 10
)

// Why reading a body stopped, beyond the reader's own errors.
var (
	errTooLarge = errors.New("body larger than the limit")
	errNoRoom   = errors.New("no room for the body: too many bodies in flight")
)

// body is a request body read in chunks charged to a budget, with its
// SHA-256 and, for GitHub, its HMAC computed on the way in. Nothing else
// looks at the bytes before the signature is checked.
type body struct {
	chunks [][]byte
	n      int64
	sum    hash.Hash // SHA-256: the replay key
	mac    hash.Hash // HMAC-SHA256 under the secret; nil for GitLab
	budget *Budget
	held   int64
}

// readBody reads r into charged chunks, at most limit bytes. declared is the
// request's Content-Length (-1 when unknown): a body that says it is too
// large is refused before any of it is read. Call release when done with
// the body, whatever the error.
func readBody(ctx context.Context, r io.Reader, declared, limit int64, budget *Budget, secret []byte) (*body, error) {
	b := &body{sum: sha256.New(), budget: budget}
	if secret != nil {
		b.mac = hmac.New(sha256.New, secret)
	}
	if declared > limit {
		return b, errTooLarge
	}
	for {
		// Charge before allocating, so what the budget counts is what
		// is held. The last chunk is only as large as the rest allows,
		// plus one byte to notice a body that goes on.
		size := min(max(b.n, minChunk), maxChunk, limit-b.n+1)
		if declared >= 0 {
			size = min(size, declared-b.n+1)
		}
		if !budget.take(ctx, size) {
			return b, errNoRoom
		}
		b.held += size
		chunk := make([]byte, size)
		n, err := io.ReadFull(r, chunk)
		chunk = chunk[:n]
		b.chunks = append(b.chunks, chunk)
		b.n += int64(n)
		b.sum.Write(chunk)
		if b.mac != nil {
			b.mac.Write(chunk)
		}
		switch {
		case b.n > limit:
			return b, errTooLarge
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return b, nil
		case err != nil:
			return b, fmt.Errorf("read body after %d bytes: %w", b.n, err)
		}
	}
}

// signed reports whether mac is the body's HMAC under the secret.
func (b *body) signed(mac []byte) bool {
	return b.mac != nil && hmac.Equal(mac, b.mac.Sum(nil))
}

// bytes returns the body in one slice; only for a verified body, since it
// holds a second copy for a moment.
func (b *body) bytes() []byte {
	out := make([]byte, 0, b.n)
	for _, c := range b.chunks {
		out = append(out, c...)
	}
	return out
}

// bodyKey starts a body's key in the delivery log. A delivery ID that
// starts with it is refused, so that no ID can stand for a body.
const bodyKey = "sha256:"

// key is the body's replay key: its SHA-256 in hex, after prefix.
func (b *body) key(prefix string) string {
	return fmt.Sprintf("%s%s%x", prefix, bodyKey, b.sum.Sum(nil))
}

// release gives the body's bytes back to the budget.
func (b *body) release() {
	b.chunks = nil
	b.budget.give(b.held)
	b.held = 0
}
