package vm

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	start := func(name string) (*Machine, string) {
		t.Helper()
		var console syncio.Buffer
		cfg := testConfig(img, dir)
		cfg.Name, cfg.Console, cfg.Log, cfg.Warm = name, &console, slog.Default(), warm
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

	// A state that QEMU refuses (its files as recorded, its content not a
	// state): cold boot, the reason in the console, the state removed.
	states, _ := filepath.Glob(filepath.Join(warm, "[0-9a-f]*[0-9a-f]"))
	if len(states) != 1 {
		t.Fatalf("saved states: %v, want one", states)
	}
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
