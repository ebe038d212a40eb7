package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// get asks b's endpoint and returns the status and body.
func get(b *Beats) (int, string) {
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return rec.Code, rec.Body.String()
}

// TestBeats: healthy from the start for the limit, unhealthy once the
// limit passes without a beat, healthy again at the next beat; a failed
// beat does not reset the age and its cause is in the answer.
func TestBeats(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := New(clock, 30*time.Second)
	steps := []struct {
		name     string
		do       func()
		code     int
		contains string
	}{
		{"start", func() {}, 200, "ok"},
		{"within the limit", func() { clock.Advance(30 * time.Second) }, 200, "ok"},
		{"past the limit", func() { clock.Advance(time.Second) }, 503, "no heartbeat for 31s"},
		{"a beat", func() { b.Beat() }, 200, "ok"},
		{"a miss within the limit", func() { clock.Advance(20 * time.Second); b.Miss(errors.New("database down")) }, 200, "ok"},
		{"misses past the limit", func() { clock.Advance(20 * time.Second); b.Miss(errors.New("database down")) }, 503, "the last failed: database down"},
		{"a beat again", func() { b.Beat(); clock.Advance(29 * time.Second) }, 200, "ok"},
	}
	for _, s := range steps {
		s.do()
		code, body := get(b)
		if code != s.code || !strings.Contains(body, s.contains) {
			t.Errorf("%s: %d %q, want %d with %q", s.name, code, body, s.code, s.contains)
		}
	}
}

// TestRun: Run beats at once and every period; a beat that hangs is cut
// at the period and counts as a miss, so the check fails once the limit
// passes without a good beat, and passes again after one.
func TestRun(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := New(clock, 25*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan chan error)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx, 10*time.Second, func(ctx context.Context) error {
			reply := make(chan error)
			calls <- reply
			select {
			case err := <-reply:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// Every beat hangs. Each is sent after the one before was recorded,
	// and after its own timeout and the ticker exist.
	reply := <-calls
	for _, wantHealthy := range []bool{true, true, false} {
		clock.BlockUntilContext(ctx, 2) // the ticker and the beat's timeout
		clock.Advance(10 * time.Second)
		reply = <-calls
		// 10s and 20s since the start are within the limit; 30s is not.
		if err := b.Check(); (err == nil) != wantHealthy {
			t.Errorf("Check() = %v, want healthy %v", err, wantHealthy)
		} else if err != nil && !strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("Check() = %v, want the hung beat's cause", err)
		}
	}
	// A good beat makes it healthy again.
	reply <- nil
	deadline := time.Now().Add(10 * time.Second)
	for b.Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still unhealthy after a good beat: %v", b.Check())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
