package vm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/turtles-ci/turtles/image"
)

// Warm starts: a machine restored from a saved memory state instead of a
// cold boot.
//
// The first time a machine of an image and shape (CPUs, memory, QEMU and
// its version, accelerator) is needed, it boots cold without a seed disk
// (so no key of anyone is in it), waits until sshd runs, and its memory
// and disk are saved into Config.Warm/SHA256/, named by the sha256 of
// all those inputs (warmKey). Every later machine of that image and shape
// gets a fresh overlay on that frozen disk and QEMU loads the memory.
//
// Before the machine is handed over, the guest agent makes it its own
// (refresh): the clock set to the host's, a random seed written to the
// kernel RNG (which vmgenid has made reseed too), a new MAC, machine-id
// and SSH host keys, and the run's key as the only authorized key. Only
// then does SSH answer with this run's key.
//
// A saved state that is not right (another size or hash than recorded,
// made by another QEMU or for another shape, refused by QEMU) is never
// used: the machine boots cold, the log says why, and the state is made
// again.

// warmFormat changes when what a saved state holds or how machines are
// started changes, so that older states are not used.
const warmFormat = 1

// warmKey is everything a saved state depends on.
type warmKey struct {
	Format   int    `json:"format"`
	QEMU     string `json:"qemu"` // qemu --version
	Accel    string `json:"accel"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
	Disk     string `json:"disk"` // the image's disk: its sha256 when known, else path, size, time
	Kernel   string `json:"kernel,omitempty"`
	Initrd   string `json:"initrd,omitempty"`
	Append   string `json:"append,omitempty"`
}

// warmMeta is DIR/SHA256/meta.json: the key and what was saved.
type warmMeta struct {
	Key         warmKey   `json:"key"`
	StateSize   int64     `json:"state_size"`
	StateSHA256 string    `json:"state_sha256"`
	DiskSize    int64     `json:"disk_size"`
	DiskSHA256  string    `json:"disk_sha256"`
	Saved       time.Time `json:"saved"`
	Took        float64   `json:"took_seconds"`
	// Fetched is when the state came from another bot; zero when saved
	// here. Took is then how long the fetch took.
	Fetched time.Time `json:"fetched,omitzero"`
}

// Files of a saved state.
const (
	warmDisk     = "disk.qcow2"
	warmMemory   = "memory"
	warmMetaFile = "meta.json"
)

// errNotWarm is why a machine could not start warm; the caller boots it
// cold and says why.
type errNotWarm struct {
	reason string
	err    error
}

func (e *errNotWarm) Error() string {
	if e.err == nil {
		return e.reason
	}
	return e.reason + ": " + e.err.Error()
}
func (e *errNotWarm) Unwrap() error { return e.err }

func notWarm(reason string, err error) error { return &errNotWarm{reason: reason, err: err} }

// qemuVersions caches `qemu --version` per binary.
var qemuVersions sync.Map

func qemuVersion(ctx context.Context, qemu string) (string, error) {
	if v, ok := qemuVersions.Load(qemu); ok {
		return v.(string), nil
	}
	out, err := exec.CommandContext(ctx, qemu, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", qemu, err)
	}
	v := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	qemuVersions.Store(qemu, v)
	return v, nil
}

// keyOf returns cfg's warm key and its name.
func keyOf(ctx context.Context, cfg Config) (warmKey, string, error) {
	v, err := qemuVersion(ctx, cfg.QEMU)
	if err != nil {
		return warmKey{}, "", err
	}
	accel := "tcg"
	if KVMUsable() {
		accel = "kvm"
	}
	k := warmKey{Format: warmFormat, QEMU: v, Accel: accel, CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB,
		Append: cfg.Image.Append}
	var errs []error
	k.Disk, err = fileID(cfg.Image.Disk, cfg.Image.SHA256)
	errs = append(errs, err)
	if cfg.Image.Kernel != "" {
		k.Kernel, err = fileID(cfg.Image.Kernel, cfg.Image.KernelSHA256)
		errs = append(errs, err)
	}
	if cfg.Image.Initrd != "" {
		k.Initrd, err = fileID(cfg.Image.Initrd, cfg.Image.InitrdSHA256)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return warmKey{}, "", err
	}
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return k, hex.EncodeToString(sum[:]), nil
}

// fileID names a file of the image by its sha256 when the manifest has
// it, else by its path, size and modification time.
func fileID(path, sha string) (string, error) {
	if sha != "" {
		return "sha256:" + sha, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	abs, _ := filepath.Abs(path)
	return fmt.Sprintf("%s:%d:%d", abs, fi.Size(), fi.ModTime().UnixNano()), nil
}

// startWarm starts a machine from the saved state of cfg's image and
// shape, saving it first when there is none. An errNotWarm says why it
// could not; nothing of the machine is left then.
func startWarm(ctx context.Context, cfg Config) (*Machine, error) {
	if !cfg.Image.GuestAgent {
		return nil, notWarm("the image has no guest agent (see docs/vms.md)", nil)
	}
	key, name, err := keyOf(ctx, cfg)
	if err != nil {
		return nil, notWarm("the image's files", err)
	}
	dir := filepath.Join(cfg.Warm, name)
	meta, err := ensureState(ctx, cfg, key, dir)
	if err != nil {
		return nil, err
	}
	m, err := restore(ctx, cfg, dir, meta)
	if err != nil {
		var nw *errNotWarm
		if errors.As(err, &nw) && nw.reason == reasonRefused {
			// QEMU would not load it: make it again next time.
			cfg.Log.Warn("a saved state was refused: removing it", "dir", dir, "err", err)
			removeState(dir)
		}
		return nil, err
	}
	return m, nil
}

const reasonRefused = "QEMU did not restore the saved state"

// ensureState returns the meta of the saved state in dir, made now if
// there is none or the one there is not right. One process makes it while
// others wait (a lock beside dir).
func ensureState(ctx context.Context, cfg Config, key warmKey, dir string) (warmMeta, error) {
	if err := os.MkdirAll(cfg.Warm, 0o755); err != nil {
		return warmMeta{}, notWarm("the saved states' directory", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return warmMeta{}, notWarm("lock the saved state", err)
	}
	defer lock.Close()
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(lock.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if err != nil {
			return warmMeta{}, notWarm("lock the saved state", err)
		}
	case <-ctx.Done():
		lock.Close() // ends the flock wait
		return warmMeta{}, ctx.Err()
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if _, err := os.Stat(dir); err == nil {
		meta, err := checkState(dir, key)
		if err == nil {
			// A state saved before this bot shared them, or whose
			// publishing failed, is offered now.
			if _, err := os.Stat(dir + publishedSuffix); err != nil && cfg.Share != nil && meta.Fetched.IsZero() {
				publish(ctx, cfg, dir)
			}
			return meta, nil
		}
		fmt.Fprintf(cfg.Console, "turtles: the saved state is not right (%v): making it again\n", err)
		cfg.Log.Warn("saved state not right: making it again", "dir", dir, "err", err)
		removeState(dir)
	}
	name := filepath.Base(dir)
	if cfg.Share != nil {
		meta, err := fetchState(ctx, cfg, key, name, dir)
		if err == nil {
			fmt.Fprintf(cfg.Console, "turtles: fetched the saved state another bot made, in %.1fs (%d MiB of memory)\n", meta.Took, meta.StateSize>>20)
			return meta, nil
		}
		if ctx.Err() != nil {
			return warmMeta{}, ctx.Err()
		}
		fmt.Fprintf(cfg.Console, "turtles: no saved state from another bot (%v)\n", err)
		cfg.Log.Info("no saved state from another bot", "state", name, "err", err)
	}
	fmt.Fprintf(cfg.Console, "turtles: first machine of %s with %d CPUs and %d MiB: booting it cold and saving its state, for warm starts\n",
		filepath.Base(cfg.Image.Disk), cfg.CPUs, cfg.MemoryMB)
	meta, err := saveState(ctx, cfg, key, dir)
	if err != nil {
		return warmMeta{}, err
	}
	fmt.Fprintf(cfg.Console, "turtles: saved the state in %.1fs (%d MiB of memory)\n", meta.Took, meta.StateSize>>20)
	if cfg.Share != nil {
		publish(ctx, cfg, dir)
	}
	return meta, nil
}

// StateShare shares saved states between bots (image/cache.States is
// one: files from peers, pins in the store).
type StateShare interface {
	// Fetch puts the memory and disk.qcow2 of the state name another bot
	// published into dir, and returns its meta.json as published.
	Fetch(ctx context.Context, name, dir string) ([]byte, error)
	// Publish offers the saved state name in dir to other bots.
	Publish(ctx context.Context, name, dir string) error
}

// fetchState gets the state name from cfg.Share into dir: the files as
// published, checked there against their pin, and here against key; the
// disk's backing file pointed at this host's image; a meta.json of the
// files as they are here. Nothing is left in dir's place on error.
func fetchState(ctx context.Context, cfg Config, key warmKey, name, dir string) (warmMeta, error) {
	began := time.Now()
	tmp := filepath.Join(cfg.Warm, ".fetching-"+name)
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return warmMeta{}, err
	}
	defer os.RemoveAll(tmp)
	b, err := cfg.Share.Fetch(ctx, name, tmp)
	if err != nil {
		return warmMeta{}, err
	}
	var meta warmMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return warmMeta{}, fmt.Errorf("its meta.json: %w", err)
	}
	if meta.Key != key {
		return warmMeta{}, fmt.Errorf("published for another machine: %+v, want %+v", meta.Key, key)
	}
	// The overlay names the publisher's path of the image: a copy of it
	// (the fetched file is the cache's, shared) names this host's.
	disk := filepath.Join(tmp, warmDisk)
	if err := copyOut(disk); err != nil {
		return warmMeta{}, err
	}
	format, _, err := diskInfo(cfg.Image.Disk)
	if err != nil {
		return warmMeta{}, err
	}
	base, err := filepath.Abs(cfg.Image.Disk)
	if err != nil {
		return warmMeta{}, err
	}
	img := "qemu-img" // beside the emulator when that is a path
	if strings.ContainsRune(cfg.QEMU, '/') {
		if p := filepath.Join(filepath.Dir(cfg.QEMU), "qemu-img"); fileExists(p) {
			img = p
		}
	}
	if out, err := exec.CommandContext(ctx, img, "rebase", "-u", "-f", "qcow2", "-b", base, "-F", format, disk).CombinedOutput(); err != nil {
		return warmMeta{}, fmt.Errorf("point the overlay at %s: %w: %s", base, err, out)
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return warmMeta{}, err
	}
	meta.DiskSize = fi.Size()
	if meta.DiskSHA256, err = image.HashFile(disk); err != nil {
		return warmMeta{}, err
	}
	os.Chmod(disk, 0o444)
	meta.Fetched = time.Now().UTC()
	meta.Took = time.Since(began).Seconds()
	out, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, warmMetaFile), out, 0o444); err != nil {
		return warmMeta{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return warmMeta{}, err
	}
	return checkState(dir, key)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// copyOut replaces the file at path by a private copy of it, so that a
// change to it does not reach its other links.
func copyOut(path string) error {
	b, err := os.ReadFile(path) // an overlay: a few MiB
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// PruneStates removes the saved states in dir whose image is gone: have
// says whether the image file a state was made from (its key's disk,
// kernel and initrd: "sha256:HEX", or a path, size and time) is still
// there. A state being made or checked (its lock held) is kept. It
// returns the names removed.
func PruneStates(dir string, have func(file string) bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(filepath.Join(p, warmMetaFile))
		var meta warmMeta
		if err == nil {
			err = json.Unmarshal(b, &meta)
		}
		if err == nil && (have(meta.Key.Disk) && (meta.Key.Kernel == "" || have(meta.Key.Kernel)) && (meta.Key.Initrd == "" || have(meta.Key.Initrd))) {
			continue
		}
		lock, err := os.OpenFile(p+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return removed, err
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			removeState(p)
			removed = append(removed, name)
		}
		lock.Close()
	}
	return removed, nil
}

// HaveFile is PruneStates's have for files outside the image cache: a
// path, size and time that still match.
func HaveFile(id string) bool {
	i := strings.LastIndexByte(id, ':')
	j := strings.LastIndexByte(id[:max(i, 0)], ':')
	if i < 0 || j < 0 {
		return false
	}
	got, err := fileID(id[:j], "")
	return err == nil && got == id
}

// publishedSuffix marks, beside a state's directory, that it was
// published.
const publishedSuffix = ".published"

// publish offers the state in dir to other bots (cfg.Share), once.
func publish(ctx context.Context, cfg Config, dir string) {
	name := filepath.Base(dir)
	if err := cfg.Share.Publish(ctx, name, dir); err != nil {
		cfg.Log.Warn("could not offer the saved state to other bots", "state", name, "err", err)
		return
	}
	os.WriteFile(dir+publishedSuffix, nil, 0o644)
}

// removeState removes a saved state (its files are read-only).
func removeState(dir string) {
	os.Remove(dir + publishedSuffix)
	os.RemoveAll(dir)
}

// verified remembers the files whose hash was checked in this process,
// by path, size and modification time: each is hashed once, not at every
// start (290 MiB of memory take a second).
var verified sync.Map

// checkState reads dir's meta and checks it against key and the files:
// sizes always, hashes once per process.
func checkState(dir string, key warmKey) (warmMeta, error) {
	var meta warmMeta
	b, err := os.ReadFile(filepath.Join(dir, warmMetaFile))
	if err != nil {
		return meta, err
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return meta, fmt.Errorf("meta.json: %w", err)
	}
	if meta.Key != key {
		return meta, fmt.Errorf("made for another machine: %+v, want %+v", meta.Key, key)
	}
	for _, f := range []struct {
		name string
		size int64
		sum  string
	}{{warmMemory, meta.StateSize, meta.StateSHA256}, {warmDisk, meta.DiskSize, meta.DiskSHA256}} {
		p := filepath.Join(dir, f.name)
		fi, err := os.Stat(p)
		if err != nil {
			return meta, err
		}
		if fi.Size() != f.size {
			return meta, fmt.Errorf("%s has %d bytes, %d were saved", f.name, fi.Size(), f.size)
		}
		id := fmt.Sprintf("%s:%d:%d", p, fi.Size(), fi.ModTime().UnixNano())
		if _, ok := verified.Load(id); ok {
			continue
		}
		sum, err := image.HashFile(p)
		if err != nil {
			return meta, err
		}
		if sum != f.sum {
			return meta, fmt.Errorf("%s has sha256 %s, %s was saved", f.name, sum, f.sum)
		}
		verified.Store(id, true)
	}
	return meta, nil
}

// saveState boots a machine of cfg cold without a seed disk, waits until
// sshd runs, and saves its memory and disk into dir.
func saveState(ctx context.Context, cfg Config, key warmKey, dir string) (warmMeta, error) {
	began := time.Now()
	// Under the state's lock: what a bot killed while saving left here is
	// removed first.
	tmp := filepath.Join(cfg.Warm, ".saving-"+filepath.Base(dir))
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return warmMeta{}, notWarm("make the saved state's directory", err)
	}
	defer os.RemoveAll(tmp)
	scfg := cfg
	scfg.Dir, scfg.Name, scfg.Detach, scfg.Forwards = tmp, "saving", false, nil
	m, err := prepare(ctx, scfg, cfg.Image.Disk)
	if err != nil {
		return warmMeta{}, notWarm("set up the machine to save", err)
	}
	defer func() {
		m.StopGrace = 0
		m.Stop(context.Background())
	}()
	if err := m.launch(scfg, launch{noSeed: true}); err != nil {
		return warmMeta{}, notWarm("start the machine to save", err)
	}
	bctx, cancel := context.WithTimeout(ctx, cfg.BootTimeout)
	defer cancel()
	if err := m.untilSSHD(bctx); err != nil {
		if ctx.Err() != nil {
			return warmMeta{}, ctx.Err()
		}
		return warmMeta{}, notWarm("the machine to save did not come up", fmt.Errorf("%w\nserial console (last lines):\n%s", err, m.ConsoleTail()))
	}
	q, err := DialQMP(bctx, filepath.Join(m.Dir, qmpSocket))
	if err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	defer q.Close()
	memory := filepath.Join(m.Dir, warmMemory)
	if _, err := q.Execute(bctx, "stop", nil); err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	if _, err := q.Execute(bctx, "migrate", map[string]any{"uri": "exec:cat > " + Quote(memory)}); err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	if err := untilMigrated(bctx, q, "completed"); err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	q.Quit(bctx)
	if !m.wait(bctx, 10*time.Second) {
		return warmMeta{}, notWarm("save the state", errors.New("qemu did not quit after the save"))
	}

	// The state's directory: the memory and the overlay, frozen.
	if err := os.MkdirAll(tmp+"/state", 0o755); err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	meta := warmMeta{Key: key, Saved: time.Now().UTC()}
	for _, f := range []struct {
		from, to string
		size     *int64
		sum      *string
	}{
		{memory, warmMemory, &meta.StateSize, &meta.StateSHA256},
		{filepath.Join(m.Dir, "overlay.qcow2"), warmDisk, &meta.DiskSize, &meta.DiskSHA256},
	} {
		dst := filepath.Join(tmp, "state", f.to)
		if err := os.Rename(f.from, dst); err != nil {
			return warmMeta{}, notWarm("save the state", err)
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return warmMeta{}, notWarm("save the state", err)
		}
		*f.size = fi.Size()
		if *f.sum, err = image.HashFile(dst); err != nil {
			return warmMeta{}, notWarm("save the state", err)
		}
		os.Chmod(dst, 0o444) // never written again: machines get overlays
		verified.Store(fmt.Sprintf("%s:%d:%d", filepath.Join(dir, f.to), fi.Size(), fi.ModTime().UnixNano()), true)
	}
	meta.Took = time.Since(began).Seconds()
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "state", warmMetaFile), b, 0o444); err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	if err := os.Rename(filepath.Join(tmp, "state"), dir); err != nil {
		return warmMeta{}, notWarm("save the state", err)
	}
	return meta, nil
}

// untilSSHD waits until the guest agent answers and sshd runs: the guest
// is as far as a machine is when its SSH port accepts a login.
func (m *Machine) untilSSHD(ctx context.Context) error {
	var last error
	for {
		if m.exited() {
			return fmt.Errorf("%w: %v", errQEMUExited, m.waitErr)
		}
		err := func() error {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			g, err := DialQGA(actx, filepath.Join(m.Dir, agentSocket))
			if err != nil {
				return err
			}
			defer g.Close()
			_, err = g.Run(actx, "/bin/systemctl", "is-active", "--quiet", "ssh.service")
			return err
		}()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("sshd not running: %w (last: %v)", ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// untilMigrated polls query-migrate until the migration has status want.
func untilMigrated(ctx context.Context, q *QMP, want string) error {
	for {
		raw, err := q.Execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		json.Unmarshal(raw, &st)
		switch st.Status {
		case want:
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.Error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration still %q: %w", st.Status, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// restore starts a machine from the saved state in dir and makes it its
// own (refresh) before it waits for SSH with the machine's key.
func restore(ctx context.Context, cfg Config, dir string, meta warmMeta) (*Machine, error) {
	began := time.Now()
	m, err := prepare(ctx, cfg, filepath.Join(dir, warmDisk))
	if err != nil {
		return nil, notWarm("set up the machine", err)
	}
	m.Warm = true
	fail := func(reason string, err error) (*Machine, error) {
		m.StopGrace = 0
		console := m.ConsoleTail()
		m.Stop(context.Background())
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if console != "" {
			err = fmt.Errorf("%w\nserial console (last lines):\n%s", err, console)
		}
		return nil, notWarm(reason, err)
	}
	if err := m.launch(cfg, launch{noSeed: true, incoming: filepath.Join(dir, warmMemory)}); err != nil {
		return fail("start QEMU", err)
	}
	rctx, cancel := context.WithTimeout(ctx, max(cfg.BootTimeout/4, 30*time.Second))
	defer cancel()
	if err := m.untilRunning(rctx); err != nil {
		return fail(reasonRefused, err)
	}
	loaded := time.Since(began)
	g, err := DialQGA(rctx, filepath.Join(m.Dir, agentSocket))
	if err != nil {
		return fail("the restored guest's agent did not answer", err)
	}
	defer g.Close()
	if err := m.refresh(rctx, g); err != nil {
		return fail("the restored guest could not be made unique", err)
	}
	refreshed := time.Since(began)
	if err := m.waitSSH(rctx, max(cfg.BootTimeout/4, 30*time.Second)); err != nil {
		return fail("SSH did not answer in the restored guest", err)
	}
	fmt.Fprintf(cfg.Console, "turtles: warm start in %.1fs (state loaded %.1fs, made unique %.1fs, SSH %.1fs)\n",
		time.Since(began).Seconds(), loaded.Seconds(), (refreshed - loaded).Seconds(), (time.Since(began) - refreshed).Seconds())
	m.Timing = WarmTiming{Load: loaded, Refresh: refreshed - loaded, SSH: time.Since(began) - refreshed}
	if err := m.writeState(); err != nil {
		return fail("record the machine", err)
	}
	if err := m.ready(cfg); err != nil {
		return fail("record the machine", err)
	}
	return m, nil
}

// cont lets a paused guest run.
func (m *Machine) cont(ctx context.Context) error {
	q, err := DialQMP(ctx, filepath.Join(m.Dir, qmpSocket))
	if err != nil {
		return err
	}
	defer q.Close()
	_, err = q.Execute(ctx, "cont", nil)
	return err
}

// WarmTiming is where a warm start's time went.
type WarmTiming struct {
	Load, Refresh, SSH time.Duration
}

// untilRunning waits until QEMU has loaded the incoming state and lets
// the guest run: the state was saved with the CPUs stopped, so the
// machine comes up paused and is continued.
func (m *Machine) untilRunning(ctx context.Context) error {
	for {
		if m.exited() {
			return fmt.Errorf("%w: %v", errQEMUExited, m.waitErr)
		}
		st, err := m.Status(ctx)
		if err == nil && st.Running {
			return nil
		}
		if err == nil && st.Status == "paused" {
			if err := m.cont(ctx); err != nil {
				return err
			}
			continue
		}
		if err == nil && st.Status != "inmigrate" && st.Status != "prelaunch" {
			return fmt.Errorf("the guest is %s", st.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the state did not load: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// refresh makes a restored guest its own, through the agent, before
// anyone can log in: the host's time, a random seed for the kernel's RNG
// (vmgenid makes it reseed too), a new machine-id and SSH host key
// (ed25519, the only one), and this machine's key as the only one
// authorized.
//
// The network card keeps the MAC it was saved with: a new one set in the
// guest (ip link set address) cut the machine off QEMU's user-mode
// network, whose forwarded ports then reached nothing (measured; an ARP
// from the guest did not mend it). On that network every machine has a
// network of its own, so the MAC tells nothing apart; machines on one
// shared network (several machines per test) will need their own.
func (m *Machine) refresh(ctx context.Context, g *QGA) error {
	// The clock first, by the agent itself: no process to start in
	// between. QEMU 7.2's agent then runs hwclock, which minimal images
	// lack; the system clock is set by then.
	if _, err := g.Execute(ctx, "guest-set-time", map[string]any{"time": time.Now().UnixNano()}); err != nil &&
		!strings.Contains(err.Error(), "hwclock") {
		return fmt.Errorf("set the guest's clock: %w", err)
	}
	seed := make([]byte, 64)
	rand.Read(seed)
	// The host key is made here: an ed25519 key is instant in Go and
	// takes seconds under TCG.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	home := "/root"
	if m.User != "root" {
		home = "$(getent passwd " + Quote(m.User) + " | cut -d: -f6)"
	}
	machineID := make([]byte, 16)
	rand.Read(machineID)
	// Every process the script starts costs ~100 ms under TCG: shell
	// builtins where they do. sshd re-executes itself on SIGHUP and so
	// loads the new host key, in a fraction of a systemctl restart; a
	// connection the old one still accepts fails on the host key, which
	// SSH checks from now on (m.hostKey), and is made again.
	script := fmt.Sprintf(`set -eu
printf '%%s' %s > /dev/urandom
printf '%%s\n' %s > /etc/machine-id
rm -f /etc/ssh/ssh_host_*
umask 022
printf '%%s\n' %s > /etc/ssh/ssh_host_ed25519_key.pub
umask 077
printf '%%s' %s > /etc/ssh/ssh_host_ed25519_key
for h in /root %s; do
	[ -d "$h/.ssh" ] || mkdir -m 700 "$h/.ssh"
	printf '%%s\n' %s > "$h/.ssh/authorized_keys"
done
read pid < /run/sshd.pid
kill -HUP "$pid"
read mac < /sys/class/net/eth0/address
echo "$mac"
`, hex.EncodeToString(seed), hex.EncodeToString(machineID),
		Quote(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))), Quote(string(pem.EncodeToMemory(block))), home, Quote(m.authorized))
	out, err := g.Run(ctx, "/bin/sh", "-c", script)
	if err != nil {
		return err
	}
	m.hostKey = sshPub
	// The card has the MAC it was saved with (see the type's comment).
	m.MAC = strings.TrimSpace(out)
	return nil
}
