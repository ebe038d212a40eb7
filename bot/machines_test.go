package bot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/store"
)

// TestMachinesOverLimits: a machines: list over the operator's limits is
// refused as a failure that says why, before any image or machine; one
// within them goes on (here to the image this bot lacks).
func TestMachinesOverLimits(t *testing.T) {
	dir := t.TempDir()
	r := runner{vm: VMConfig{ImagesDir: t.TempDir(), Dir: dir, CPUs: 2, MemoryMB: 1024,
		MaxMachines: 3, MaxCPUs: 6, MaxMemoryMB: 4096, BootTimeout: time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64"}}
	ctx := context.Background()
	three := []turtles.Machine{{Image: "no-such"}, {Image: "no-such"}, {Image: "no-such"}}
	for _, tc := range []struct {
		name     string
		machines []turtles.Machine
		want     turtles.Outcome
	}{
		{name: "too many", machines: append(three, turtles.Machine{Image: "no-such"}),
			want: turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "machines: more than this bot may run: 4 machines (at most 3), 8 CPUs in all (at most 6); nothing was booted"}},
		{name: "too much memory", machines: []turtles.Machine{{Image: "no-such", MemoryMB: 4000}, {Image: "no-such"}},
			want: turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "machines: more than this bot may run: 5024 MiB of memory in all (at most 4096); nothing was booted"}},
		{name: "within", machines: three,
			want: turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "this bot does not have image no-such"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			o, err := r.testMachines(ctx, turtles.Task{}, workspace{}, &out, "true", time.Minute, vmTask{mode: turtles.ModeGuest, machines: tc.machines})
			if err != nil {
				o = turtles.OutcomeOf(err)
			}
			if o != tc.want {
				t.Errorf("outcome %+v, want %+v\nlog:\n%s", o, tc.want, out.String())
			}
			if o.Class == turtles.Failure && !strings.Contains(out.String(), o.Reason) {
				t.Errorf("the log does not say why:\n%s", out.String())
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left in the machines' directory: %v", left)
			}
		})
	}
}

const machinesConfig = `contexts:
  - name: guest
    command: |
      test "$(hostname)" = db && test -f .turtles.yaml
      for n in node02 web node03 db node01; do
        getent hosts $n
        timeout 20 bash -c "exec 3<>/dev/tcp/$n/22" || exit 1
      done
      echo reached every machine by name
      echo result > "$TURTLES_ARTIFACTS/out.txt"
    machines:
      - {name: db, image: debian-12, cpus: 1, memory: 512}
      - {image: debian-12, cpus: 1, memory: 512}
      - {name: web, image: debian-12, cpus: 1, memory: 512}
  - name: host
    mode: host
    command: |
      echo "machines: $TURTLES_MACHINES"
      ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -i "$TURTLES_MACHINE_CLIENT_SSH_KEY" -p "$TURTLES_MACHINE_CLIENT_SSH_PORT" "$TURTLES_MACHINE_CLIENT_SSH_USER@127.0.0.1" \
        "echo client says \$(hostname) and server is \$(getent hosts server); echo from-client > $TURTLES_VM_ARTIFACTS/c.txt"
      echo "server at $TURTLES_MACHINE_SERVER_ADDR, first VM $TURTLES_VM_NAME"
    machines:
      - {name: server, image: debian-12, cpus: 1, memory: 512}
      - {name: client, image: debian-12, cpus: 1, memory: 512}
  - name: cluster
    mode: host
    command: |
      . "$FAKE_CONFIG"
      test "$registry" = "$TURTLES_REGISTRY_GUEST" && echo "the provider got the registry"
      test "$auth" = "Basic $(printf %s "$TURTLES_REGISTRY_USER:$TURTLES_REGISTRY_PASSWORD" | base64 -w0)" && echo "and its password"
      code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
      echo "host, no password: $(code "http://$TURTLES_REGISTRY/v2/")"
      echo "host, password: $(code -u "$TURTLES_REGISTRY_USER:$TURTLES_REGISTRY_PASSWORD" "http://$TURTLES_REGISTRY/v2/")"
      ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -i "$TURTLES_VM_SSH_KEY" -p "$TURTLES_MACHINE_NODE02_SSH_PORT" "$TURTLES_VM_SSH_USER@127.0.0.1" \
        "exec 3<>/dev/tcp/registry/${registry#*:}; printf 'GET /v2/ HTTP/1.0\\r\\nHost: registry\\r\\nAuthorization: $auth\\r\\n\\r\\n' >&3; echo \"node02 with the password: \$(head -1 <&3)\""
    cluster: {provider: fake, nodes: 2, cpus: 1}
  - name: no-provider
    mode: host
    command: "true"
    cluster: {provider: nosuch, nodes: 2}
`

// fakeProvider is a cluster provider that writes what it was given into
// its cluster's directory and names the file in the environment.
type fakeProvider struct{}

func (fakeProvider) Name() string { return "fake" }
func (fakeProvider) Prepare(_ context.Context, m []cluster.Machine, _ io.Writer) ([]cluster.Machine, error) {
	return m, nil
}
func (fakeProvider) Provision(_ context.Context, c *cluster.Cluster, out io.Writer) error {
	fmt.Fprintf(out, "fake provider: registry %s\n", c.Registry)
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "fake.conf"), []byte(fmt.Sprintf("registry=%s\nauth='%s'\n", c.Registry, c.RegistryAuth)), 0o600)
}
func (fakeProvider) Env(c *cluster.Cluster) []string {
	return []string{"FAKE_CONFIG=" + filepath.Join(c.Dir, "fake.conf")}
}
func (fakeProvider) DefaultMemoryMB() int { return 512 }

// TestMachinesTasks runs two tasks with machines through a real bot: in
// guest mode the command runs on the first machine and reaches every
// other by name and alias; in host mode the variables describe each
// machine. Artifacts come back per machine; nothing is left.
func TestMachinesTasks(t *testing.T) {
	images := vmImages(t)
	h := newHarness(t, map[string]string{".turtles.yaml": machinesConfig}, queue.Options{})
	h.cfg.VM = testVM(images, h.workDir)
	h.cfg.VM.Warm = t.TempDir()
	// Below the provider's default, which the cluster's nodes get.
	h.cfg.VM.MemoryMB = 256
	h.cfg.VM.Providers = map[string]cluster.Provider{"fake": fakeProvider{}, "plain": cluster.Plain{}}
	tasks := map[string]turtles.Task{}
	for _, name := range []string{"guest", "host", "cluster", "no-provider"} {
		tasks[name] = h.task(turtles.KindTest, name, "")
		h.publish(tasks[name])
	}
	start := time.Now()
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for done := 0; done < len(tasks); {
		d, err := h.db.Receive(ctx)
		if err != nil {
			t.Fatalf("waiting for the tasks: %v", err)
		}
		if d.Event().Type == turtles.EventFinished {
			done++
			t.Logf("%s finished after %s", d.Event().Task.Context, time.Since(start).Round(time.Second))
		}
		d.Ack(ctx)
	}
	check := func(name string, logHas ...string) {
		t.Helper()
		res := h.result(tasks[name])
		log := h.log(tasks[name])
		if res.Outcome != (turtles.Outcome{Class: turtles.Success}) {
			t.Errorf("%s: outcome %+v\n%s", name, res.Outcome, log)
		}
		for _, s := range logHas {
			if !strings.Contains(log, s) {
				t.Errorf("%s: log lacks %q:\n%s", name, s, log)
			}
		}
	}
	check("guest", "booting 3 machines on a private network: db (1 CPUs, 512 MiB), node02 (1 CPUs, 512 MiB), web",
		"[web] turtles: ", "10.77.0.13      web node03", "reached every machine by name", "3 machines stopped in")
	check("host", "machines: server client", "client says client and server is 10.77.0.11 server node01",
		"server at 10.77.0.11, first VM ")
	check("cluster", "booting 2 machines on a private network: node01 (1 CPUs, 512 MiB), node02 (1 CPUs, 512 MiB)",
		"fake provider: registry registry:", "the provider got the registry", "and its password",
		"host, no password: 401", "host, password: 200", "node02 with the password: HTTP/1.0 200 OK")
	if res := h.result(tasks["no-provider"]); res.Outcome.Class != turtles.Failure ||
		res.Outcome.Reason != `cluster: this bot has no provider "nosuch" (it has: fake, plain)` {
		t.Errorf("no-provider: outcome %+v", res.Outcome)
	}
	prefix := store.AttemptPrefix(tasks["guest"]) + store.ArtifactsName
	if got, _ := h.object(prefix + "vm/out.txt"); got != "result\n" {
		t.Errorf("guest artifact vm/out.txt = %q", got)
	}
	if got, _ := h.object(prefix + "vm-web/journal.txt"); got == "" {
		t.Error("no journal of machine web")
	}
	if got, _ := h.object(store.AttemptPrefix(tasks["host"]) + store.ArtifactsName + "vm-client/c.txt"); got != "from-client\n" {
		t.Errorf("host task's client artifact = %q", got)
	}
	h.waitIdle()
	if left, _ := os.ReadDir(filepath.Join(h.workDir, "vms")); len(left) != 0 {
		t.Errorf("machines left behind: %v", left)
	}
	if q := qemuOf(h.workDir); len(q) != 0 {
		t.Errorf("qemu processes left behind: %v", q)
	}
}
