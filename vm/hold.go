package vm

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/turtles-ci/turtles/image"
)

// Held machines: a machine whose task failed, saved as it is (Hold) so
// that someone resumes it elsewhere (Resume) in the state it failed in:
// the files its test wrote, the processes it started.
//
// A held machine is one gzip-compressed tar archive:
//
//	hold.json      HoldMeta: the image by the sha256 of its files, the shape
//	id_ed25519     the machine's SSH key, the one its guest authorizes
//	seed.iso       the seed disk, for a machine that booted cold with it
//	overlay.qcow2  the disk's changes, a qcow2 over the image's own disk
//	memory         the memory and devices, as QEMU's migration saved them
//
// The overlay is rebased onto the image's disk (a warm machine's overlay
// is over a saved state's disk, which the resuming host lacks), so the
// image alone, found by its sha256 in an image cache, completes the disk.

// holdFormat changes when the archive's content changes.
const holdFormat = 1

// Files of a held machine's archive.
const (
	holdMetaFile = "hold.json"
	holdMemory   = "memory"
	holdOverlay  = "overlay.qcow2"
	holdSeed     = "seed.iso"
)

// HoldMeta describes a held machine: what Resume needs to start the same
// machine again.
type HoldMeta struct {
	Format int `json:"format"`
	// Image is the image's name (its manifest's); DiskSHA256,
	// KernelSHA256 and InitrdSHA256 are its files' hashes, by which the
	// resuming host finds it.
	Image string `json:"image"`
	// Ref is how the task named the image: a pin (NAME-SHA256) that
	// `turtles image pull` fetches, or a name.
	Ref          string `json:"ref,omitempty"`
	DiskSHA256   string `json:"disk_sha256"`
	KernelSHA256 string `json:"kernel_sha256,omitempty"`
	InitrdSHA256 string `json:"initrd_sha256,omitempty"`
	Append       string `json:"append,omitempty"`
	GuestAgent   bool   `json:"guest_agent,omitempty"`
	// QEMU is `qemu --version` of the machine's QEMU: another version
	// may refuse its memory.
	QEMU     string `json:"qemu"`
	Accel    string `json:"accel"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
	MAC      string `json:"mac"`
	User     string `json:"user"`
	// Seed: the machine has the seed disk (a cold boot's).
	Seed bool      `json:"seed,omitempty"`
	Held time.Time `json:"held"`
	// MemorySize and OverlaySize are the uncompressed sizes.
	MemorySize  int64 `json:"memory_size"`
	OverlaySize int64 `json:"overlay_size"`
}

// HoldTooLargeError is a held machine whose archive grew past the limit:
// nothing of it is kept.
type HoldTooLargeError struct {
	Limit int64
	// Memory and Overlay are the uncompressed sizes of what was to go in.
	Memory, Overlay int64
}

func (e *HoldTooLargeError) Error() string {
	return fmt.Sprintf("the held machine is over the limit of %d MiB compressed (%d MiB of memory, %d MiB of disk changes before compression)",
		e.Limit>>20, e.Memory>>20, e.Overlay>>20)
}

// Hold saves the machine as it is into a compressed archive at path, of
// at most limit bytes, recording ref as how the task named the image (a HoldTooLargeError when it would be more), and
// quits its QEMU: call Stop afterwards, as always. The guest is stopped
// at once, so its processes stop where they are; its SSH connection is
// closed first. Only a machine this process started can be held. On error
// nothing is left at path.
func (m *Machine) Hold(ctx context.Context, path string, limit int64, ref string) (HoldMeta, error) {
	cfg := m.cfg
	if cfg.Image == nil || m.cmd == nil && m.done == nil {
		return HoldMeta{}, errors.New("hold: only a machine this process started can be held")
	}
	if limit <= 0 {
		return HoldMeta{}, fmt.Errorf("hold: limit %d, want more than 0", limit)
	}
	meta := HoldMeta{Format: holdFormat, Image: cfg.Image.Name, Ref: ref, Append: cfg.Image.Append, GuestAgent: cfg.Image.GuestAgent,
		Accel: m.Accel, CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB, MAC: m.MAC, User: m.User, Seed: !m.how.noSeed}
	var err error
	if meta.QEMU, err = qemuVersion(ctx, cfg.QEMU); err != nil {
		return HoldMeta{}, fmt.Errorf("hold: %w", err)
	}
	for _, f := range []struct {
		path, sum string
		to        *string
	}{{cfg.Image.Disk, cfg.Image.SHA256, &meta.DiskSHA256}, {cfg.Image.Kernel, cfg.Image.KernelSHA256, &meta.KernelSHA256},
		{cfg.Image.Initrd, cfg.Image.InitrdSHA256, &meta.InitrdSHA256}} {
		if f.path == "" {
			continue
		}
		if *f.to = f.sum; f.sum == "" {
			if *f.to, err = image.HashFile(f.path); err != nil {
				return HoldMeta{}, fmt.Errorf("hold: hash the image: %w", err)
			}
		}
	}

	m.mu.Lock()
	if m.client != nil {
		m.client.Close()
		m.client = nil
	}
	m.mu.Unlock()
	memory := filepath.Join(m.Dir, "held-memory")
	defer os.Remove(memory)
	if err := m.saveMemory(ctx, memory); err != nil {
		return HoldMeta{}, fmt.Errorf("hold: save the memory: %w", err)
	}
	overlay := filepath.Join(m.Dir, "overlay.qcow2")
	if m.Warm {
		// Its overlay is over the saved state's disk: put what that disk
		// changed into the overlay, over the image's disk alone.
		format, _, err := diskInfo(cfg.Image.Disk)
		if err != nil {
			return HoldMeta{}, fmt.Errorf("hold: %w", err)
		}
		out, err := exec.CommandContext(ctx, qemuImg(cfg.QEMU), "rebase", "-f", "qcow2", "-b", cfg.Image.Disk, "-F", format, overlay).CombinedOutput()
		if err != nil {
			return HoldMeta{}, fmt.Errorf("hold: qemu-img rebase: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	files := []string{keyFile}
	if meta.Seed {
		files = append(files, holdSeed)
	}
	for _, f := range []struct {
		path string
		size *int64
	}{{memory, &meta.MemorySize}, {overlay, &meta.OverlaySize}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return HoldMeta{}, fmt.Errorf("hold: %w", err)
		}
		*f.size = fi.Size()
	}
	meta.Held = time.Now().UTC()
	err = writeHold(path, limit, meta, func(add func(name, path string) error) error {
		for _, f := range files {
			if err := add(f, filepath.Join(m.Dir, f)); err != nil {
				return err
			}
		}
		if err := add(holdOverlay, overlay); err != nil {
			return err
		}
		return add(holdMemory, memory)
	})
	if err != nil {
		var tl *HoldTooLargeError
		if errors.As(err, &tl) {
			tl.Memory, tl.Overlay = meta.MemorySize, meta.OverlaySize
			return meta, tl
		}
		return meta, fmt.Errorf("hold: %w", err)
	}
	m.log.Info("machine held", "path", path, "memory", meta.MemorySize, "overlay", meta.OverlaySize)
	return meta, nil
}

// saveMemory stops the guest, saves its memory and devices to path and
// quits QEMU.
func (m *Machine) saveMemory(ctx context.Context, path string) error {
	q, err := DialQMP(ctx, filepath.Join(m.Dir, qmpSocket))
	if err != nil {
		return err
	}
	defer q.Close()
	if _, err := q.Execute(ctx, "stop", nil); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate", map[string]any{"uri": "exec:cat > " + Quote(path)}); err != nil {
		return err
	}
	if err := untilMigrated(ctx, q, "completed"); err != nil {
		return err
	}
	q.Quit(ctx)
	if !m.wait(ctx, 10*time.Second) {
		return errors.New("qemu did not quit after the save")
	}
	return nil
}

// qemuImg is the qemu-img beside the QEMU binary qemu, or in PATH.
func qemuImg(qemu string) string {
	if strings.Contains(qemu, "/") {
		p := filepath.Join(filepath.Dir(qemu), "qemu-img")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "qemu-img"
}

// writeHold writes the archive of a held machine to path: meta, then
// what files adds, compressed, failing with a HoldTooLargeError as soon
// as it grows past limit.
func writeHold(path string, limit int64, meta HoldMeta, files func(add func(name, path string) error) error) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	lw := &limitWriter{w: f, left: limit, limit: limit}
	zw, err := gzip.NewWriterLevel(lw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: holdMetaFile, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: meta.Held}); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	err = files(func(name, p string) error {
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), Typeflag: tar.TypeReg, ModTime: meta.Held}); err != nil {
			return err
		}
		_, err = io.CopyBuffer(tw, src, make([]byte, 1<<20))
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Sync()
}

// limitWriter fails with a HoldTooLargeError once more than limit bytes
// were written.
type limitWriter struct {
	w           io.Writer
	left, limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, &HoldTooLargeError{Limit: l.limit}
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// Held is a held machine unpacked into a machine directory, to Resume.
type Held struct {
	Meta HoldMeta
	Dir  string
	name string
}

// Unpack unpacks a held machine's archive from r into dir/name (made
// now; it must not exist), owned by this process as a machine is, so
// that a Sweep removes it if this process dies. Only the archive's known
// files are taken, each at most maxSize bytes. On error nothing is left.
func Unpack(r io.Reader, dir, name string, maxSize int64) (*Held, error) {
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("bad machine name %q", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(d, 0o700); err != nil {
		return nil, err
	}
	h := &Held{Dir: d, name: name}
	if err := h.unpack(r, maxSize); err != nil {
		os.RemoveAll(d)
		return nil, fmt.Errorf("unpack the held machine: %w", err)
	}
	return h, nil
}

func (h *Held) unpack(r io.Reader, maxSize int64) error {
	if err := writeOwner(h.Dir); err != nil {
		return err
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	known := map[string]bool{holdMetaFile: true, keyFile: true, holdSeed: true, holdOverlay: true, holdMemory: true}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if !known[hdr.Name] || seen[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("unexpected entry %q in the archive", hdr.Name)
		}
		if hdr.Size > maxSize {
			return fmt.Errorf("%s has %d bytes, more than %d", hdr.Name, hdr.Size, maxSize)
		}
		seen[hdr.Name] = true
		f, err := os.OpenFile(filepath.Join(h.Dir, hdr.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(f, io.LimitReader(tr, hdr.Size), make([]byte, 1<<20))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, f := range []string{holdMetaFile, keyFile, holdOverlay, holdMemory} {
		if !seen[f] {
			return fmt.Errorf("no %s in the archive", f)
		}
	}
	b, err := os.ReadFile(filepath.Join(h.Dir, holdMetaFile))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &h.Meta); err != nil {
		return fmt.Errorf("%s: %w", holdMetaFile, err)
	}
	if h.Meta.Format != holdFormat {
		return fmt.Errorf("held in format %d; this turtles reads format %d", h.Meta.Format, holdFormat)
	}
	if h.Meta.Seed && !seen[holdSeed] {
		return fmt.Errorf("no %s in the archive", holdSeed)
	}
	return h.Meta.check()
}

// Values a HoldMeta may hold. Its fields become QEMU's and ssh's
// arguments on the resuming host: a stored archive someone changed must
// not add options to either.
var (
	macRe  = regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`)
	userRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	sumRe  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// check says what in meta a machine that turtles held could not have.
func (meta HoldMeta) check() error {
	bad := func(what string, v any) error { return fmt.Errorf("%s: bad %s %q", holdMetaFile, what, fmt.Sprint(v)) }
	switch {
	case meta.CPUs < 1 || meta.CPUs > 64:
		return bad("cpus", meta.CPUs)
	case meta.MemoryMB < 16 || meta.MemoryMB > 1<<20:
		return bad("memory_mb", meta.MemoryMB)
	case meta.Accel != "kvm" && meta.Accel != "tcg":
		return bad("accel", meta.Accel)
	case !macRe.MatchString(meta.MAC):
		return bad("mac", meta.MAC)
	case !userRe.MatchString(meta.User):
		return bad("user", meta.User)
	case !sumRe.MatchString(meta.DiskSHA256):
		return bad("disk_sha256", meta.DiskSHA256)
	case meta.KernelSHA256 != "" && !sumRe.MatchString(meta.KernelSHA256):
		return bad("kernel_sha256", meta.KernelSHA256)
	case meta.InitrdSHA256 != "" && !sumRe.MatchString(meta.InitrdSHA256):
		return bad("initrd_sha256", meta.InitrdSHA256)
	case len(meta.Append) > 4096 || strings.ContainsFunc(meta.Append, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return bad("append", meta.Append)
	}
	return nil
}

// Remove removes the unpacked machine (after a Resume that failed, or
// instead of one); a resumed machine's Stop removes it too.
func (h *Held) Remove() error { return os.RemoveAll(h.Dir) }

// ResumeConfig says how to resume a held machine.
type ResumeConfig struct {
	// Image is the held machine's image on this host: its files must
	// have the hashes the machine was held with.
	Image *image.Manifest
	// QEMU is the emulator binary; required.
	QEMU string
	// Timeout bounds the wait for the restored guest's SSH; required.
	Timeout time.Duration
	// Console receives the serial console; may be nil.
	Console io.Writer
	Log     *slog.Logger
	// Network lets the guest reach the network (the host's loopback
	// included, as QEMU's user-mode network does); without it the guest
	// reaches nothing and only its SSH port reaches it. A held machine
	// ran someone's test: it is isolated unless asked.
	Network bool
}

// Resume starts the held machine with its memory and disk as they were
// held, and waits until SSH accepts its key; its Timing says how long
// the memory took to load, the clock to be set (Refresh) and SSH. The guest's clock is set to
// the host's through its agent, if it has one. On error the unpacked
// machine is removed.
func (h *Held) Resume(ctx context.Context, cfg ResumeConfig) (*Machine, error) {
	m, err := h.resume(ctx, cfg)
	if err != nil {
		h.Remove()
		return nil, err
	}
	return m, nil
}

func (h *Held) resume(ctx context.Context, rc ResumeConfig) (*Machine, error) {
	meta := h.Meta
	if err := CheckImage(meta, rc.Image); err != nil {
		return nil, err
	}
	if meta.Accel == "kvm" && !KVMUsable() {
		return nil, errors.New("the machine was held under KVM, and /dev/kvm is not usable here")
	}
	if rc.QEMU == "" || rc.Timeout <= 0 {
		return nil, errors.New("resume: QEMU and Timeout are required")
	}
	if rc.Console == nil {
		rc.Console = io.Discard
	}
	if v, err := qemuVersion(ctx, rc.QEMU); err == nil && v != meta.QEMU {
		fmt.Fprintf(rc.Console, "turtles: the machine was held by %s; this is %s: it may refuse the memory\n", meta.QEMU, v)
	}
	// The overlay names the disk where the bot had it: name this host's.
	overlay := filepath.Join(h.Dir, holdOverlay)
	format, _, err := diskInfo(rc.Image.Disk)
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, qemuImg(rc.QEMU), "rebase", "-u", "-f", "qcow2", "-b", rc.Image.Disk, "-F", format, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img rebase: %w: %s", err, strings.TrimSpace(string(out)))
	}
	img := *rc.Image
	img.Append = meta.Append
	cfg := Config{Image: &img, Dir: filepath.Dir(h.Dir), Name: h.name, CPUs: meta.CPUs, MemoryMB: meta.MemoryMB,
		BootTimeout: rc.Timeout, StopGrace: time.Second, QEMU: rc.QEMU, Console: rc.Console}
	if cfg.Log = rc.Log; cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m, err := attachHeld(h, cfg)
	if err != nil {
		return nil, err
	}
	memory := filepath.Join(h.Dir, holdMemory)
	if err := m.launch(cfg, launch{noSeed: !meta.Seed, incoming: memory, accel: meta.Accel, isolated: !rc.Network}); err != nil {
		return nil, err
	}
	fail := func(err error) (*Machine, error) {
		m.StopGrace = 0
		console := m.ConsoleTail()
		m.Stop(context.Background())
		if console != "" {
			err = fmt.Errorf("%w\nserial console and QEMU (last lines):\n%s", err, console)
		}
		return nil, err
	}
	began := time.Now()
	rctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	if err := m.untilRunning(rctx); err != nil {
		return fail(fmt.Errorf("QEMU did not resume the held machine: %w", err))
	}
	os.Remove(memory) // loaded
	m.Timing.Load = time.Since(began)
	if meta.GuestAgent {
		// Its clock stood still while it was held.
		actx, c := context.WithTimeout(rctx, 10*time.Second)
		if g, err := DialQGA(actx, filepath.Join(m.Dir, agentSocket)); err == nil {
			g.Execute(actx, "guest-set-time", map[string]any{"time": time.Now().UnixNano()})
			g.Close()
		}
		c()
	}
	m.Timing.Refresh = time.Since(began) - m.Timing.Load
	if err := m.waitSSH(rctx, rc.Timeout); err != nil {
		return fail(fmt.Errorf("SSH did not answer in the resumed machine: %w", err))
	}
	m.Timing.SSH = time.Since(began) - m.Timing.Load - m.Timing.Refresh
	if err := m.writeState(); err != nil {
		return fail(err)
	}
	return m, nil
}

// attachHeld makes the Machine of an unpacked held machine.
func attachHeld(h *Held, cfg Config) (*Machine, error) {
	m := &Machine{Dir: h.Dir, log: cfg.Log.With("vm", h.name), StopGrace: cfg.StopGrace, tail: &tail{}}
	m.Name, m.User, m.Image, m.MAC = h.name, h.Meta.User, cfg.Image.Disk, h.Meta.MAC
	key, err := os.ReadFile(filepath.Join(h.Dir, keyFile))
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("the held machine's key: %w", err)
	}
	m.signer = signer
	return m, nil
}

// CheckImage says whether img is the image the machine was held with:
// its files' hashes (hashed now where its manifest does not say).
func CheckImage(meta HoldMeta, img *image.Manifest) error {
	for _, f := range []struct {
		what, path, sum, want string
	}{{"disk", img.Disk, img.SHA256, meta.DiskSHA256}, {"kernel", img.Kernel, img.KernelSHA256, meta.KernelSHA256},
		{"initrd", img.Initrd, img.InitrdSHA256, meta.InitrdSHA256}} {
		if f.want == "" && f.path == "" {
			continue
		}
		if f.path == "" || f.want == "" {
			return fmt.Errorf("image %s: its %s is not the held machine's", img.Name, f.what)
		}
		sum := f.sum
		if sum == "" {
			var err error
			if sum, err = image.HashFile(f.path); err != nil {
				return err
			}
		}
		if sum != f.want {
			return fmt.Errorf("image %s: its %s has sha256 %s, the held machine's %s", img.Name, f.what, sum, f.want)
		}
	}
	return nil
}
