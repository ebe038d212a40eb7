package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

// TestRestrict plays a stranger's .turtles.yaml asking for more than
// it may.
func TestRestrict(t *testing.T) {
	p := Policy{UntrustedPools: []string{"public", "kvm"}, HostPools: []string{"sacrificial"},
		MaxTimeout: time.Hour, MaxPriority: 4, MaxCPUs: 4, MaxMemoryMB: 8192}
	vm := turtles.Task{Pool: "public", Image: "debian-12", Mode: turtles.ModeGuest}
	with := func(f func(*turtles.Task)) turtles.Task { x := vm; f(&x); return x }
	tests := []struct {
		name   string
		policy Policy
		in     turtles.Task
		want   turtles.Task
		reason string // a substring; "" runs
	}{
		{name: "trusted keeps secrets, pool and host mode", policy: p,
			in:   turtles.Task{Trusted: true, Pool: InternalPool, Secrets: []string{"token"}, Timeout: turtles.Duration(24 * time.Hour)},
			want: turtles.Task{Trusted: true, Pool: InternalPool, Secrets: []string{"token"}, Timeout: turtles.Duration(24 * time.Hour)}},
		{name: "untrusted guest VM runs without secrets", policy: p,
			in: with(func(x *turtles.Task) { x.Secrets = []string{"token"} }), want: vm},
		{name: "never internal", policy: p, in: with(func(x *turtles.Task) { x.Pool = InternalPool }), reason: "trusted work only"},
		{name: "pool not listed", policy: p, in: with(func(x *turtles.Task) { x.Pool = "release" }), reason: "may use: public, kvm"},
		{name: "no image", policy: p, in: turtles.Task{Pool: "public"}, reason: "only in guest-mode VMs"},
		{name: "host mode", policy: p, in: with(func(x *turtles.Task) { x.Mode = turtles.ModeHost }), reason: "only in guest-mode VMs"},
		{name: "no image in a dedicated pool", policy: Policy{HostPools: []string{"sacrificial"}},
			in: turtles.Task{Pool: "sacrificial"}, want: turtles.Task{Pool: "sacrificial"}},
		{name: "timeout", policy: p, in: with(func(x *turtles.Task) { x.Timeout = turtles.Duration(24 * time.Hour) }), reason: "timeout 24h0m0s is over"},
		{name: "priority", policy: p, in: with(func(x *turtles.Task) { x.Priority = 9 }), reason: "priority 9"},
		{name: "cpus", policy: p, in: with(func(x *turtles.Task) { x.CPUs = 64 }), reason: "cpus 64"},
		{name: "machines in guest mode run", policy: p,
			in:   turtles.Task{Pool: "public", Mode: turtles.ModeGuest, Machines: []turtles.Machine{{Image: "debian-12", CPUs: 4}}},
			want: turtles.Task{Pool: "public", Mode: turtles.ModeGuest, Machines: []turtles.Machine{{Image: "debian-12", CPUs: 4}}}},
		{name: "a machine's cpus", policy: p,
			in: turtles.Task{Pool: "public", Mode: turtles.ModeGuest, Machines: []turtles.Machine{{Image: "debian-12"}, {Name: "db", Image: "debian-12", CPUs: 8}}}, reason: "machine db: cpus 8"},
		{name: "a machine's memory", policy: p,
			in: turtles.Task{Pool: "public", Mode: turtles.ModeGuest, Machines: []turtles.Machine{{Name: "db", Image: "debian-12", MemoryMB: 9000}}}, reason: "machine db: memory 9000M"},
		{name: "machines in host mode", policy: p,
			in: turtles.Task{Pool: "public", Mode: turtles.ModeHost, Machines: []turtles.Machine{{Image: "debian-12"}}}, reason: "only in guest-mode VMs"},
		{name: "memory", policy: p, in: with(func(x *turtles.Task) { x.MemoryMB = 256 << 10 }), reason: "memory 262144M"},
		{name: "zero policy: every pool but internal", policy: Policy{},
			in: with(func(x *turtles.Task) { x.Pool = "anything" }), want: with(func(x *turtles.Task) { x.Pool = "anything" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tt.policy.Restrict(tt.in)
			if tt.reason != "" {
				if !strings.Contains(reason, tt.reason) {
					t.Errorf("reason %q, want it to say %q", reason, tt.reason)
				}
				return
			}
			if reason != "" {
				t.Fatalf("refused: %s", reason)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Restrict (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckContexts(t *testing.T) {
	p := Policy{MaxContexts: 256}
	if r := p.CheckContexts(256); r != "" {
		t.Errorf("256 contexts refused: %s", r)
	}
	if r := p.CheckContexts(10000); !strings.Contains(r, "10000 contexts") || !strings.Contains(r, "at most 256") {
		t.Errorf("10000 contexts: %q", r)
	}
}
