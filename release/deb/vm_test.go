package deb

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/syncio"
	"github.com/turtles-ci/turtles/vm"
)

// guestScript installs the package in a fresh Debian 12 guest and uses
// it as a user would: systemctl start turtles-serve, a commit queued with
// turtles submit, turtles status --wait until its task passes. The guest
// has no QEMU (apt would install it for minutes under TCG), so dpkg is
// told to ignore that dependency; git and bubblewrap come from the
// mirror, so that the task checks out and runs in the sandbox inside the
// unit's hardening.
const guestScript = `set -eu
export DEBIAN_FRONTEND=noninteractive
# QEMU's user-mode network answers DNS here, whatever the image copied.
echo nameserver 10.0.2.3 > /etc/resolv.conf
apt-get update -qq
apt-get install -y -qq --no-install-recommends adduser bubblewrap ca-certificates git >/dev/null
dpkg --force-depends --install /tmp/deb/*.deb
echo "== user: $(id turtles)"
systemctl start turtles-serve
systemctl is-active turtles-serve
runuser -u turtles -- sh -c '
	set -e
	mkdir /var/lib/turtles/demo && cd /var/lib/turtles/demo
	git init -q
	printf "contexts:\n  - name: hello\n    command: echo hello from \$(id -un) in \$(pwd)\n" > .turtles.yaml
	git add .turtles.yaml
	git -c user.name=T -c user.email=t@example.com commit -q -m demo'
runuser -u turtles -- turtles submit --config /etc/turtles/turtles.yaml --data-dir /var/lib/turtles \
	--repo-url /var/lib/turtles/demo --sha HEAD
rc=0
runuser -u turtles -- turtles status --server http://localhost:8080 --wait 5m --expect 2 || rc=$?
echo "== status exit $rc"
systemctl show -p ActiveState,SubState,NRestarts turtles-serve
journalctl -u turtles-serve --no-pager -o cat
exit $rc
`

// TestInstallInVM installs the .deb into a fresh Debian 12 VM (the test
// image) and starts turtles-serve with systemd, under the unit's
// hardening, and runs a task through it: the units, the user, the
// default configuration and the sandbox working together on a real
// system. The heaviest test here: a VM boot under TCG, an apt-get of git,
// and a task; several minutes.
func TestInstallInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building the Debian test image needs root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 is missing (run scripts/deps.sh): %v", err)
	}
	ctx := context.Background()
	path, err := debian.Cached(ctx, debian.CacheDir(), "debian-12", "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	o := options(t)
	o.Binary = filepath.Join(t.TempDir(), "turtles")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-X main.version=v1.2.3", "-o", o.Binary, "../../cmd/turtles")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pkg, err := Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}

	var console syncio.Buffer
	start := time.Now()
	m, err := vm.Start(ctx, vm.Config{Image: img, Dir: t.TempDir(), Name: "deb", CPUs: 2, MemoryMB: 1024,
		BootTimeout: 5 * time.Minute, StopGrace: 5 * time.Second, QEMU: "qemu-system-x86_64", Console: &console, Log: slog.Default()})
	if err != nil {
		t.Fatalf("boot: %v\n%s", err, console.String())
	}
	defer m.Stop(ctx)
	t.Logf("booted in %s (%s)", time.Since(start).Round(time.Second), m.Accel)
	if err := m.CopyTo(ctx, pkg, "/tmp/deb"); err != nil {
		t.Fatal(err)
	}
	var out syncio.Buffer
	run, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	start = time.Now()
	code, err := m.Exec(run, guestScript, nil, &out, &out)
	t.Logf("in the guest (%s):\n%s", time.Since(start).Round(time.Second), out.String())
	if err != nil || code != 0 {
		t.Fatalf("guest script: exit %d, %v", code, err)
	}
	log := out.String()
	if !regexp.MustCompile(`(?m)^hello\s+finished\s+success`).MatchString(log) {
		t.Error("turtles status does not show the context hello finished with success")
	}
	for _, want := range []string{
		"== user: uid=", "(kvm)", // a system user, in group kvm (udev made it)
		"active\n",           // systemctl is-active
		"tasks are isolated", // bubblewrap works inside the unit
		"NRestarts=0",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the guest's output lacks %q", want)
		}
	}
}
