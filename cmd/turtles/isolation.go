package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/sandbox"
)

// policyFlags cap what untrusted work may ask for (config.Policy); every
// process that turns a configuration into tasks takes them: serve, bot
// (plans), reporter (the gate) and scan.
var policyFlags = []string{"untrusted-pools", "untrusted-host-pools", "untrusted-max-timeout", "untrusted-max-priority",
	"untrusted-max-cpus", "untrusted-max-memory", "max-contexts"}

// sandboxFlags say how a bot isolates the commands it runs itself.
var sandboxFlags = []string{"sandbox", "sandbox-uid-base"}

func isolationOptions() []option {
	return []option{
		opt("untrusted-pools", "comma-separated pools untrusted work (an approved stranger's pull request) may be queued in; never internal", strs(func(s *Settings) *[]string { return &s.UntrustedPools })),
		opt("untrusted-host-pools", "comma-separated pools whose bots are dedicated to untrusted work outside guest VMs (host mode, no image); elsewhere untrusted work runs only in guest-mode VMs", strs(func(s *Settings) *[]string { return &s.UntrustedHostPools })),
		opt("untrusted-max-timeout", "the longest timeout untrusted work may ask for", dur(func(s *Settings) *time.Duration { return &s.UntrustedMaxTimeout })),
		opt("untrusted-max-priority", "the highest priority (0..9) untrusted work may ask for", num(func(s *Settings) *int { return &s.UntrustedMaxPriority })),
		opt("untrusted-max-cpus", "the most VM CPUs untrusted work may ask for", num(func(s *Settings) *int { return &s.UntrustedMaxCPUs })),
		opt("untrusted-max-memory", "the most VM memory untrusted work may ask for, such as 8GiB", byteSize(func(s *Settings) *ByteSize { return &s.UntrustedMaxMemory })),
		opt("max-contexts", "the most contexts one commit's .turtles.yaml may have, for everyone", num(func(s *Settings) *int { return &s.MaxContexts })),
		opt("sandbox", "isolate commands run on the bot (bubblewrap): auto (isolate when the host can; without, run no untrusted work outside guest VMs), required (refuse to start without) or off (trusted work only)", str(func(s *Settings) *string { return &s.Sandbox })),
		opt("sandbox-uid-base", "a root bot runs each slot's command as its own uid from this one up (one per slot); pick ids no one else uses", num(func(s *Settings) *int { return &s.SandboxUIDBase })),
	}
}

// isolationDefaults: strangers get the public pool, at most two hours, a
// middling priority and a VM the size of a laptop's; a commit has at most
// 256 contexts. The uid base is far above any distribution's ranges and
// below the 2^31 that some tools take for signed.
func isolationDefaults(s *Settings) {
	s.UntrustedPools = []string{"public"}
	s.UntrustedMaxTimeout = 2 * time.Hour
	s.UntrustedMaxPriority = 5
	s.UntrustedMaxCPUs = 4
	s.UntrustedMaxMemory = 8 << 30
	s.MaxContexts = 256
	s.Sandbox = "auto"
	s.SandboxUIDBase = 1879048192
}

func (s *Settings) validateIsolation() error {
	var errs []error
	if slices.Contains(s.UntrustedPools, config.InternalPool) || slices.Contains(s.UntrustedHostPools, config.InternalPool) {
		errs = append(errs, fmt.Errorf("untrusted-pools, untrusted-host-pools: %s runs trusted work only", config.InternalPool))
	}
	switch s.Sandbox {
	case "auto", "required", "off":
	default:
		errs = append(errs, fmt.Errorf("sandbox: %q, want auto, required or off", s.Sandbox))
	}
	if s.SandboxUIDBase < 1000 || s.SandboxUIDBase > 1<<31-1-1024 {
		errs = append(errs, fmt.Errorf("sandbox-uid-base: %d is not between 1000 and %d", s.SandboxUIDBase, 1<<31-1-1024))
	}
	if s.MaxContexts < 1 {
		errs = append(errs, fmt.Errorf("max-contexts: %d, want at least 1", s.MaxContexts))
	}
	return errors.Join(errs...)
}

// policy is the Policy of s.
func (s Settings) policy() config.Policy {
	return config.Policy{
		UntrustedPools: s.UntrustedPools, HostPools: s.UntrustedHostPools,
		MaxTimeout: s.UntrustedMaxTimeout, MaxPriority: s.UntrustedMaxPriority,
		MaxCPUs: s.UntrustedMaxCPUs, MaxMemoryMB: int(s.UntrustedMaxMemory >> 20),
		MaxContexts: s.MaxContexts,
	}
}

// hidden is what no task may see: turtles' own state and every file a
// credential is read from.
func (s Settings) hidden() []string {
	paths := []string{s.DataDir, s.WorkDir, s.StoreDir, s.SecretsDir, s.ImagesDir,
		s.GitHubTokenFile, s.WebhookSecretFile, s.GitLabTokenFile, s.GitHubAppKeyFile, s.S3CredentialsFile, s.ConfigFile,
		s.GitMirrorTokenFile, s.GitMirrorDir}
	if !isAMQP(s.Queue) && s.Queue != "" {
		paths = append(paths, filepath.Dir(s.Queue))
	}
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil && !slices.Contains(out, abs) {
			out = append(out, abs)
		}
	}
	return out
}

// openSandbox isolates this bot's commands as --sandbox says; nil means
// none (untrusted work outside guest VMs is then refused), said loudly.
func openSandbox(s Settings, log *slog.Logger) (*sandbox.Sandbox, error) {
	if s.Sandbox == "off" {
		log.Warn("task isolation is off (--sandbox off): commands run as the bot's own processes, so this bot runs no untrusted work outside guest VMs")
		return nil, nil
	}
	box, err := sandbox.New(sandbox.Config{UIDBase: s.SandboxUIDBase, UIDs: s.Slots, Hide: s.hidden()})
	if err != nil {
		if s.Sandbox == "required" {
			return nil, fmt.Errorf("--sandbox required: %w", err)
		}
		log.Error("TASKS ARE NOT ISOLATED on this bot: it runs no untrusted work outside guest VMs, and trusted commands run as its own processes (docs/trust.md)", "err", err)
		return nil, nil
	}
	log.Info("tasks are isolated", "cgroups", box.Cgroups(), "hidden", s.hidden())
	return box, nil
}

// addIsolationFlags registers policyFlags, and sandboxFlags too when
// withSandbox, on a command that addFlags already gave --config.
func addIsolationFlags(fs *pflag.FlagSet, withSandbox bool) {
	names := policyFlags
	if withSandbox {
		names = append(slices.Clone(names), sandboxFlags...)
	}
	addOptions(fs, names...)
}
