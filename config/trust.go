package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// InternalPool is the pool of bots inside a trusted network. Untrusted work
// (a stranger's pull request, even approved with /ok-to-test) never runs
// there.
const InternalPool = "internal"

// Policy is what the operator lets untrusted work ask for, and the one
// cap that holds for everyone (MaxContexts). cmd/turtles fills it from
// flags; every place that turns a configuration into tasks (the bot's
// plan, the gate, the scanner) applies it through Restrict, so that no
// path hands a stranger more. Zero fields mean no limit, and no pools
// means every pool but InternalPool, as before policies existed.
type Policy struct {
	// UntrustedPools are the pools untrusted work may be queued in.
	UntrustedPools []string
	// HostPools are the pools whose bots the operator dedicated to
	// untrusted work outside guest VMs (host mode, or no image). In any
	// other pool, untrusted work runs only in a guest-mode VM.
	HostPools []string
	// Caps on untrusted work.
	MaxTimeout  time.Duration
	MaxPriority int
	MaxCPUs     int
	MaxMemoryMB int
	// MaxContexts caps the contexts of one configuration, for everyone:
	// one push must not queue ten thousand tasks and as many statuses.
	MaxContexts int
}

// Restrict returns t as it may run for its author: untrusted work loses
// its secrets and must keep within the policy's caps. A non-empty reason
// (for people, for a status) means t must not run at all.
func (p Policy) Restrict(t turtles.Task) (turtles.Task, string) {
	if t.Trusted {
		return t, ""
	}
	t.Secrets = nil
	onBot := (t.Image == "" && len(t.Machines) == 0) || t.Mode == turtles.ModeHost
	switch {
	case t.Pool == InternalPool || (len(p.UntrustedPools) > 0 && !slices.Contains(p.UntrustedPools, t.Pool)):
		return t, fmt.Sprintf("pool %s runs trusted work only%s", t.Pool, p.poolsHint())
	case onBot && !slices.Contains(p.HostPools, t.Pool):
		return t, "untrusted work runs only in guest-mode VMs: give this context an image (mode guest)"
	case p.MaxTimeout > 0 && time.Duration(t.Timeout) > p.MaxTimeout:
		return t, fmt.Sprintf("timeout %s is over the limit for untrusted work (%s)", time.Duration(t.Timeout), p.MaxTimeout)
	case p.MaxPriority > 0 && t.Priority > p.MaxPriority:
		return t, fmt.Sprintf("priority %d is over the limit for untrusted work (%d)", t.Priority, p.MaxPriority)
	case p.MaxCPUs > 0 && t.CPUs > p.MaxCPUs:
		return t, fmt.Sprintf("cpus %d is over the limit for untrusted work (%d)", t.CPUs, p.MaxCPUs)
	case p.MaxMemoryMB > 0 && t.MemoryMB > p.MaxMemoryMB:
		return t, fmt.Sprintf("memory %dM is over the limit for untrusted work (%dM)", t.MemoryMB, p.MaxMemoryMB)
	}
	for _, m := range t.Machines {
		switch {
		case p.MaxCPUs > 0 && m.CPUs > p.MaxCPUs:
			return t, fmt.Sprintf("machine %s: cpus %d is over the limit for untrusted work (%d)", m.Name, m.CPUs, p.MaxCPUs)
		case p.MaxMemoryMB > 0 && m.MemoryMB > p.MaxMemoryMB:
			return t, fmt.Sprintf("machine %s: memory %dM is over the limit for untrusted work (%dM)", m.Name, m.MemoryMB, p.MaxMemoryMB)
		}
	}
	return t, ""
}

func (p Policy) poolsHint() string {
	if len(p.UntrustedPools) == 0 {
		return ""
	}
	return " (untrusted work may use: " + strings.Join(p.UntrustedPools, ", ") + ")"
}

// CheckContexts says why a configuration with n contexts is refused
// whole, or "".
func (p Policy) CheckContexts(n int) string {
	if p.MaxContexts > 0 && n > p.MaxContexts {
		return fmt.Sprintf("%s has %d contexts; this server takes at most %d per commit", FileName, n, p.MaxContexts)
	}
	return ""
}
