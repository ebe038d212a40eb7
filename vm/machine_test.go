package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/syncio"
)

func needQEMU(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing: run scripts/deps.sh", tool)
		}
	}
}

// debianImage returns the cached real Debian image, building it the first
// time (about two minutes).
func debianImage(t *testing.T) *image.Manifest {
	t.Helper()
	needQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("building the Debian test image needs root")
	}
	if testing.Short() {
		t.Skip("boots a VM")
	}
	path, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", testMirror, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMachine boots the real Debian image once and checks everything a
// task needs from it.
func TestMachine(t *testing.T) {
	img := debianImage(t)
	dir := t.TempDir()
	var console syncio.Buffer
	ctx := context.Background()
	start := time.Now()
	cfg := testConfig(img, dir)
	cfg.Name, cfg.Forwards, cfg.Console, cfg.Log = "t1", []int{9090}, &console, slog.Default()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted to SSH in %s with %s", time.Since(start).Round(time.Millisecond), m.Accel)
	defer m.Stop(ctx)

	t.Run("console", func(t *testing.T) {
		// sshd may answer before getty prints its prompt: wait for it.
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(console.String(), "login:") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		c := console.String()
		for _, want := range []string{"turtles: booting", strings.ToUpper(m.Accel), "login:"} {
			if !strings.Contains(c, want) {
				t.Errorf("console lacks %q:\n%s", want, c)
			}
		}
	})
	t.Run("exec", func(t *testing.T) {
		if out, err := m.Output(ctx, "journalctl -b -u turtles-keys --no-pager"); !strings.Contains(out, "installed authorized_keys") {
			t.Errorf("turtles-keys did not say it installed the key: %q, %v", out, err)
		}
		out, err := m.Output(ctx, ". /etc/os-release && echo $VERSION_CODENAME $(id -un)")
		if err != nil || strings.TrimSpace(out) != "bookworm root" {
			t.Errorf("os-release: %q, %v", out, err)
		}
		var stdout, stderr bytes.Buffer
		code, err := m.Exec(ctx, "echo out; echo err >&2; exit 3", nil, &stdout, &stderr)
		if err != nil || code != 3 || stdout.String() != "out\n" || stderr.String() != "err\n" {
			t.Errorf("exit 3: code %d, err %v, stdout %q, stderr %q", code, err, stdout.String(), stderr.String())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		began := time.Now()
		_, err := m.Exec(cctx, "sleep 600", nil, nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 10*time.Second {
			t.Errorf("Exec past its deadline: %v after %s", err, time.Since(began))
		}
	})
	t.Run("copy", func(t *testing.T) {
		src := t.TempDir()
		os.MkdirAll(filepath.Join(src, "sub"), 0o755)
		os.WriteFile(filepath.Join(src, "sub", "a.txt"), []byte("alpha"), 0o644)
		if err := m.CopyTo(ctx, src, "/var/tmp/src"); err != nil {
			t.Fatal(err)
		}
		if out, err := m.Output(ctx, "cat /var/tmp/src/sub/a.txt"); err != nil || out != "alpha" {
			t.Errorf("copied file in guest: %q, %v", out, err)
		}
		if _, err := m.Output(ctx, "mkdir -p /var/tmp/out/d && echo beta > /var/tmp/out/d/b.txt"); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		if err := m.CopyFrom(ctx, "/var/tmp/out", dst); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dst, "d", "b.txt")); err != nil || string(b) != "beta\n" {
			t.Errorf("copied out: %q, %v", b, err)
		}
		if err := m.CopyFrom(ctx, "/nonexistent", dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("CopyFrom a missing path: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("forward", func(t *testing.T) {
		hp := m.Ports[9090]
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hp), 5*time.Second)
		if err != nil {
			t.Fatalf("forwarded port 9090 -> %d: %v", hp, err)
		}
		c.Close()
	})
	t.Run("attach-and-status", func(t *testing.T) {
		a, err := Attach(dir, "t1")
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Status(ctx)
		if err != nil || !st.Running {
			t.Errorf("QMP status: %+v, %v", st, err)
		}
		if out, err := a.Output(ctx, "echo attached"); err != nil || out != "attached\n" {
			t.Errorf("exec via an attached handle: %q, %v", out, err)
		}
	})
	t.Run("stop", func(t *testing.T) {
		pid := m.PID
		began := time.Now()
		if err := m.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("stopped in %s", time.Since(began).Round(time.Millisecond))
		if _, err := os.Stat(m.Dir); !os.IsNotExist(err) {
			t.Errorf("machine dir left after Stop: %v", err)
		}
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("qemu %d still runs after Stop", pid)
		}
		if err := m.Stop(ctx); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

// TestBootFailures: qemu exiting and a guest that never answers SSH are
// infra errors that carry the console, and leave nothing behind.
func TestBootFailures(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	tests := []struct {
		name, want string // want: in the cause, for the log
		reason     string // the Fault's, for people
		img        image.Manifest
		detach     bool
	}{
		{"qemu-exits", "qemu exited", "QEMU exited while the VM booted", image.Manifest{Disk: disk, Kernel: filepath.Join(dir, "no-such-kernel")}, false},
		{"no-ssh", "no SSH within", "the VM did not boot within 3s", image.Manifest{Disk: disk}, false},
		// Detached (turtles vm start), qemu's output goes to a file.
		{"qemu-exits-detached", "qemu exited", "QEMU exited while the VM booted", image.Manifest{Disk: disk, Kernel: filepath.Join(dir, "no-such-kernel")}, true},
		{"no-ssh-detached", "no SSH within", "the VM did not boot within 3s", image.Manifest{Disk: disk}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vms := filepath.Join(dir, "vms")
			cfg := testConfig(&tc.img, vms)
			cfg.BootTimeout, cfg.MemoryMB, cfg.Detach, cfg.Owner = 3*time.Second, 128, tc.detach, os.Getpid()
			_, err := Start(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v; want an error saying %q", err, tc.want)
			}
			if f, ok := turtles.FaultOf(err); !ok || f.Class != turtles.Infra || f.Reason != tc.reason {
				t.Errorf("Start's Fault = %+v, %v; want class infra, reason %q", f, ok, tc.reason)
			}
			if !strings.Contains(err.Error(), "serial console") {
				t.Errorf("error lacks the console tail: %v", err)
			}
			if strings.HasPrefix(tc.name, "qemu-exits") && !strings.Contains(err.Error(), "no-such-kernel") {
				t.Errorf("error lacks qemu's message: %v", err)
			}
			if ents, _ := os.ReadDir(vms); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

// TestKilledOwner: a process killed with SIGKILL while its machine boots
// takes qemu with it, and Sweep removes the machine's files.
func TestKilledOwner(t *testing.T) {
	if dir := os.Getenv("TURTLES_VM_HELPER_DIR"); dir != "" {
		img, err := image.Load(os.Getenv("TURTLES_VM_HELPER_IMAGE"))
		if err != nil {
			os.Exit(2)
		}
		cfg := testConfig(img, dir)
		cfg.Name = "victim"
		Start(context.Background(), cfg)
		os.Exit(0)
	}
	needQEMU(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	manifest := filepath.Join(dir, "blank.json")
	if err := image.Write(manifest, &image.Manifest{Disk: disk}); err != nil {
		t.Fatal(err)
	}
	vms := filepath.Join(dir, "vms")
	helper := exec.Command(os.Args[0], "-test.run=^TestKilledOwner$")
	helper.Env = append(os.Environ(), "TURTLES_VM_HELPER_DIR="+vms, "TURTLES_VM_HELPER_IMAGE="+manifest)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for i := 0; i < 200 && pid == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		pid = readPID(filepath.Join(vms, "victim"))
	}
	if pid == 0 {
		helper.Process.Kill()
		t.Fatal("helper did not start qemu within 10 s")
	}
	helper.Process.Kill()
	helper.Wait()
	d := filepath.Join(vms, "victim")
	for i := 0; i < 100 && qemuAlive(pid, d); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if qemuAlive(pid, d) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("qemu %d outlived its owner by 5 s", pid)
	}
	removed, err := Sweep(vms, nil)
	if err != nil || len(removed) != 1 {
		t.Errorf("Sweep = %v, %v; want the victim removed", removed, err)
	}
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Errorf("overlay, seed and key survive the sweep: %v", err)
	}
}
