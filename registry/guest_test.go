package registry

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
)

// TestGuestReachesRegistry boots a real guest (the cached Debian image's
// kernel and disk, under TCG when there is no KVM) with GuestForward on
// its user-mode netdev and HostsLine in its /etc/hosts, and has it fetch
// the registry's /v2/ and then an image's manifest by name, over two
// connections (the chardev form of guestfwd would carry only one). The
// guest runs a bash script as init, not systemd: no SSH, no services.
func TestGuestReachesRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 missing: run scripts/deps.sh")
	}
	if os.Geteuid() != 0 {
		t.Skip("the Debian test image is built as root")
	}
	path, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	r := start(t, t.TempDir())
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, r, "etcd:3.5"), img); err != nil {
		t.Fatal(err)
	}
	want := digest(t, img).String()

	// Arguments after "--" go to init (through the initramfs); the
	// kernel strips the double quotes. No double quote inside.
	script := strings.Join([]string{
		"mount -t proc p /proc", "modprobe virtio_net",
		"ip link set lo up", "ip link set eth0 up", "ip addr add 10.0.2.15/24 dev eth0",
		"echo '" + HostsLine() + "' >> /etc/hosts",
		"get() { exec 3<>/dev/tcp/" + GuestName + "/" + fmt.Sprint(GuestPort) + " && printf 'GET %s HTTP/1.0\\r\\n\\r\\n' $1 >&3 && while read -r l <&3; do echo TURTLES $l; done; exec 3<&-; }",
		"get /v2/", "get /v2/etcd/manifests/3.5",
		"echo TURTLES-DONE", "echo o > /proc/sysrq-trigger",
	}, "; ")
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", "kvm", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-serial", "stdio",
		"-kernel", m.Kernel, "-initrd", m.Initrd,
		"-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 init=/bin/bash -- -c \"" + script + "\"",
		"-drive", "file=" + m.Disk + ",if=virtio,format=qcow2,snapshot=on",
		"-netdev", "user,id=n0," + GuestForward(r.Port()), "-device", "virtio-net-pci,netdev=n0",
		"-device", "virtio-rng-pci",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	var console strings.Builder
	var lines []string
	sc := bufio.NewScanner(io.TeeReader(out, &console))
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(l, "TURTLES-DONE") {
			break
		}
		if rest, ok := strings.CutPrefix(l, "TURTLES "); ok {
			lines = append(lines, rest)
		}
	}
	took := time.Since(start)
	if ctx.Err() != nil || len(lines) == 0 {
		t.Fatalf("the guest printed nothing from the registry in %v; console:\n%s", took, console.String())
	}
	t.Logf("guest fetched from the registry %v after qemu started", took.Round(time.Millisecond))
	var oks int
	var gotDigest bool
	for _, l := range lines {
		if strings.HasPrefix(l, "HTTP/") && strings.Contains(l, " 200 ") {
			oks++
		}
		if v, ok := strings.CutPrefix(l, "Docker-Content-Digest: "); ok && strings.TrimSpace(v) == want {
			gotDigest = true
		}
	}
	if oks != 2 || !gotDigest {
		t.Errorf("guest saw %d responses 200 (want 2) and digest %s: %v; lines:\n%s", oks, want, gotDigest, strings.Join(lines, "\n"))
	}
}
