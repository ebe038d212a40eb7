package bot

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/syncio"
)

const vmConfig = `contexts:
  - name: guest
    image: debian-12
    command: |
      . /etc/os-release
      test -f .turtles.yaml && echo "in $VERSION_CODENAME at $PWD sha=$TURTLES_SHA"
      echo result > "$TURTLES_ARTIFACTS/out.txt"
  - name: host
    image: debian-12
    mode: host
    memory: 768M
    forward: [9090]
    command: |
      ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -i "$TURTLES_VM_SSH_KEY" -p "$TURTLES_VM_SSH_PORT" "$TURTLES_VM_SSH_USER@$TURTLES_VM_SSH_HOST" \
        'echo guest says $(hostname); echo from-guest > '$TURTLES_VM_ARTIFACTS/g.txt
      test -f .turtles.yaml && echo host has the checkout
      echo "port 9090 at 127.0.0.1:$TURTLES_VM_PORT_9090"
  - name: slow
    image: debian-12
    timeout: 10s
    command: echo sleeping; sleep 600
`

// vmImages returns the images directory holding the cached Debian image,
// building it the first time.
// testVM is a complete VMConfig for images, with the machines in
// workDir/vms, sized and timed as cmd/turtles does by default.
func testVM(images, workDir string) VMConfig {
	return VMConfig{
		ImagesDir: images, Dir: filepath.Join(workDir, "vms"), CPUs: 2, MemoryMB: 1024,
		BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64",
	}
}

func vmImages(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing: run scripts/deps.sh", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("building the Debian test image needs root")
	}
	m, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(m)
}

// qemuOf lists qemu processes whose command line mentions dir.
func qemuOf(dir string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.HasPrefix(b, []byte("qemu-system")) && bytes.Contains(b, []byte(dir)) {
			found = append(found, p)
		}
	}
	return found
}

// TestVMTasks runs three tasks, one VM each, through a real bot: a
// guest-mode task with artifacts, a host-mode task that reaches the guest
// with the TURTLES_VM_* variables, and a guest-mode task that times out.
var kernelLine = regexp.MustCompile(`(?m)^\[\s*\d+\.\d+\] `)

func TestVMTasks(t *testing.T) {
	images := vmImages(t)
	h := newHarness(t, map[string]string{".turtles.yaml": vmConfig}, queue.Options{})
	h.cfg.VM = testVM(images, h.workDir)
	tasks := map[string]turtles.Task{}
	for _, name := range []string{"guest", "host", "slow"} {
		tasks[name] = h.task(turtles.KindTest, name, "")
		h.publish(tasks[name])
	}
	start := time.Now()
	h.start()
	// Three Debian boots under TCG, one slot: 2 minutes on a quiet
	// machine, over 8 at a load of 20 (other builds on the 2 cores).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for done := 0; done < len(tasks); {
		d, err := h.db.Receive(ctx)
		if err != nil {
			t.Fatalf("waiting for VM tasks: %v", err)
		}
		if d.Event().Type == turtles.EventFinished {
			done++
			t.Logf("%s finished after %s", d.Event().Task.Context, time.Since(start).Round(time.Second))
		}
		d.Ack(ctx)
	}

	check := func(name string, want turtles.Outcome, logHas ...string) {
		t.Helper()
		res := h.result(tasks[name])
		log := h.log(tasks[name])
		if res.Outcome != want {
			t.Errorf("%s: outcome %+v, want %+v\n%s", name, res.Outcome, want, log)
		}
		for _, s := range logHas {
			if !strings.Contains(log, s) {
				t.Errorf("%s: log lacks %q:\n%s", name, s, log)
			}
		}
	}
	check("guest", turtles.Outcome{Class: turtles.Success},
		"turtles: booting debian-12-", "TCG",
		"in bookworm at /var/tmp/turtles-src sha="+h.sha, "turtles: exit status 0")
	// The serial console is in the task log: the kernel's timestamped
	// lines (getty's prompt may come only after the command ran).
	if log := h.log(tasks["guest"]); !kernelLine.MatchString(log) {
		t.Errorf("guest: log has no kernel console line:\n%s", log)
	}
	check("host", turtles.Outcome{Class: turtles.Success},
		"guest says turtles", "host has the checkout", "768 MiB", "port 9090 at 127.0.0.1:")
	check("slow", turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "timed out after 10s", Verdict: turtles.VerdictRegression},
		"sleeping", "timed out after 10s; stopping the VM", "stopped in")

	prefix := store.AttemptPrefix(tasks["guest"]) + store.ArtifactsName
	if got, _ := h.object(prefix + "vm/out.txt"); got != "result\n" {
		t.Errorf("guest artifact vm/out.txt = %q, want %q", got, "result\n")
	}
	if got, _ := h.object(prefix + "vm/journal.txt"); !strings.Contains(got, "turtles-keys") {
		t.Errorf("guest journal artifact lacks turtles-keys: %.300q", got)
	}
	if got, _ := h.object(store.AttemptPrefix(tasks["host"]) + store.ArtifactsName + "vm/g.txt"); got != "from-guest\n" {
		t.Errorf("host task's guest artifact = %q", got)
	}
	h.waitIdle()
	if left, _ := os.ReadDir(filepath.Join(h.workDir, "vms")); len(left) != 0 {
		t.Errorf("machines left behind: %v", left)
	}
	if q := qemuOf(h.workDir); len(q) != 0 {
		t.Errorf("qemu processes left behind: %v", q)
	}
}

// TestVMCancelAndMissingImage: cancelling a task while its VM boots stops
// the VM within seconds; a bot without the image fails the task as infra.
func TestVMCancelAndMissingImage(t *testing.T) {
	images := vmImages(t)
	repo, _ := newRepo(t, map[string]string{".turtles.yaml": vmConfig})

	t.Run("cancel", func(t *testing.T) {
		work := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		var buf bytes.Buffer
		out := syncio.NewWriter(&buf)
		go func() {
			// Cancel once qemu runs.
			for i := 0; i < 600 && len(qemuOf(work)) == 0; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(2 * time.Second)
			cancel()
		}()
		o, err := RunLocal(ctx, LocalOptions{Dir: repo, Rev: "HEAD", KillGrace: 10 * time.Second, Context: "guest", WorkDir: work, Out: out, VM: testVM(images, work)})
		cancelled := time.Now()
		if o.Class != turtles.Cancelled || err == nil {
			t.Errorf("outcome %+v, %v; want cancelled\n%s", o, err, buf.String())
		}
		for len(qemuOf(work)) > 0 && time.Since(cancelled) < 10*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		if q := qemuOf(work); len(q) != 0 {
			t.Errorf("qemu still runs 10 s after the cancel: %v", q)
		}
		if left, _ := filepath.Glob(filepath.Join(work, "vms", "*")); len(left) != 0 {
			t.Errorf("machines left behind: %v", left)
		}
	})
	t.Run("missing-image", func(t *testing.T) {
		var buf bytes.Buffer
		work := t.TempDir()
		o, err := RunLocal(context.Background(), LocalOptions{Dir: repo, Rev: "HEAD", KillGrace: 10 * time.Second, Context: "guest", WorkDir: work, Out: &buf, VM: testVM(t.TempDir(), work)})
		want := turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "this bot does not have image debian-12"}
		if diff := cmp.Diff(want, o); diff != "" || err == nil || !strings.Contains(err.Error(), `image "debian-12" in `) {
			t.Errorf("error %v, outcome (-want +got):\n%s\n%s", err, diff, buf.String())
		}
	})
}
