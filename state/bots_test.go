package state

import (
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
)

func TestBotAlive(t *testing.T) {
	seen := time.Date(2024, 5, 1, 16, 2, 0, 0, time.UTC)
	tests := []struct {
		name  string
		every time.Duration
		now   time.Time
		want  bool
	}{
		{"just beat", 5 * time.Second, seen, true},
		{"two beats missed", 5 * time.Second, seen.Add(10 * time.Second), true},
		{"three beats missed, to the millisecond", 5 * time.Second, seen.Add(15 * time.Second), true},
		{"more than three beats missed", 5 * time.Second, seen.Add(15*time.Second + time.Millisecond), false},
		{"a slow bot, 20 s late", time.Minute, seen.Add(80 * time.Second), true},
		{"no heartbeat period", 0, seen, false},
	}
	for _, tt := range tests {
		b := Bot{Name: "b", Pool: "p", Seen: seen, Every: turtles.Duration(tt.every)}
		if got := b.Alive(tt.now); got != tt.want {
			t.Errorf("%s: Alive(seen + %s) with period %s = %v, want %v", tt.name, tt.now.Sub(seen), tt.every, got, tt.want)
		}
	}
}
