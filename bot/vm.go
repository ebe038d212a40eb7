package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
	"github.com/turtles-ci/turtles/sandbox"
	"github.com/turtles-ci/turtles/syncio"
	"github.com/turtles-ci/turtles/vm"
)

// VMConfig configures the VMs of tasks whose context names an image.
// Dir, CPUs, MemoryMB, BootTimeout, StopGrace and QEMU are required
// (check): cmd/turtles decides them.
type VMConfig struct {
	// ImagesDir is where image names resolve (image.Resolve). Tasks with
	// an image fail as infra on a bot without one.
	ImagesDir string
	// Images, if set, is the host's image cache (on ImagesDir): pinned
	// images (NAME-SHA256) are fetched into it when missing and held in
	// use while their VM runs, so that prune spares them.
	Images *cache.Cache
	// Dir holds the machines' directories; a bot sweeps leftovers of
	// dead bots in it at start.
	Dir string
	// CPUs and MemoryMB size VMs whose context does not.
	CPUs     int
	MemoryMB int
	// BootTimeout bounds the wait for SSH.
	BootTimeout time.Duration
	// StopGrace is how long a task's VM has to power down before QEMU
	// quits.
	StopGrace time.Duration
	// QEMU is the emulator binary (vm.Config.QEMU).
	QEMU string
	// MaxMachines, MaxCPUs and MaxMemoryMB bound what a context's
	// machines may ask for in all (count, and sums of their sizes): more
	// is refused before anything boots. Zero: no limit.
	MaxMachines int
	MaxCPUs     int
	MaxMemoryMB int
	// Warm is the directory of saved machine states (vm.Config.Warm):
	// VMs start from them unless their context says warm: false. Empty:
	// every VM boots cold.
	Warm string
	// Share shares saved states with other bots (vm.Config.Share); nil:
	// each bot saves its own.
	Share vm.StateShare
	// HoldLimit bounds a held machine's compressed size (a context's
	// hold:, hold.go); 0: this bot holds no machine.
	HoldLimit int64
	// Providers are the cluster providers this bot has, by name, for
	// tasks with a cluster: (docs/clusters.md). A task naming another
	// fails. Each cluster gets a registry of its own (machines.go).
	Providers map[string]cluster.Provider
	Log       *slog.Logger
}

// check says which required field c lacks.
func (c VMConfig) check() error {
	switch {
	case c.Dir == "":
		return errors.New("VM: no machines directory")
	case c.CPUs <= 0:
		return fmt.Errorf("VM.CPUs is %d, want at least 1", c.CPUs)
	case c.MemoryMB <= 0:
		return fmt.Errorf("VM.MemoryMB is %d, want more than 0", c.MemoryMB)
	case c.BootTimeout <= 0:
		return fmt.Errorf("VM.BootTimeout is %s, want more than 0", c.BootTimeout)
	case c.StopGrace <= 0:
		return fmt.Errorf("VM.StopGrace is %s, want more than 0", c.StopGrace)
	case c.QEMU == "":
		return errors.New("VM: no QEMU binary")
	}
	return nil
}

// Guest paths of a guest-mode task.
const (
	// GuestSrc is where the checkout is copied, and the command's cwd.
	GuestSrc = "/var/tmp/turtles-src"
	// GuestArtifacts is copied back into the attempt's artifacts, in both
	// modes; guest-mode commands find it in $TURTLES_ARTIFACTS.
	GuestArtifacts = "/var/tmp/turtles-artifacts"
)

// vmTask says what VM a task wants.
type vmTask struct {
	image, mode    string
	cpus, memoryMB int
	forward        []int
	// machines, instead of image: several on one network (machines.go),
	// made a cluster by provider ("": plain).
	machines []turtles.Machine
	provider string
}

// testVM runs command with a fresh VM of the task's image: in the guest
// (ModeGuest) or on the bot beside it (ModeHost). The machine is stopped
// and removed before it returns, whatever happened.
func (r runner) testVM(ctx context.Context, t turtles.Task, ws workspace, out io.Writer, command string, timeout time.Duration, v vmTask) (turtles.Outcome, error) {
	out = syncio.NewWriter(out) // console, stdout and stderr copiers
	log := r.vm.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	img, release, err := r.image(ctx, v.image, out)
	if err != nil {
		if ctx.Err() != nil {
			logf(out, "stopped while fetching the image: %v", context.Cause(ctx))
			return turtles.Outcome{}, cancelled(ctx)
		}
		return turtles.Outcome{}, imageFault(v.image, err)
	}
	defer release()
	console := &lineEnd{w: out}
	cfg := vm.Config{
		Image: img, Dir: r.vm.Dir, CPUs: v.cpus, MemoryMB: v.memoryMB, Forwards: v.forward,
		Console: console, BootTimeout: r.vm.BootTimeout, StopGrace: r.vm.StopGrace, QEMU: r.vm.QEMU,
		Log: log.With("task", t.Key()),
	}
	if !t.Cold {
		cfg.Warm, cfg.Share = r.vm.Warm, r.vm.Share
	}
	// The context's size, else the bot's.
	if cfg.CPUs == 0 {
		cfg.CPUs = r.vm.CPUs
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = r.vm.MemoryMB
	}
	// Cheap, and it catches what a killed `turtles run` left behind.
	if _, err := vm.Sweep(cfg.Dir, log); err != nil {
		log.Warn("sweep VMs", "err", err)
	}
	began := time.Now()
	m, err := vm.Start(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			logf(out, "stopped while the VM booted: %v", context.Cause(ctx))
			return turtles.Outcome{}, cancelled(ctx)
		}
		return turtles.Outcome{}, err // vm.Start says why, for people
	}
	defer func() {
		stopped := time.Now()
		// The machine's disk is thrown away: no shutdown to wait for.
		if err := m.Discard(context.Background()); err != nil {
			log.Error("stop VM", "vm", m.Name, "err", err)
		}
		logf(out, "VM %s stopped in %s", m.Name, time.Since(stopped).Round(10*time.Millisecond))
	}()
	console.finishLine() // the console ends in "login: "
	logf(out, "VM %s (%s) accepts SSH on 127.0.0.1:%d after %s", m.Name, m.Accel, m.SSHPort, time.Since(began).Round(100*time.Millisecond))
	if _, err := m.Output(ctx, "mkdir -p "+GuestArtifacts); err != nil {
		if ctx.Err() != nil {
			return turtles.Outcome{}, cancelled(ctx)
		}
		return turtles.Outcome{}, turtles.InfraFault("the bot could not prepare the VM for the task", fmt.Errorf("prepare VM: %w", err))
	}

	var o turtles.Outcome
	if v.mode == turtles.ModeHost {
		logf(out, "running on the host, VM beside it: %s", command)
		key := m.KeyFile()
		if r.sandbox != nil {
			// The VM's own directory is hidden from the task: its key is
			// handed over in the workspace.
			if key, err = copyKey(m.KeyFile(), filepath.Join(ws.dir, "vm-key")); err != nil {
				return turtles.Outcome{}, turtles.InfraFault("the bot could not hand the VM's SSH key to the task", err)
			}
			key = filepath.Join(sandbox.Root, "vm-key")
		}
		var spec execSpec
		if spec, err = r.onBot(t, ws, command, timeout, out, vmEnv(m, key)...); err != nil {
			return turtles.Outcome{}, err
		}
		o, err = execute(ctx, spec)
	} else {
		o, err = r.guest(ctx, t, m, ws, out, command, timeout)
	}
	if ctx.Err() == nil {
		collect(m, ws, out, "vm")
	}
	if err == nil && o.Class == turtles.Failure && t.Hold != "" && ctx.Err() == nil {
		r.hold(ctx, t, m, ws, out)
	}
	return o, err
}

// image finds the image a task names: a pinned image (NAME-SHA256) from
// the cache, fetched first if the host lacks it and held until release;
// any other name as image.Resolve finds it.
func (r runner) image(ctx context.Context, name string, out io.Writer) (*image.Manifest, func(), error) {
	id, err := cache.ParseID(name)
	if err != nil || r.vm.Images == nil {
		m, err := image.Resolve(name, r.vm.ImagesDir)
		return m, func() {}, err
	}
	if !r.vm.Images.Has(id) {
		logf(out, "fetching image %s", id)
		began := time.Now()
		defer func() {
			if err == nil {
				logf(out, "fetched image %s in %s", id, time.Since(began).Round(100*time.Millisecond))
			}
		}()
	}
	m, release, err := r.vm.Images.Acquire(ctx, id)
	return m, release, err
}

// vmEnv describes a host-mode task's VM to its command.
func vmEnv(m *vm.Machine, key string) []string {
	env := []string{
		"TURTLES_VM_NAME=" + m.Name,
		"TURTLES_VM_SSH_HOST=127.0.0.1",
		"TURTLES_VM_SSH_PORT=" + strconv.Itoa(m.SSHPort),
		"TURTLES_VM_SSH_USER=" + m.User,
		"TURTLES_VM_SSH_KEY=" + key,
		"TURTLES_VM_ARTIFACTS=" + GuestArtifacts,
	}
	var guest []int
	for g := range m.Ports {
		guest = append(guest, g)
	}
	sort.Ints(guest)
	for _, g := range guest {
		env = append(env, fmt.Sprintf("TURTLES_VM_PORT_%d=%d", g, m.Ports[g]))
	}
	return env
}

// copyKey copies the private key at from to to (mode 0600) and returns to.
func copyKey(from, to string) (string, error) {
	b, err := os.ReadFile(from)
	if err != nil {
		return "", fmt.Errorf("hand over the VM's key: %w", err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		return "", fmt.Errorf("hand over the VM's key: %w", err)
	}
	return to, nil
}

// guest copies the checkout into the VM and runs command there, its
// output streamed into the log. Timeouts are failures, as on the host.
func (r runner) guest(ctx context.Context, t turtles.Task, m *vm.Machine, ws workspace, out io.Writer, command string, timeout time.Duration) (turtles.Outcome, error) {
	if err := m.CopyTo(ctx, ws.src, GuestSrc); err != nil {
		if ctx.Err() != nil {
			return turtles.Outcome{}, cancelled(ctx)
		}
		return turtles.Outcome{}, turtles.InfraFault("the checkout could not be copied into the VM", err)
	}
	pr := ""
	if t.PR > 0 {
		pr = strconv.Itoa(t.PR)
	}
	// The task's secrets first, so that turtles' own variables win.
	vars := append(append([]string(nil), r.secrets...),
		"CI=true", "TURTLES=1", "TURTLES_REPO="+t.Repo.Name, "TURTLES_SHA="+t.SHA,
		"TURTLES_CONTEXT="+t.Context, "TURTLES_ATTEMPT="+strconv.Itoa(t.Attempt),
		"TURTLES_PR="+pr, "TURTLES_ARTIFACTS="+GuestArtifacts,
	)
	var script strings.Builder
	for _, v := range vars {
		k, val, _ := strings.Cut(v, "=")
		fmt.Fprintf(&script, "export %s=%s\n", k, vm.Quote(val))
	}
	fmt.Fprintf(&script, "cd %s && exec sh -c %s </dev/null", GuestSrc, vm.Quote(command))

	logf(out, "running in VM %s: %s", m.Name, command)
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code, err := m.Exec(cctx, script.String(), nil, out, out)
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	switch {
	case ctx.Err() != nil:
		logf(out, "command stopped after %s: %v", elapsed, context.Cause(ctx))
		return turtles.Outcome{}, cancelled(ctx)
	case cctx.Err() != nil:
		logf(out, "timed out after %s; stopping the VM", timeout)
		return turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: fmt.Sprintf("timed out after %s", timeout)}, nil
	case err != nil:
		// The guest died or the connection broke under the command; vm
		// says which, for people.
		logf(out, "lost the VM after %s\nserial console (last lines):\n%s", elapsed, m.ConsoleTail())
		return turtles.Outcome{}, err
	case code == 0:
		logf(out, "exit status 0 after %s", elapsed)
		return turtles.Outcome{Class: turtles.Success}, nil
	}
	reason := "exit status " + strconv.Itoa(code)
	logf(out, "%s after %s", reason, elapsed)
	return turtles.Outcome{Class: turtles.Failure, ExitCode: code, Reason: reason}, nil
}

// collect copies the guest's artifacts directory and its journal into the
// attempt's artifacts (as/ and as/journal.txt: vm/ for a task's VM).
// Missing pieces are noted in the log, not failures: the outcome is
// already decided.
func collect(m *vm.Machine, ws workspace, out io.Writer, as string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := filepath.Join(ws.artifacts, as)
	if err := m.CopyFrom(ctx, GuestArtifacts, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		logf(out, "could not copy artifacts out of the VM: %v", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return
	}
	f, err := os.Create(filepath.Join(dst, "journal.txt"))
	if err != nil {
		return
	}
	defer f.Close()
	if code, err := m.Exec(ctx, "journalctl -b --no-pager -o short-precise", nil, f, io.Discard); err != nil || code != 0 {
		logf(out, "could not copy the guest journal: exit %d, %v", code, err)
	}
}

// imageFault says for people why the image named name could not be had:
// the cache's reason for a pinned image, or that this bot lacks it.
func imageFault(name string, err error) error {
	if _, ok := turtles.FaultOf(err); ok {
		return err
	}
	if errors.Is(err, image.ErrNotFound) {
		return turtles.InfraFault("this bot does not have image "+name, err)
	}
	return turtles.InfraFault("this bot cannot boot image "+name, err)
}

func (c VMConfig) withLog(log *slog.Logger) VMConfig {
	if c.Log == nil {
		c.Log = log
	}
	return c
}

// sweepVMs removes machines that a dead bot left in the VM directory: its
// qemu, overlay, seed and key.
func (b *Bot) sweepVMs() {
	removed, err := vm.Sweep(b.run.vm.Dir, b.log)
	if err != nil {
		b.log.Error("sweep VMs", "err", err)
	}
	if len(removed) > 0 {
		b.log.Warn("removed VMs of a dead bot", "machines", removed)
	}
}

// lineEnd passes the serial console through and remembers whether it
// ended a line, so that turtles' own lines start on one of their own.
type lineEnd struct {
	w    io.Writer
	mu   sync.Mutex
	open bool
}

func (l *lineEnd) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(p) > 0 {
		l.open = p[len(p)-1] != '\n'
	}
	return l.w.Write(p)
}

func (l *lineEnd) finishLine() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open {
		io.WriteString(l.w, "\n")
		l.open = false
	}
}
