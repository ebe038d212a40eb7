package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/syncio"
)

// identity is what tells two machines apart from inside.
type identity struct {
	machineID, mac, random, hostKey, authorized string
	clockSkew                                   time.Duration
	reseeded                                    bool
}

func identityOf(t *testing.T, m *Machine) identity {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := time.Now()
	out, err := m.Output(ctx, `date +%s.%N; cat /etc/machine-id; cat /sys/class/net/eth0/address
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo
ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2
cat /root/.ssh/authorized_keys | wc -l
dmesg | grep -c 'reseeded due to virtual machine fork' || true`)
	after := time.Now()
	if err != nil {
		t.Fatalf("%s: %v", m.Name, err)
	}
	f := strings.Split(strings.TrimSpace(out), "\n")
	if len(f) != 7 {
		t.Fatalf("%s: unexpected output %q", m.Name, out)
	}
	secs, _ := strconv.ParseFloat(f[0], 64)
	guest := time.Unix(0, int64(secs*1e9))
	skew := time.Duration(0)
	if guest.Before(before) {
		skew = before.Sub(guest)
	} else if guest.After(after) {
		skew = guest.Sub(after)
	}
	return identity{clockSkew: skew, machineID: f[1], mac: f[2], random: f[3], hostKey: f[4], authorized: f[5], reseeded: f[6] != "0"}
}

// TestWarmStarts saves the Debian image's state once, restores two
// machines from it and compares them from inside: nothing that two cold
// boots would not share. A state QEMU refuses is not used: the machine
// boots cold, says why, and the state is gone.
func TestWarmStarts(t *testing.T) {
	img := debianImage(t)
	if !img.GuestAgent {
		t.Fatalf("the Debian test image %s has no guest agent", img.Disk)
	}
	dir, warm := t.TempDir(), t.TempDir()
	ctx := context.Background()
	start := func(name string, share ...StateShare) (*Machine, string) {
		t.Helper()
		var console syncio.Buffer
		cfg := testConfig(img, dir)
		cfg.Name, cfg.Console, cfg.Log, cfg.Warm = name, &console, slog.Default(), warm
		if len(share) > 0 {
			// Another bot: its own states, and a way to a's.
			cfg.Warm, cfg.Share = filepath.Join(t.TempDir(), "warm"), share[0]
		}
		began := time.Now()
		m, err := Start(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, console.String())
		}
		t.Logf("%s: ready in %s, warm %v, %+v", name, time.Since(began).Round(time.Millisecond), m.Warm, m.Timing)
		t.Cleanup(func() { m.Stop(ctx) })
		return m, console.String()
	}
	a, consoleA := start("warm-a")
	b, consoleB := start("warm-b")
	for _, c := range []struct {
		name, console string
		m             *Machine
		saved         bool
	}{{"a", consoleA, a, true}, {"b", consoleB, b, false}} {
		if !c.m.Warm || !strings.Contains(c.console, "turtles: warm start in ") {
			t.Errorf("%s: not a warm start:\n%s", c.name, c.console)
		}
		if got := strings.Contains(c.console, "saving its state"); got != c.saved {
			t.Errorf("%s: saved a state %v, want %v:\n%s", c.name, got, c.saved, c.console)
		}
	}
	ia, ib := identityOf(t, a), identityOf(t, b)
	t.Logf("a: %+v\nb: %+v", ia, ib)
	for _, x := range []struct {
		what   string
		va, vb string
	}{
		{"machine-id", ia.machineID, ib.machineID},
		{"32 bytes of /dev/urandom", ia.random, ib.random},
		{"SSH host key", ia.hostKey, ib.hostKey},
	} {
		if x.va == x.vb || x.va == "" {
			t.Errorf("the two restored machines share their %s: %q", x.what, x.va)
		}
	}
	for _, m := range []struct {
		name string
		id   identity
		m    *Machine
	}{{"a", ia, a}, {"b", ib, b}} {
		if m.id.mac != m.m.MAC {
			t.Errorf("%s: MAC %s in the guest, the machine says %s", m.name, m.id.mac, m.m.MAC)
		}
		if m.id.clockSkew > time.Second {
			t.Errorf("%s: the guest's clock is %s off the host's", m.name, m.id.clockSkew)
		}
		if m.id.authorized != "1" {
			t.Errorf("%s: %s authorized keys, want only the machine's", m.name, m.id.authorized)
		}
		if !m.id.reseeded {
			t.Errorf("%s: the kernel did not reseed its RNG for the VM fork (vmgenid)", m.name)
		}
	}
	// One machine's key does not open the other.
	cc := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	if c, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(b.SSHPort), cc); err == nil {
		c.Close()
		t.Error("machine a's key logs in to machine b")
	}

	states, _ := filepath.Glob(filepath.Join(warm, "[0-9a-f]*[0-9a-f]"))
	if len(states) != 1 {
		t.Fatalf("saved states: %v, want one", states)
	}
	// Another bot fetches the state a's bot published, and restores it
	// without a boot of its own.
	d, consoleD := start("fetched-d", &dirShare{dir: warm})
	if !d.Warm || !strings.Contains(consoleD, "fetched the saved state another bot made") || strings.Contains(consoleD, "saving its state") {
		t.Errorf("d: not a warm start from the fetched state:\n%s", consoleD)
	}
	d.Stop(ctx)

	// A state that QEMU refuses (its files as recorded, its content not a
	// state): cold boot, the reason in the console, the state removed.
	spoilState(t, states[0])
	c, consoleC := start("cold-c")
	if c.Warm || !strings.Contains(consoleC, "booting cold: no warm start (QEMU did not restore the saved state)") {
		t.Errorf("a refused state: warm %v, console:\n%s", c.Warm, consoleC)
	}
	if _, err := os.Stat(states[0]); !os.IsNotExist(err) {
		t.Errorf("the refused state is still there: %v", err)
	}
	for _, m := range []*Machine{a, b, c} {
		m.Stop(ctx)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("machines left behind: %v", left)
	}
	if q := qemuIn(dir); len(q) != 0 {
		t.Errorf("qemu processes left behind: %v", q)
	}
}

// spoilState replaces a state's memory with bytes QEMU cannot load and
// records them as saved, as a state from a QEMU that writes another
// format would look.
func spoilState(t *testing.T, dir string) {
	t.Helper()
	mem := filepath.Join(dir, warmMemory)
	os.Chmod(mem, 0o644)
	if err := os.WriteFile(mem, []byte(strings.Repeat("not a QEMU state\n", 1000)), 0o444); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, warmMetaFile))
	var meta warmMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(mem)
	meta.StateSize = fi.Size()
	meta.StateSHA256 = sha256File(t, mem)
	b, _ = json.Marshal(meta)
	os.Chmod(filepath.Join(dir, warmMetaFile), 0o644)
	if err := os.WriteFile(filepath.Join(dir, warmMetaFile), b, 0o444); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	sum, err := image.HashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// qemuIn lists qemu processes whose command line mentions dir.
func qemuIn(dir string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(string(b), "qemu-system") && strings.Contains(string(b), dir) {
			found = append(found, p)
		}
	}
	return found
}

// TestCheckState: a saved state is used only when its meta names the same
// machine and its files have the sizes and hashes recorded.
func TestCheckState(t *testing.T) {
	dir := t.TempDir()
	key := warmKey{Format: warmFormat, QEMU: "QEMU emulator version 7.2.15", Accel: "tcg", CPUs: 2, MemoryMB: 1024, Disk: "sha256:ab"}
	write := func(name, body string) {
		os.Chmod(filepath.Join(dir, name), 0o644)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	reset := func() {
		write(warmMemory, "memory")
		write(warmDisk, "disk")
	}
	reset()
	meta := warmMeta{Key: key, StateSize: 6, StateSHA256: sha256File(t, filepath.Join(dir, warmMemory)),
		DiskSize: 4, DiskSHA256: sha256File(t, filepath.Join(dir, warmDisk))}
	b, _ := json.Marshal(meta)
	write(warmMetaFile, string(b))
	if _, err := checkState(dir, key); err != nil {
		t.Fatalf("a good state: %v", err)
	}
	other := key
	other.MemoryMB = 2048
	cases := []struct {
		name  string
		spoil func()
		key   warmKey
		want  string
	}{
		{"another shape", func() {}, other, "made for another machine"},
		{"another QEMU", func() {}, warmKey{Format: warmFormat, QEMU: "QEMU emulator version 8.2.2", Accel: "tcg", CPUs: 2, MemoryMB: 1024, Disk: "sha256:ab"}, "made for another machine"},
		{"truncated memory", func() { write(warmMemory, "mem") }, key, "memory has 3 bytes, 6 were saved"},
		{"changed memory", func() { write(warmMemory, "MEMORY") }, key, "memory has sha256"},
		{"no disk", func() { os.Remove(filepath.Join(dir, warmDisk)) }, key, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reset()
			c.spoil()
			if _, err := checkState(dir, c.key); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("checkState = %v, want an error with %q", err, c.want)
			}
		})
	}
	write(warmMetaFile, "{")
	if _, err := checkState(dir, key); err == nil || !strings.Contains(err.Error(), "meta.json") {
		t.Errorf("a bad meta.json: %v", err)
	}
}

// dirShare is a StateShare in a directory: what one bot published, the
// next fetches.
type dirShare struct {
	dir       string
	published []string
}

func (d *dirShare) Fetch(_ context.Context, name, into string) ([]byte, error) {
	for _, f := range []string{warmMemory, warmDisk} {
		b, err := os.ReadFile(filepath.Join(d.dir, name, f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(into, f), b, 0o444); err != nil {
			return nil, err
		}
	}
	return os.ReadFile(filepath.Join(d.dir, name, warmMetaFile))
}

func (d *dirShare) Publish(_ context.Context, name, dir string) error {
	d.published = append(d.published, name)
	return nil
}

// TestFetchState: a state another bot published for this machine is
// used without a boot, its overlay pointed at this host's image; one
// published for another machine is not (the machine would boot cold:
// here a QEMU that cannot boot says it tried).
func TestFetchState(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("no qemu-img")
	}
	ctx := t.Context()
	work := t.TempDir()
	// A QEMU that knows its version and boots nothing.
	qemu := filepath.Join(work, "qemu-system-x86_64")
	os.WriteFile(qemu, []byte("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'QEMU emulator version 7.2.99'; exit 0; }\necho cannot boot >&2; exit 1\n"), 0o755)
	disk := filepath.Join(work, "images", "debian.raw")
	os.MkdirAll(filepath.Dir(disk), 0o755)
	os.WriteFile(disk, make([]byte, 1<<20), 0o644)
	var console bytes.Buffer
	cfg := Config{QEMU: qemu, CPUs: 1, MemoryMB: 256, Warm: filepath.Join(work, "warm"), Console: &console,
		Image: &image.Manifest{Disk: disk, GuestAgent: true}, Log: slog.New(slog.DiscardHandler), BootTimeout: 5 * time.Second}
	key, name, err := keyOf(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(k warmKey) *dirShare {
		share := &dirShare{dir: t.TempDir()}
		d := filepath.Join(share.dir, name)
		os.MkdirAll(d, 0o755)
		// The publisher's image was elsewhere.
		elsewhere := filepath.Join(t.TempDir(), "debian.raw")
		os.WriteFile(elsewhere, make([]byte, 1<<20), 0o644)
		if err := CreateOverlay(ctx, elsewhere, filepath.Join(d, warmDisk)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, warmMemory), []byte("memory of a machine"), 0o444)
		meta := warmMeta{Key: k, StateSize: 19, StateSHA256: sha256File(t, filepath.Join(d, warmMemory))}
		b, _ := json.Marshal(meta)
		os.WriteFile(filepath.Join(d, warmMetaFile), b, 0o444)
		return share
	}

	t.Run("for this machine", func(t *testing.T) {
		cfg := cfg
		cfg.Share = publish(key)
		dir := filepath.Join(cfg.Warm, name)
		defer os.RemoveAll(dir)
		meta, err := ensureState(ctx, cfg, key, dir)
		if err != nil {
			t.Fatalf("ensureState: %v\nconsole:\n%s", err, console.String())
		}
		if meta.Fetched.IsZero() || !strings.Contains(console.String(), "fetched the saved state another bot made") {
			t.Errorf("the state was not fetched: %+v\nconsole:\n%s", meta, console.String())
		}
		out, err := exec.Command("qemu-img", "info", "--output=json", filepath.Join(dir, warmDisk)).Output()
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Backing string `json:"backing-filename"`
			Format  string `json:"backing-filename-format"`
		}
		json.Unmarshal(out, &info)
		if info.Backing != disk || info.Format != "raw" {
			t.Errorf("the fetched overlay is backed by %q (%s), want this host's image %s (raw)", info.Backing, info.Format, disk)
		}
		// What ensureState returns passes checkState, as every later
		// start checks it.
		if _, err := checkState(dir, key); err != nil {
			t.Errorf("the fetched state does not check: %v", err)
		}
	})

	t.Run("saved before sharing", func(t *testing.T) {
		// A state this bot saved, not yet offered: the next start
		// offers it, once.
		cfg := cfg
		share := &dirShare{dir: t.TempDir()}
		cfg.Share = share
		dir := filepath.Join(cfg.Warm, name)
		defer removeState(dir)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, warmMemory), []byte("memory"), 0o444)
		os.WriteFile(filepath.Join(dir, warmDisk), []byte("disk"), 0o444)
		meta := warmMeta{Key: key, StateSize: 6, StateSHA256: sha256File(t, filepath.Join(dir, warmMemory)),
			DiskSize: 4, DiskSHA256: sha256File(t, filepath.Join(dir, warmDisk))}
		b, _ := json.Marshal(meta)
		os.WriteFile(filepath.Join(dir, warmMetaFile), b, 0o444)
		for range 2 {
			if _, err := ensureState(ctx, cfg, key, dir); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(share.published, []string{name}) {
			t.Errorf("published %v, want %s once", share.published, name)
		}
	})

	t.Run("for another machine", func(t *testing.T) {
		console.Reset()
		cfg := cfg
		other := key
		other.MemoryMB = 4096
		share := publish(other)
		cfg.Share = share
		dir := filepath.Join(cfg.Warm, name)
		defer os.RemoveAll(dir)
		if _, err := ensureState(ctx, cfg, key, dir); err == nil {
			t.Fatal("a state published for another machine was used")
		}
		if c := console.String(); !strings.Contains(c, "published for another machine") || !strings.Contains(c, "booting it cold") {
			t.Errorf("console does not say why the state was not used, and that it booted cold:\n%s", c)
		}
		if len(share.published) != 0 {
			t.Errorf("published %v after a failed save", share.published)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Error("the state's directory exists after the failed save")
		}
	})
}

// TestPruneStates: the states of images that are gone go, unless one is
// being made or checked; those of images still there stay.
func TestPruneStates(t *testing.T) {
	dir := t.TempDir()
	state := func(name string, k warmKey) {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		b, _ := json.Marshal(warmMeta{Key: k})
		os.WriteFile(filepath.Join(dir, name, warmMetaFile), b, 0o444)
		os.WriteFile(filepath.Join(dir, name, warmMemory), []byte("m"), 0o444)
	}
	img := filepath.Join(t.TempDir(), "local.raw")
	os.WriteFile(img, []byte("disk"), 0o644)
	local, err := fileID(img, "")
	if err != nil {
		t.Fatal(err)
	}
	state("kept", warmKey{Disk: "sha256:aa", Kernel: "sha256:ab"})
	state("kept-local", warmKey{Disk: local})
	state("gone", warmKey{Disk: "sha256:bb"})
	state("kernel-gone", warmKey{Disk: "sha256:aa", Kernel: "sha256:cc"})
	state("local-changed", warmKey{Disk: img + ":5:1"})
	state("busy", warmKey{Disk: "sha256:bb"})
	os.MkdirAll(filepath.Join(dir, "broken"), 0o755)
	lock, _ := os.OpenFile(filepath.Join(dir, "busy.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	have := func(f string) bool {
		if sha, ok := strings.CutPrefix(f, "sha256:"); ok {
			return sha == "aa" || sha == "ab"
		}
		return HaveFile(f)
	}
	removed, err := PruneStates(dir, have)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{"broken", "gone", "kernel-gone", "local-changed"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, n := range []string{"kept", "kept-local", "busy"} {
		if _, err := os.Stat(filepath.Join(dir, n, warmMetaFile)); err != nil {
			t.Errorf("state %s: %v", n, err)
		}
	}
	if got, err := PruneStates(filepath.Join(dir, "none"), have); err != nil || got != nil {
		t.Errorf("no directory: %v, %v", got, err)
	}
}
