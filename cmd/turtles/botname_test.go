package main

import (
	"strings"
	"testing"
)

func TestDefaultBotName(t *testing.T) {
	tests := []struct {
		name       string
		host, a, b string
		same       bool
	}{
		{name: "two bots of one host", host: "ci1", a: "/srv/bot1/work", b: "/srv/bot2/work", same: false},
		{name: "one bot restarted", host: "ci1", a: "/srv/bot1/work", b: "/srv/bot1/work", same: true},
		{name: "a relative work dir is the absolute one", host: "ci1", a: "work", b: "./work", same: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := defaultBotName(tt.host, tt.a), defaultBotName(tt.host, tt.b)
			if (a == b) != tt.same {
				t.Errorf("names %q and %q: same = %v, want %v", a, b, a == b, tt.same)
			}
			if !strings.HasPrefix(a, tt.host+"-") {
				t.Errorf("name %q does not start with the host name", a)
			}
		})
	}
	if got := defaultBotName("", "/w"); !strings.HasPrefix(got, "bot-") {
		t.Errorf("name without a host = %q, want bot-...", got)
	}
}
