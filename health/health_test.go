package health

import (
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
