// Package vm boots test machines in QEMU: a qcow2 overlay per machine on
// a base image that is never written, a seed disk that authorizes a
// per-machine ed25519 key, user-mode networking with the guest's SSH port
// (and any others asked for) forwarded to 127.0.0.1, the serial console
// captured into a writer, and a QMP socket for status and shutdown.
// Commands run, and files move, over SSH (golang.org/x/crypto/ssh).
//
// KVM is used when /dev/kvm is usable, TCG (slow, but works anywhere)
// otherwise, and the machine says which.
//
// Nothing survives a machine: Stop removes its directory (overlay, seed,
// key, sockets); qemu gets SIGKILL when the process that started it dies
// (unless Detach); Sweep removes what dead processes left behind.
//
// The bot and cmd/turtles import it.
package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
)

// Config describes a machine to start.
type Config struct {
	Image *image.Manifest
	// Dir holds one directory per machine (Dir/NAME); Sweep cleans it.
	Dir string
	// Name is unique within Dir; random when empty.
	Name string
	// CPUs and MemoryMB size the machine; both required.
	CPUs     int
	MemoryMB int
	// Forwards are guest TCP ports made reachable on 127.0.0.1.
	Forwards []int
	// Console receives the serial console (the task log); may be nil.
	Console io.Writer
	// BootTimeout bounds the wait for SSH; required.
	BootTimeout time.Duration
	// StopGrace is how long Stop waits for an ACPI powerdown before it
	// quits QEMU; required.
	StopGrace time.Duration
	// Detach lets qemu outlive this process (turtles vm start); its console
	// then goes to DIR/NAME/console.log. Otherwise qemu dies with us.
	Detach bool
	// Owner, with Detach, is a process whose death ends the machine at
	// the next Sweep (a script, a test); 0 for none.
	Owner int
	// Key, if set, is the private key (NewKey) SSH into the machine
	// accepts: one for all the machines of a run. Empty: a key of its own.
	Key []byte
	// QEMU is the emulator binary, a name looked up in PATH or a path;
	// required.
	QEMU string
	// Warm, if set, is the directory of saved machine states: the machine
	// is restored from the one of its image and shape (made the first
	// time) instead of booting cold (warm.go). A machine that cannot
	// start warm boots cold, and the console says why.
	Warm string
	// Share, if set with Warm, shares saved states with other bots: one
	// is fetched before a cold boot would save it, and one saved here is
	// published.
	Share StateShare
	Log   *slog.Logger
}

// check says which required setting cfg lacks: the machine's size and
// times are the caller's to decide (cmd/turtles decides them).
func (cfg Config) check() error {
	switch {
	case cfg.Image == nil || cfg.Image.Disk == "":
		return errors.New("vm: no image")
	case cfg.Dir == "":
		return errors.New("vm: no directory")
	case cfg.CPUs <= 0:
		return fmt.Errorf("vm: CPUs is %d, want at least 1", cfg.CPUs)
	case cfg.MemoryMB <= 0:
		return fmt.Errorf("vm: MemoryMB is %d, want more than 0", cfg.MemoryMB)
	case cfg.BootTimeout <= 0:
		return fmt.Errorf("vm: BootTimeout is %s, want more than 0", cfg.BootTimeout)
	case cfg.StopGrace <= 0:
		return fmt.Errorf("vm: StopGrace is %s, want more than 0", cfg.StopGrace)
	case cfg.QEMU == "":
		return errors.New("vm: no QEMU binary")
	}
	return nil
}

// Machine is a running (or attached) QEMU machine.
type Machine struct {
	State
	// Dir is the machine's directory: overlay, seed, key, sockets.
	Dir string
	// StopGrace is how long Stop waits for an ACPI powerdown before it
	// quits QEMU: Config.StopGrace for a machine Start started, 0 (quit
	// at once) for an attached one unless its caller sets it.
	StopGrace time.Duration

	log    *slog.Logger
	signer ssh.Signer
	tail   *tail

	// cmd and done are set for machines this process started
	// (not Detach); attached machines are watched through /proc.
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	mu     sync.Mutex
	client *ssh.Client

	// authorized is the public key of signer, as authorized_keys has it.
	authorized string
	// hostKey is the guest's SSH host key where turtles made it (a warm
	// start): SSH accepts only it. Nil after a cold boot, whose keys
	// nobody saw before.
	hostKey ssh.PublicKey
	// Timing is where a warm start's time went; zero for a cold boot.
	Timing WarmTiming

	// cfg and how are how launch started qemu, which Hold records so
	// that Resume starts the same machine (hold.go).
	cfg Config
	how launch
}

// State is what DIR/NAME/state.json records, so that other processes
// (turtles vm ssh, stop, list) can attach to a machine.
type State struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Accel   string `json:"accel"`
	SSHPort int    `json:"ssh_port"`
	User    string `json:"user"`
	// Ports maps forwarded guest ports to host ports on 127.0.0.1.
	Ports   map[int]int `json:"ports,omitempty"`
	Image   string      `json:"image"`
	Started time.Time   `json:"started"`
	// MAC is the guest's network card's address, unique per machine.
	MAC string `json:"mac"`
	// Warm: the machine was restored from a saved state (warm.go).
	Warm bool `json:"warm,omitempty"`
	// LANMAC is the address of the card AddLAN plugged in, "" without.
	LANMAC string `json:"lan_mac,omitempty"`
}

// Files in a machine's directory.
const (
	keyFile     = "id_ed25519"
	stateFile   = "state.json"
	ownerFile   = "owner"
	qmpSocket   = "qmp.sock"
	agentSocket = "qga.sock"
	consoleFile = "console.log"
)

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// KVMUsable reports whether /dev/kvm can be opened for use.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Start boots a machine and waits until SSH accepts its key. Its errors
// are infra Faults (turtles.Fault) whose reason says what failed, except
// bad arguments and ctx ending (plain errors); the cause of a boot that
// failed carries the tail of the serial console. On error nothing is left
// behind.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		b := make([]byte, 4)
		rand.Read(b)
		cfg.Name = "m-" + hex.EncodeToString(b)
	}
	if !nameRe.MatchString(cfg.Name) {
		return nil, fmt.Errorf("vm: bad machine name %q", cfg.Name)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Image.Kernel != "" && cfg.Image.Append == "" {
		cfg.Image.Append = "root=/dev/vda rw console=ttyS0"
	}
	if cfg.Warm != "" {
		m, err := startWarm(ctx, cfg)
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var nw *errNotWarm
		if !errors.As(err, &nw) {
			return nil, err
		}
		fmt.Fprintf(cfg.Console, "turtles: booting cold: no warm start (%s)\n", nw.reason)
		cfg.Log.Warn("no warm start: booting cold", "vm", cfg.Name, "err", err)
	}
	m, err := prepare(ctx, cfg, cfg.Image.Disk)
	if err != nil {
		return nil, turtles.InfraFault("the bot could not set up the VM", fmt.Errorf("vm %s: %w", cfg.Name, err))
	}
	if err := m.boot(ctx, cfg); err != nil {
		m.StopGrace = 0 // a guest that did not boot has nothing to shut down
		console := m.ConsoleTail()
		m.Stop(context.Background())
		return nil, bootFault(ctx, cfg, console, fmt.Errorf("vm %s: %w", cfg.Name, err))
	}
	return m, nil
}

// bootFault classifies an error of boot; console is the tail of the
// serial console, where a guest kernel that panicked said why.
func bootFault(ctx context.Context, cfg Config, console string, err error) error {
	panicked := KernelPanic(console)
	switch {
	case ctx.Err() != nil:
		return err // stopped: the caller knows why
	case panicked != "":
		return turtles.InfraFault("the guest kernel panicked before SSH came up: "+panicked, err)
	case errors.Is(err, errQEMUExited):
		return turtles.InfraFault("QEMU exited while the VM booted", err)
	case errors.Is(err, errNoSSH):
		return turtles.InfraFault(fmt.Sprintf("the VM did not boot within %s", cfg.BootTimeout), err)
	}
	return turtles.InfraFault("the bot could not start QEMU", err)
}

// panicLine is the line a Linux kernel prints when it panics.
var panicLine = regexp.MustCompile(`Kernel panic - not syncing: ([^\r\n]*)`)

// KernelPanic returns what a Linux kernel said when it panicked on the
// serial console text console ("VFS: Unable to mount root fs on
// unknown-block(0,0)"), or "" when it did not. The text comes from the
// guest: it is cut to a line of at most 200 bytes.
func KernelPanic(console string) string {
	m := panicLine.FindStringSubmatch(console)
	if m == nil {
		return ""
	}
	why := strings.TrimSpace(m[1])
	if len(why) > 200 {
		why = why[:200]
	}
	return strings.ToValidUTF8(why, "?")
}

// prepare makes the machine directory: owner, key, seed, and an overlay
// on base (the image's disk, or a warm state's).
func prepare(ctx context.Context, cfg Config, base string) (*Machine, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(cfg.Dir, cfg.Name))
	if err != nil {
		return nil, err
	}
	// Mkdir, not MkdirAll: two machines of one name must not share it.
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("a machine named %s exists in %s", cfg.Name, cfg.Dir)
		}
		return nil, err
	}
	m := &Machine{Dir: dir, log: cfg.Log.With("vm", cfg.Name), StopGrace: cfg.StopGrace, tail: &tail{}}
	m.Name = cfg.Name
	m.User = cfg.Image.User
	if m.User == "" {
		m.User = image.DefaultUser
	}
	m.Image = cfg.Image.Disk
	m.MAC = newMAC()
	if err := writeOwner(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	fail := func(err error) (*Machine, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	priv, signer, authorized, err := newKey()
	if cfg.Key != nil {
		priv, signer, authorized, err = parseKey(cfg.Key)
	}
	if err != nil {
		return fail(err)
	}
	m.signer, m.authorized = signer, authorized
	if err := os.WriteFile(filepath.Join(dir, keyFile), priv, 0o600); err != nil {
		return fail(err)
	}
	if err := writeSeed(filepath.Join(dir, "seed.iso"), seedFiles(cfg.Name, authorized)); err != nil {
		return fail(err)
	}
	if err := CreateOverlay(ctx, base, filepath.Join(dir, "overlay.qcow2")); err != nil {
		return fail(err)
	}
	return m, nil
}

// launch says how to start qemu: a cold boot from the seed disk, or a
// restore of a saved state (warm.go), whose device set must be the one
// the state was saved with: no seed disk.
type launch struct {
	noSeed   bool   // no seed disk: a warm state's machine
	incoming string // a saved state to restore, "" to boot
	accel    string // "kvm" or "tcg"; "" for KVM when usable
	// isolated: the guest reaches nothing through its network (QEMU's
	// restrict=on), only its forwarded ports reach it.
	isolated bool
}

func (m *Machine) args(cfg Config, l launch) ([]string, error) {
	accel, cpu := "tcg,thread=multi", "max"
	m.Accel = "tcg"
	if l.accel == "kvm" || l.accel == "" && KVMUsable() {
		accel, cpu, m.Accel = "kvm", "host", "kvm"
	}
	var err error
	if m.SSHPort, err = freePort(); err != nil {
		return nil, err
	}
	fwd := fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", m.SSHPort)
	m.Ports = map[int]int{}
	for _, p := range cfg.Forwards {
		hp, err := freePort()
		if err != nil {
			return nil, err
		}
		m.Ports[p] = hp
		fwd += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", hp, p)
	}
	netdev := "user,id=net0,"
	if l.isolated {
		netdev += "restrict=on,"
	}
	args := []string{
		"-name", "turtles-" + cfg.Name,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", accel, "-cpu", cpu,
		"-smp", strconv.Itoa(cfg.CPUs), "-m", strconv.Itoa(cfg.MemoryMB),
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		// Relative to qemu's working directory, the machine's: socket
		// addresses are limited to 108 bytes, machine directories are not.
		"-qmp", "unix:" + qmpSocket + ",server=on,wait=off",
		"-drive", "file=" + filepath.Join(m.Dir, "overlay.qcow2") + ",if=virtio,format=qcow2,cache=unsafe,discard=unmap",
		"-netdev", netdev + fwd, "-device", "virtio-net-pci,netdev=net0,mac=" + m.MAC,
		"-device", "virtio-rng-pci",
		// A new generation ID on every start: a guest restored from a
		// saved state reseeds its RNG (Linux's vmgenid driver).
		"-device", "vmgenid,guid=auto",
		// The guest agent's channel (QGA), how warm starts reach a
		// restored guest before SSH does.
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=qga0,path=" + agentSocket + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=" + agentPort,
	}
	if !l.noSeed {
		args = append(args, "-drive", "file="+filepath.Join(m.Dir, "seed.iso")+",if=virtio,format=raw,readonly=on")
	}
	if l.incoming != "" {
		args = append(args, "-incoming", "exec:cat "+Quote(l.incoming))
	}
	if cfg.Image.Kernel != "" {
		args = append(args, "-kernel", cfg.Image.Kernel, "-append", cfg.Image.Append)
		if cfg.Image.Initrd != "" {
			args = append(args, "-initrd", cfg.Image.Initrd)
		}
	}
	return args, nil
}

// boot starts qemu and waits for SSH.
func (m *Machine) boot(ctx context.Context, cfg Config) error {
	if err := m.launch(cfg, launch{}); err != nil {
		return err
	}
	if err := m.waitSSH(ctx, cfg.BootTimeout); err != nil {
		return fmt.Errorf("%w\nserial console (last lines):\n%s", err, m.ConsoleTail())
	}
	return m.ready(cfg)
}

// ready ends a start that reached SSH: a detached machine's owner is
// written, and the log says how long it took.
func (m *Machine) ready(cfg Config) error {
	if cfg.Detach {
		// From now on the machine lives until someone stops it, or until
		// its owner is gone and a Sweep sees it.
		if err := writeOwnerPID(m.Dir, cfg.Owner); err != nil {
			return err
		}
	}
	m.log.Info("ssh ready", "after", time.Since(m.Started).Round(time.Millisecond), "warm", m.Warm)
	return nil
}

// launch starts qemu as l says, without waiting for the guest.
func (m *Machine) launch(cfg Config, l launch) error {
	args, err := m.args(cfg, l)
	if err != nil {
		return err
	}
	m.cfg, m.how = cfg, l
	how := "KVM"
	if m.Accel == "tcg" {
		how = "TCG (no usable /dev/kvm: expect slow boots)"
	}
	verb := "booting"
	if l.incoming != "" {
		verb = "restoring a saved state of"
	}
	fmt.Fprintf(cfg.Console, "turtles: %s %s as %s with %s, %d CPUs, %d MiB\n",
		verb, filepath.Base(cfg.Image.Disk), cfg.Name, how, cfg.CPUs, cfg.MemoryMB)
	m.log.Info("booting", "image", cfg.Image.Disk, "accel", m.Accel, "cpus", cfg.CPUs, "memory_mb", cfg.MemoryMB, "ssh_port", m.SSHPort)

	cmd := exec.Command(cfg.QEMU, args...)
	cmd.Dir = m.Dir
	if cfg.Detach {
		f, err := os.Create(filepath.Join(m.Dir, consoleFile))
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start qemu: %w", err)
		}
		m.PID = cmd.Process.Pid
		// While this process runs, qemu is its child: Wait says exactly
		// when it exits (and reaps it). Asking /proc instead can miss a
		// qemu in the middle of its exec, whose command line is still
		// empty, and call the boot failed.
		m.done = make(chan struct{})
		go func() {
			m.waitErr = cmd.Wait()
			close(m.done)
		}()
	} else {
		w := io.MultiWriter(cfg.Console, m.tail)
		cmd.Stdout, cmd.Stderr = w, w
		// Pdeathsig fires when the thread that forked exits, so the fork
		// happens on a locked thread that lives until qemu exits.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		m.cmd, m.done = cmd, make(chan struct{})
		started := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := cmd.Start(); err != nil {
				started <- err
				return
			}
			started <- nil
			m.waitErr = cmd.Wait()
			close(m.done)
		}()
		if err := <-started; err != nil {
			m.done = nil
			return fmt.Errorf("start qemu: %w", err)
		}
		m.PID = cmd.Process.Pid
	}
	m.Started = time.Now().UTC()
	return m.writeState()
}

func (m *Machine) writeState() error {
	b, err := json.MarshalIndent(m.State, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(m.Dir, stateFile))
}

// Attach returns a handle on a machine another process started in dir
// (Detach), for Exec, Copy and Stop. Its StopGrace is 0: set it before
// Stop to give the guest time to power down.
func Attach(dir, name string) (*Machine, error) {
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("bad machine name %q", name)
	}
	d := filepath.Join(dir, name)
	b, err := os.ReadFile(filepath.Join(d, stateFile))
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	m := &Machine{Dir: d, log: slog.New(slog.DiscardHandler), tail: &tail{}}
	if err := json.Unmarshal(b, &m.State); err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	key, err := os.ReadFile(filepath.Join(d, keyFile))
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	if m.signer, err = ssh.ParsePrivateKey(key); err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	return m, nil
}

// KeyFile is the private key that SSH into the machine accepts.
func (m *Machine) KeyFile() string { return filepath.Join(m.Dir, keyFile) }

// ConsoleTail returns the last lines of the serial console and of qemu's
// own messages.
func (m *Machine) ConsoleTail() string {
	if m.cmd == nil {
		if b, err := os.ReadFile(filepath.Join(m.Dir, consoleFile)); err == nil {
			m.tail.Write(b)
		}
	}
	return m.tail.String()
}

// exited reports whether qemu is gone.
func (m *Machine) exited() bool {
	if m.done != nil {
		select {
		case <-m.done:
			return true
		default:
			return false
		}
	}
	return !qemuAlive(m.PID, m.Dir)
}

// Stop shuts the machine down (ACPI powerdown, then QMP quit, then
// SIGKILL) and removes its directory. It is safe to call more than once.
func (m *Machine) Stop(ctx context.Context) error { return m.stop(ctx, true) }

// Discard is Stop without the powerdown: QEMU quits at once. For a
// machine whose disk is thrown away, a guest's shutdown saves nothing and
// costs StopGrace.
func (m *Machine) Discard(ctx context.Context) error { return m.stop(ctx, false) }

func (m *Machine) stop(ctx context.Context, powerdown bool) error {
	m.mu.Lock()
	if m.client != nil {
		m.client.Close()
		m.client = nil
	}
	m.mu.Unlock()
	if m.PID > 0 && !m.exited() {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		q, err := DialQMP(qctx, filepath.Join(m.Dir, qmpSocket))
		if err == nil {
			if !powerdown {
				q.Quit(qctx)
			} else if err := q.Powerdown(qctx); err == nil && m.wait(ctx, m.StopGrace) {
				m.log.Info("stopped by ACPI powerdown")
			} else if !m.exited() {
				q.Quit(qctx)
			}
			q.Close()
		}
		cancel()
		if !m.wait(ctx, 3*time.Second) {
			m.log.Warn("qemu did not quit: killing it", "pid", m.PID)
			syscall.Kill(m.PID, syscall.SIGKILL)
			m.wait(context.Background(), 5*time.Second)
		}
	}
	if err := os.RemoveAll(m.Dir); err != nil {
		return fmt.Errorf("vm %s: remove %s: %w", m.Name, m.Dir, err)
	}
	return nil
}

// wait waits up to d for qemu to exit and reports whether it did.
func (m *Machine) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	if m.done != nil {
		select {
		case <-m.done:
			return true
		case <-t.C:
		case <-ctx.Done():
		}
		return m.exited()
	}
	for i := 0; !m.exited(); i++ {
		select {
		case <-t.C:
			return m.exited()
		case <-ctx.Done():
			return m.exited()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// Status asks QEMU over QMP whether the guest runs.
func (m *Machine) Status(ctx context.Context) (Status, error) {
	q, err := DialQMP(ctx, filepath.Join(m.Dir, qmpSocket))
	if err != nil {
		return Status{}, err
	}
	defer q.Close()
	return q.QueryStatus(ctx)
}

// newMAC returns a random address in QEMU's locally administered range.
func newMAC() string {
	b := make([]byte, 3)
	rand.Read(b)
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.ReplaceAll(string(t.buf), "\r", "")
	if i := strings.IndexByte(s, '\n'); len(t.buf) == tailSize && i >= 0 {
		s = s[i+1:] // drop the partial first line
	}
	return s
}
