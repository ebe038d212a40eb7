package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/vm"
)

func init() {
	register("vm-boot", vmBoot)
	register("vm-overlay", vmOverlay)
}

// The machines of the benchmarks, turtles' and bare qemu's alike: the
// size, binary and boot bound cmd/turtles gives a task's VM by default.
const (
	benchQEMU        = "qemu-system-x86_64"
	benchCPUs        = 2
	benchMemoryMB    = 1024
	benchBootTimeout = 5 * time.Minute
	benchStopGrace   = time.Second
	// benchDebianMirror is where the test image is built from.
	benchDebianMirror = "http://deb.debian.org/debian"
)

// vmOverlay measures vm.CreateOverlay on sparse raw bases of 1 GiB and
// 20 GiB: it must not depend on the base's size.
func vmOverlay(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "turtles-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const runs = 30
	var worst time.Duration
	for _, size := range []int64{1 << 30, 20 << 30} {
		base := filepath.Join(dir, fmt.Sprintf("base-%d.raw", size>>30))
		if err := os.WriteFile(base, nil, 0o444); err != nil {
			return err
		}
		if err := os.Truncate(base, size); err != nil {
			return err
		}
		var times []time.Duration
		for i := 0; i < runs; i++ {
			ov := filepath.Join(dir, fmt.Sprintf("ov-%d-%d.qcow2", size>>30, i))
			start := time.Now()
			if err := vm.CreateOverlay(ctx, base, ov); err != nil {
				return err
			}
			times = append(times, time.Since(start))
		}
		med := median(times)
		worst = max(worst, med)
		fmt.Printf("overlay on a %d GiB sparse base: median %.2f ms of %d (min %.2f, max %.2f)\n",
			size>>30, ms(med), runs, ms(minOf(times)), ms(maxOf(times)))
	}
	result("vm-overlay", fmt.Sprintf("%.2f", ms(worst)), "ms", "< 50")
	return nil
}

// debianBench returns the Debian test image, built the first time, and
// a new directory for a benchmark's machines, which the caller removes.
func debianBench(ctx context.Context) (*image.Manifest, string, error) {
	manifest, err := debian.Cached(ctx, debian.CacheDir(), "debian-12", benchDebianMirror, os.Stderr, slog.Default())
	if err != nil {
		return nil, "", err
	}
	img, err := image.Load(manifest)
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "turtles-bench-")
	return img, dir, err
}

// vmBoot compares the time from "task starts" to "a command runs in the
// guest" with turtles (overlay, key, seed, qemu, SSH login, exec) against
// a bare qemu-system-x86_64 booting the same image with -snapshot to the
// same point: sshd sends its banner. Runs alternate, in the same process,
// so that the load of the machine hits both alike.
func vmBoot(ctx context.Context) error {
	img, dir, err := debianBench(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("accelerator: %s\n", map[bool]string{true: "KVM", false: "TCG (no usable /dev/kvm)"}[vm.KVMUsable()])
	// The bare run gets a seed too, made beforehand: without one the
	// image's key unit waits for it, and the comparison would flatter us.
	seed := filepath.Join(dir, "seed.iso")
	if err := vm.WriteSeed(seed, "bare"); err != nil {
		return err
	}
	const rounds = 2
	var ours, bare []time.Duration
	for i := 0; i < rounds; i++ {
		d, err := bootTurtles(ctx, img, dir)
		if err != nil {
			return err
		}
		ours = append(ours, d)
		b, err := bootBare(ctx, img, seed)
		if err != nil {
			return err
		}
		bare = append(bare, b)
		fmt.Printf("round %d: turtles %.1f s, bare qemu %.1f s\n", i+1, d.Seconds(), b.Seconds())
	}
	o, b := mean(ours), mean(bare)
	fmt.Printf("mean: turtles %.1f s, bare qemu %.1f s\n", o.Seconds(), b.Seconds())
	result("vm-boot", fmt.Sprintf("%.2f", o.Seconds()/b.Seconds()), "ratio", "<= 1.10")
	return nil
}

func bootTurtles(ctx context.Context, img *image.Manifest, dir string) (time.Duration, error) {
	start := time.Now()
	m, err := vm.Start(ctx, vm.Config{Image: img, Dir: filepath.Join(dir, "vms"), CPUs: benchCPUs, MemoryMB: benchMemoryMB,
		BootTimeout: benchBootTimeout, StopGrace: benchStopGrace, QEMU: benchQEMU})
	if err != nil {
		return 0, err
	}
	defer m.Stop(context.Background())
	if _, err := m.Output(ctx, "true"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func bootBare(ctx context.Context, img *image.Manifest, seed string) (time.Duration, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	accel, cpu := "tcg,thread=multi", "max"
	if vm.KVMUsable() {
		accel, cpu = "kvm", "host"
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, benchQEMU,
		"-nodefaults", "-display", "none", "-accel", accel, "-cpu", cpu, "-smp", strconv.Itoa(benchCPUs), "-m", strconv.Itoa(benchMemoryMB),
		"-snapshot", "-drive", "file="+img.Disk+",if=virtio,format=qcow2",
		"-drive", "file="+seed+",if=virtio,format=raw,readonly=on",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port), "-device", "virtio-net-pci,netdev=n0",
		"-device", "virtio-rng-pci",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", img.Append)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(benchBootTimeout)
	for time.Now().Before(deadline) {
		if sshBanner(port) {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("bare qemu: no sshd within %s", benchBootTimeout)
}

// sshBanner reports whether sshd answers on port (user-mode networking
// accepts the connection before the guest listens, so only the banner
// counts).
func sshBanner(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 8)
	n, _ := c.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "SSH-")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func minOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
