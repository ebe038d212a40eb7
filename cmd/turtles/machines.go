package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/image/cache"
)

// vmFlags size and time the VMs of tasks whose context does not say: the
// commands that run tasks take them (serve, bot, run).
var vmFlags = []string{"vm-cpus", "vm-memory", "vm-boot-timeout", "vm-warm-states", "hold-limit", "vm-max-machines", "vm-max-cpus", "vm-max-memory"}

func machineOptions() []option {
	return []option{
		opt("vm-cpus", "virtual CPUs of a task's VM whose context does not say (cpus:)", num(func(s *Settings) *int { return &s.VMCPUs })),
		opt("vm-memory", "memory of a task's VM whose context does not say (memory:), in whole MiB, such as 1GiB", byteSize(func(s *Settings) *ByteSize { return &s.VMMemory })),
		opt("vm-boot-timeout", "how long a task's VM may take to accept SSH; longer is an infrastructure failure", dur(func(s *Settings) *time.Duration { return &s.VMBootTimeout })),
		opt("vm-warm-states", "where saved VM states for warm starts are kept (default IMAGES-DIR/warm); off boots every VM cold (docs/vms.md)", str(func(s *Settings) *string { return &s.VMWarmStates })),
		opt("hold-limit", "the largest VM of a failed attempt kept for turtles debug (a context's hold:), compressed, such as 1GiB; 0 keeps none (docs/vms.md)", byteSize(func(s *Settings) *ByteSize { return &s.HoldLimit })),
		opt("vm-max-machines", "the most machines one task's machines: may list on this bot; 0 for no limit", num(func(s *Settings) *int { return &s.VMMaxMachines })),
		opt("vm-max-cpus", "the most virtual CPUs one task's machines: may ask for in all on this bot; 0 for no limit", num(func(s *Settings) *int { return &s.VMMaxCPUs })),
		opt("vm-max-memory", "the most memory one task's machines: may ask for in all on this bot, such as 16GiB; 0 for no limit", byteSize(func(s *Settings) *ByteSize { return &s.VMMaxMemory })),
		opt("debian-mirror", "Debian mirror that 'turtles image build' installs from", str(func(s *Settings) *string { return &s.DebianMirror })),
	}
}

// The VM a context gets when it does not say, also for `turtles vm
// start`: two CPUs and 1 GiB run a Debian guest's tests, and a bot of a
// few cores runs several. A Debian guest boots in 20-50 s under TCG;
// five minutes leaves room for a loaded host.
const (
	defaultVMCPUs        = 2
	defaultVMMemoryMB    = 1024
	defaultVMBootTimeout = 5 * time.Minute
	// A held 1 GiB Debian guest that failed a test is about 100 MiB
	// compressed; a guest that filled its memory and disk is refused
	// rather than filling the store.
	defaultHoldLimit = 1 << 30
)

// defaultDebianMirror is Debian's own mirror network (deb.debian.org).
const defaultDebianMirror = "http://deb.debian.org/debian"

// qemuBinary is the emulator of every VM: the guests are x86-64.
const qemuBinary = "qemu-system-x86_64"

// How long Stop waits for a guest's ACPI powerdown before QEMU quits: a
// task's VM is thrown away and has nothing worth saving; a person's
// (turtles vm stop) gets a little longer to sync its disk.
const (
	taskVMStopGrace   = time.Second
	personVMStopGrace = 3 * time.Second
)

// The most a task's machines: may ask for in all, unless the operator
// says otherwise: a three- or five-node cluster of default machines fits,
// and a list that would take a small bot's memory does not.
const (
	defaultVMMaxMachines = 8
	defaultVMMaxCPUs     = 16
	defaultVMMaxMemoryMB = 16 << 10
)

func machineDefaults(s *Settings) {
	s.VMMaxMachines = defaultVMMaxMachines
	s.VMMaxCPUs = defaultVMMaxCPUs
	s.VMMaxMemory = defaultVMMaxMemoryMB << 20
	s.VMCPUs = defaultVMCPUs
	s.VMMemory = defaultVMMemoryMB << 20
	s.VMBootTimeout = defaultVMBootTimeout
	s.HoldLimit = defaultHoldLimit
	s.DebianMirror = defaultDebianMirror
}

func (s *Settings) validateMachines() error {
	var errs []error
	if s.VMCPUs < 1 || s.VMCPUs > config.MaxCPUs {
		errs = append(errs, fmt.Errorf("vm-cpus: %d is not between 1 and %d", s.VMCPUs, config.MaxCPUs))
	}
	if mib := config.MiB(s.VMMemory >> 20); s.VMMemory%(1<<20) != 0 || mib < config.MinMemory || mib > config.MaxMemory {
		errs = append(errs, fmt.Errorf("vm-memory: %s is not a whole number of MiB between %dMiB and %dMiB", &s.VMMemory, config.MinMemory, config.MaxMemory))
	}
	if s.VMMaxMachines < 0 || s.VMMaxCPUs < 0 || s.VMMaxMemory < 0 {
		errs = append(errs, fmt.Errorf("vm-max-machines, vm-max-cpus, vm-max-memory: %d, %d, %s: want 0 (no limit) or more", s.VMMaxMachines, s.VMMaxCPUs, &s.VMMaxMemory))
	}
	if s.VMBootTimeout <= 0 {
		errs = append(errs, fmt.Errorf("vm-boot-timeout: %s, want more than 0", s.VMBootTimeout))
	}
	if s.HoldLimit < 0 {
		errs = append(errs, fmt.Errorf("hold-limit: %s, want 0 or more", &s.HoldLimit))
	}
	if s.DebianMirror == "" {
		errs = append(errs, errors.New("debian-mirror: empty"))
	}
	return errors.Join(errs...)
}

// taskVMs is the VM configuration of the bot of this process, or of
// turtles run: images from ImagesDir (and images, the cache, if not nil),
// machines in dir.
func (s Settings) taskVMs(dir string, images *cache.Cache) bot.VMConfig {
	return bot.VMConfig{
		ImagesDir: s.ImagesDir, Images: images, Dir: dir,
		CPUs: s.VMCPUs, MemoryMB: int(s.VMMemory >> 20), BootTimeout: s.VMBootTimeout,
		StopGrace: taskVMStopGrace, QEMU: qemuBinary, Warm: s.warmStates(), HoldLimit: int64(s.HoldLimit),
		MaxMachines: s.VMMaxMachines, MaxCPUs: s.VMMaxCPUs, MaxMemoryMB: int(s.VMMaxMemory >> 20),
		Providers: s.clusterProviders(),
	}
}

// clusterProviders are the providers of a context's cluster: on a bot,
// Kubernetes is built the first time a task asks for it.
func (s Settings) clusterProviders() map[string]cluster.Provider {
	k, _ := kubernetesProvider(s, "", "") // no version: no error
	return map[string]cluster.Provider{"plain": cluster.Plain{}, "kubernetes": k}
}

// sharedStates lets the bot's VMs share saved states with other bots
// where it has image sources (mirrors, peers) and a store to pin states
// in: a bot fetches a state another saved instead of booting cold to
// save its own. (image/cache.States says why the store is the pin.)
func (sys *system) sharedStates(v bot.VMConfig, images *cache.Cache) bot.VMConfig {
	st, ok := sys.Store.GetOK()
	if v.Warm != "" && images != nil && images.HasSources() && ok {
		v.Share = images.States(st)
	}
	return v
}

// warmStates is the directory of saved VM states, "" when warm starts
// are off.
func (s Settings) warmStates() string {
	switch s.VMWarmStates {
	case "off":
		return ""
	case "":
		return filepath.Join(s.ImagesDir, "warm")
	}
	return s.VMWarmStates
}

// taskVMDir is where the VMs of tasks live: in the work directory, which
// one bot at a time holds, so that it may sweep what a dead one left.
func taskVMDir(workDir string) string { return filepath.Join(workDir, "vms") }
