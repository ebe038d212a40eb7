package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kdomanski/iso9660"

	"github.com/turtles-ci/turtles/image"
)

// TestStartNamesWhatIsMissing: vm decides no size or time itself; Start
// refuses a Config that lacks one, says which, and leaves nothing behind.
func TestStartNamesWhatIsMissing(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "no image", change: func(c *Config) { c.Image = nil }, wantErr: "no image"},
		{name: "no disk", change: func(c *Config) { c.Image = &image.Manifest{} }, wantErr: "no image"},
		{name: "no dir", change: func(c *Config) { c.Dir = "" }, wantErr: "no directory"},
		{name: "no CPUs", change: func(c *Config) { c.CPUs = 0 }, wantErr: "CPUs is 0"},
		{name: "negative CPUs", change: func(c *Config) { c.CPUs = -1 }, wantErr: "CPUs is -1"},
		{name: "no memory", change: func(c *Config) { c.MemoryMB = 0 }, wantErr: "MemoryMB is 0"},
		{name: "no boot timeout", change: func(c *Config) { c.BootTimeout = 0 }, wantErr: "BootTimeout is 0s"},
		{name: "no stop grace", change: func(c *Config) { c.StopGrace = 0 }, wantErr: "StopGrace is 0s"},
		{name: "no QEMU", change: func(c *Config) { c.QEMU = "" }, wantErr: "no QEMU binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "vms")
			cfg := testConfig(&image.Manifest{Disk: "base.qcow2"}, dir)
			tt.change(&cfg)
			m, err := Start(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				if m != nil {
					m.Stop(context.Background())
				}
				t.Fatalf("Start: %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Start made %s: %v", dir, err)
			}
		})
	}
	if err := testConfig(&image.Manifest{Disk: "base.qcow2"}, "vms").check(); err != nil {
		t.Errorf("check of a complete Config: %v", err)
	}
}

// fakeQMP serves the QMP protocol on a unix socket: a greeting, replies
// to the commands it knows, an event before each reply (clients must skip
// events) and an error for the rest. It records the commands it got.
func fakeQMP(t *testing.T) (socket string, got func() []string) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cmds := make(chan string, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`+"\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var req struct {
						Execute string `json:"execute"`
					}
					json.Unmarshal(sc.Bytes(), &req)
					cmds <- req.Execute
					io.WriteString(c, `{"event": "RTC_CHANGE", "data": {}}`+"\n")
					switch req.Execute {
					case "qmp_capabilities", "system_powerdown":
						io.WriteString(c, `{"return": {}}`+"\n")
					case "query-status":
						io.WriteString(c, `{"return": {"status": "running", "singlestep": false, "running": true}}`+"\n")
					case "quit":
						return // QEMU may close before replying
					default:
						io.WriteString(c, `{"error": {"class": "CommandNotFound", "desc": "The command `+req.Execute+` has not been found"}}`+"\n")
					}
				}
			}()
		}
	}()
	return socket, func() []string {
		var out []string
		for {
			select {
			case c := <-cmds:
				out = append(out, c)
			case <-time.After(100 * time.Millisecond):
				return out
			}
		}
	}
}

func TestQMP(t *testing.T) {
	socket, got := fakeQMP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st, err := q.QueryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Status{Running: true, Status: "running"}, st); diff != "" {
		t.Errorf("query-status (-want +got):\n%s", diff)
	}
	if err := q.Powerdown(ctx); err != nil {
		t.Errorf("system_powerdown: %v", err)
	}
	_, err = q.Execute(ctx, "bogus", nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("bogus command: got %v, want a CommandNotFound QMPError", err)
	}
	if err := q.Quit(ctx); err != nil {
		t.Errorf("quit with the socket closed before the reply: %v", err)
	}
	want := []string{"qmp_capabilities", "query-status", "system_powerdown", "bogus", "quit"}
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

// TestQMPLongPath: machine directories may be deeper than a unix socket
// address allows.
func TestQMPLongPath(t *testing.T) {
	socket, _ := fakeQMP(t)
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(long, 0o755); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(long, "qmp.sock")
	if err := os.Rename(socket, moved); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, moved)
	if err != nil {
		t.Fatalf("DialQMP(%d-byte path): %v", len(moved), err)
	}
	defer q.Close()
	if st, err := q.QueryStatus(ctx); err != nil || !st.Running {
		t.Errorf("query-status over a long path: %+v, %v", st, err)
	}
}

func TestQMPNotQMP(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, _ := l.Accept()
		io.WriteString(c, "{\"hello\": 1}\n")
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := DialQMP(ctx, socket); err == nil {
		t.Fatal("DialQMP accepted a server without a QMP greeting")
	}
}

func TestSeed(t *testing.T) {
	_, signer, authorized, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(authorized, "ssh-ed25519 ") || signer.PublicKey().Type() != "ssh-ed25519" {
		t.Fatalf("key %q, signer %s: want ed25519", authorized, signer.PublicKey().Type())
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	files := seedFiles("m1", authorized)
	if err := writeSeed(path, files); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	label, err := img.Label()
	if err != nil || label != SeedLabel {
		t.Errorf("volume label %q, %v; want %q (cloud-init NoCloud)", label, err, SeedLabel)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range children {
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatal(err)
		}
		got[c.Name()] = string(b)
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("seed files (-want +got):\n%s", diff)
	}
	if !strings.Contains(got["user-data"], "\n  - "+authorized+"\n") || !strings.HasPrefix(got["user-data"], "#cloud-config\n") {
		t.Errorf("user-data does not authorize the key:\n%s", got["user-data"])
	}
}

func TestCreateOverlay(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img missing: run scripts/deps.sh")
	}
	dir := t.TempDir()
	ctx := context.Background()
	raw := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(raw, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 1<<30); err != nil {
		t.Fatal(err)
	}
	qcow := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", qcow, "20G").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, tc := range []struct {
		base, format string
		size         int64
	}{
		{base: raw, format: "raw", size: 1 << 30},
		{base: qcow, format: "qcow2", size: 20 << 30},
	} {
		ov := filepath.Join(dir, tc.format+"-overlay.qcow2")
		if err := CreateOverlay(ctx, tc.base, ov); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("qemu-img", "info", "--output=json", ov).Output()
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Format          string `json:"format"`
			VirtualSize     int64  `json:"virtual-size"`
			BackingFilename string `json:"backing-filename"`
			BackingFormat   string `json:"backing-filename-format"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		want := struct {
			Format          string `json:"format"`
			VirtualSize     int64  `json:"virtual-size"`
			BackingFilename string `json:"backing-filename"`
			BackingFormat   string `json:"backing-filename-format"`
		}{"qcow2", tc.size, tc.base, tc.format}
		if diff := cmp.Diff(want, info); diff != "" {
			t.Errorf("overlay on %s (-want +got):\n%s", tc.format, diff)
		}
		if out, err := exec.Command("qemu-img", "check", ov).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check of the overlay on %s: %v\n%s", tc.format, err, out)
		}
		// qemu must be able to write to it, and the writes must not reach the base.
		if out, err := exec.Command("qemu-io", "-c", "write -P 0xab 1M 128k", "-c", "read -P 0xab 1M 128k", "-c", "read -P 0 0 64k", ov).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Pattern verification failed")) {
			t.Errorf("qemu-io on the overlay on %s: %v\n%s", tc.format, err, out)
		}
		if out, err := exec.Command("qemu-img", "check", ov).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check after writes, on %s: %v\n%s", tc.format, err, out)
		}
		if st, _ := os.Stat(ov); st.Size() > 1<<20 {
			t.Errorf("overlay on a %d-byte base is %d bytes: it must not copy the base", tc.size, st.Size())
		}
	}
	if err := CreateOverlay(ctx, filepath.Join(dir, "missing"), filepath.Join(dir, "x.qcow2")); err == nil {
		t.Error("overlay on a missing base: no error")
	}
}

func TestTarRoundTripAndUnsafePaths(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a/b"), 0o755)
	os.WriteFile(filepath.Join(src, "a/b/f.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, src)) }()
	dst := t.TempDir()
	if err := readTar(pr, dst); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "a/b/f.txt"))
	if err != nil || string(b) != "hello" {
		t.Errorf("a/b/f.txt = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "run.sh")); err != nil || st.Mode()&0o100 == 0 {
		t.Errorf("run.sh lost its execute bit: %v %v", st, err)
	}

	// A guest must not write outside the artifacts directory.
	pr2, pw2 := io.Pipe()
	go func() {
		tw := newTestTar(pw2)
		tw("../escape", "x")
		pw2.Close()
	}()
	if err := readTar(pr2, t.TempDir()); err == nil {
		t.Error("readTar accepted ../escape")
	}
}

func TestTail(t *testing.T) {
	var tl tail
	for i := 0; i < 2000; i++ {
		io.WriteString(&tl, "line of the console\r\n")
	}
	io.WriteString(&tl, "Kernel panic\r\n")
	s := tl.String()
	if len(s) > tailSize || !strings.HasSuffix(s, "Kernel panic\n") || !strings.HasPrefix(s, "line of") {
		t.Errorf("tail = %d bytes ending %q", len(s), s[len(s)-20:])
	}
}

// TestSweep: machines of dead owners are removed and their "qemu" (a
// process whose command line names the machine dir) killed; machines of
// live owners and running detached machines are kept.
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, owner string, withQemu bool) *exec.Cmd {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o700)
		if owner != "" {
			os.WriteFile(filepath.Join(d, ownerFile), []byte(owner), 0o600)
		}
		var cmd *exec.Cmd
		st := State{Name: name}
		if withQemu {
			cmd = exec.Command("sh", "-c", "sleep 60", filepath.Join(d, "overlay.qcow2"))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// One Wait reaps it (so that a killed child is not left a
			// zombie that looks alive); the cleanup waits for that Wait.
			waited := make(chan struct{})
			go func() { cmd.Wait(); close(waited) }()
			t.Cleanup(func() { cmd.Process.Kill(); <-waited })
			st.PID = cmd.Process.Pid
		}
		b, _ := json.Marshal(st)
		os.WriteFile(filepath.Join(d, stateFile), b, 0o600)
		return cmd
	}
	self, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	live := strings.Join([]string{itoa(os.Getpid()), self}, " ")
	dead := mk("dead-owner", "999999999 1", true)
	mk("live-owner", live, true)
	mk("detached", "", true)
	mk("detached-exited", "", false)
	os.Chtimes(filepath.Join(dir, "detached-exited"), time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))

	// An owner killed after starting qemu and before recording its PID:
	// the qemu is found by its command line; another process that names
	// the machine's files is no qemu, and lives.
	unrecorded := filepath.Join(dir, "unrecorded")
	os.MkdirAll(unrecorded, 0o700)
	os.WriteFile(filepath.Join(unrecorded, ownerFile), []byte("999999999 1"), 0o600)
	start := func(argv0 string) *exec.Cmd {
		cmd := &exec.Cmd{Path: "/bin/sh", Args: []string{argv0, "-c", "sleep 60; :", filepath.Join(unrecorded, "overlay.qcow2")}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan struct{})
		go func() { cmd.Wait(); close(waited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-waited })
		return cmd
	}
	orphan, bystander := start("qemu-system-x86_64"), start("sh")

	removed, err := Sweep(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if qemuAlive(orphan.Process.Pid, unrecorded) {
		t.Error("the qemu whose PID was never recorded still runs")
	}
	if !qemuAlive(bystander.Process.Pid, unrecorded) {
		t.Error("a process that is no qemu was killed")
	}
	if diff := cmp.Diff([]string{"dead-owner", "detached-exited", "unrecorded"}, removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if qemuAlive(dead.Process.Pid, filepath.Join(dir, "dead-owner")) {
		t.Error("the dead owner's qemu still runs")
	}
	for _, n := range []string{"live-owner", "detached"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was swept: %v", n, err)
		}
	}
}

func TestKernelPanic(t *testing.T) {
	for _, tc := range []struct{ console, want string }{
		{"", ""},
		{"[    1.0] Run /init as init process\nlogin: ", ""},
		{"[    2.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n[    2.35] CPU: 0 PID: 1",
			"VFS: Unable to mount root fs on unknown-block(0,0)"},
		{"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n", "Attempted to kill init! exitcode=0x00000100"},
		{"Kernel panic - not syncing: " + strings.Repeat("x", 300), strings.Repeat("x", 200)},
		{"Kernel panic - not syncing: bad \xff byte", "bad ? byte"},
	} {
		if got := KernelPanic(tc.console); got != tc.want {
			t.Errorf("KernelPanic(%.60q) = %q, want %q", tc.console, got, tc.want)
		}
	}
}
