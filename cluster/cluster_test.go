package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/syncio"
	"github.com/turtles-ci/turtles/vm"
)

func TestCheckNames(t *testing.T) {
	for _, tc := range []struct {
		names []string
		bad   string
	}{
		{names: []string{"", "", ""}},
		{names: []string{"server", "client"}},
		{names: []string{"node01", "db"}},
		{names: nil, bad: "no machines"},
		{names: []string{"a", "a"}, bad: "used twice"},
		{names: []string{"a", "node01"}, bad: "used twice"},
		{names: []string{"Server"}, bad: "bad machine name"},
		{names: []string{"x_y"}, bad: "bad machine name"},
		{names: []string{"-x"}, bad: "bad machine name"},
		{names: make([]string, MaxMachines+1), bad: "at most"},
	} {
		err := CheckNames(tc.names)
		if (tc.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("CheckNames(%q) = %v, want %q", tc.names, err, tc.bad)
		}
	}
}

func TestHosts(t *testing.T) {
	c := &Cluster{Nodes: []*Node{
		{Host: "server", Alias: "node01", Addr: addrOf(0)},
		{Host: "node02", Alias: "node02", Addr: addrOf(1)},
	}, Extra: []string{"10.0.2.100 registry"}}
	want := "# turtles: the machines of this run\n10.77.0.11\tserver node01\n10.77.0.12\tnode02\n10.0.2.100 registry\n"
	if got := c.Hosts(); got != want {
		t.Errorf("Hosts() = %q, want %q", got, want)
	}
}

// debianImage returns the cached real Debian image, building it the first
// time (about two minutes).
func debianImage(t *testing.T) *image.Manifest {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing: run scripts/deps.sh", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("building the Debian test image needs root")
	}
	if testing.Short() {
		t.Skip("boots VMs")
	}
	path, err := debian.Cached(context.Background(), debian.CacheDir(), "debian-12", "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, err := image.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	warmOnce sync.Once
	warmDir  string
)

// warmStates is the saved states' directory of this test binary (or
// $TURTLES_TEST_WARM, to keep them between runs while iterating): the
// first machine of a shape saves its state, the others restore it.
func warmStates(t *testing.T) string {
	warmOnce.Do(func() {
		if d := os.Getenv("TURTLES_TEST_WARM"); d != "" {
			warmDir = d
			return
		}
		d, err := os.MkdirTemp("", "turtles-cluster-warm-")
		if err != nil {
			t.Fatal(err)
		}
		warmDir = d
	})
	return warmDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if warmDir != "" && os.Getenv("TURTLES_TEST_WARM") == "" {
		os.RemoveAll(warmDir)
	}
	os.Exit(code)
}

// testConfig is a cluster of machines of img in dir, one CPU and 512 MiB
// each.
func testConfig(t *testing.T, name string, img *image.Manifest, dir string, console *syncio.Buffer, hosts ...string) Config {
	cfg := Config{
		Name: name,
		VM: vm.Config{Dir: dir, BootTimeout: 5 * time.Minute, StopGrace: time.Second,
			QEMU: "qemu-system-x86_64", Warm: warmStates(t), Log: slog.Default()},
		Console: func(m string) io.Writer { return LinePrefix(console, name+"/"+m+"| ") },
		Output:  console,
		Log:     slog.Default(),
	}
	for _, h := range hosts {
		cfg.Machines = append(cfg.Machines, Machine{Name: h, Image: img, CPUs: 1, MemoryMB: 512})
	}
	return cfg
}

func TestLinePrefix(t *testing.T) {
	var out bytes.Buffer
	w := LinePrefix(&out, "[db] ")
	for _, s := range []string{"Booting", " Linux\r\n", "login: ", "\nnext\n"} {
		w.Write([]byte(s))
	}
	want := "[db] Booting Linux\r\n[db] login: \n[db] next\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// TestTwoRuns brings up a run of three machines and, at the same time, a
// run of two; every assertion shares those five boots. In a run every
// machine reaches every other by name and alias, through the resolver
// every program uses; the second run sees nothing of the first, though
// both number their machines alike; Down leaves nothing.
func TestTwoRuns(t *testing.T) {
	img := debianImage(t)
	dir := t.TempDir()
	ctx := context.Background()
	var consoleA, consoleB syncio.Buffer
	cfgA := testConfig(t, "a", img, dir, &consoleA, "alpha", "", "gamma")
	cfgB := testConfig(t, "b", img, dir, &consoleB, "", "")
	var a, b *Cluster
	var errA, errB error
	began := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a, errA = Up(ctx, cfgA) }()
	go func() { defer wg.Done(); b, errB = Up(ctx, cfgB) }()
	wg.Wait()
	if errA != nil || errB != nil {
		if a != nil {
			a.Down(ctx)
		}
		if b != nil {
			b.Down(ctx)
		}
		t.Fatalf("up: %v; %v\nrun a:\n%s\nrun b:\n%s", errA, errB, consoleA.String(), consoleB.String())
	}
	t.Logf("two runs of 3 and 2 machines up in %s", time.Since(began).Round(100*time.Millisecond))
	downed := false
	defer func() {
		if !downed {
			a.Down(ctx)
			b.Down(ctx)
		}
	}()

	t.Run("names", func(t *testing.T) {
		want := [][2]string{{"alpha", "node01"}, {"node02", "node02"}, {"gamma", "node03"}}
		for i, n := range a.Nodes {
			if n.Host != want[i][0] || n.Alias != want[i][1] || n.Addr != addrOf(i) {
				t.Errorf("node %d: %s %s %s, want %s %s %s", i, n.Host, n.Alias, n.Addr, want[i][0], want[i][1], addrOf(i))
			}
		}
		if _, ok := a.Node("node03"); !ok {
			t.Error("no node03")
		}
	})

	t.Run("reach by name", func(t *testing.T) {
		// From every machine to every other, by host name and alias: a
		// TCP connection to its sshd, resolved by getaddrinfo (bash).
		for _, from := range a.Nodes {
			var script []string
			for _, to := range a.Nodes {
				if to == from {
					continue
				}
				for _, name := range []string{to.Host, to.Alias} {
					script = append(script, Reach(name, 22, 30*time.Second),
						fmt.Sprintf("getent hosts %s | grep -qx '%s *%s.*'", name, to.Addr, to.Host))
				}
			}
			script = append(script, "test \"$(hostname)\" = "+from.Host)
			if out, err := from.Output(ctx, strings.Join(script, " && ")); err != nil {
				t.Errorf("from %s: %v %s", from.Host, err, out)
			}
		}
	})

	t.Run("isolated", func(t *testing.T) {
		// b's machines have a's first two addresses. b's node01 reaches
		// b's node02 (the barrier: its network works), but not a's third
		// address, which only a has, and it never heard of a's cards.
		n := b.Nodes[0]
		if out, err := n.Output(ctx, Reach("node02", 22, 30*time.Second)); err != nil {
			t.Fatalf("b's node01 does not reach its node02: %v %s", err, out)
		}
		out, err := n.Output(ctx, Reach(a.Nodes[2].Addr.String(), 22, 4*time.Second))
		if err == nil {
			t.Errorf("b's node01 reaches %s, a machine of another run: %s", a.Nodes[2].Addr, out)
		}
		neigh, err := n.Output(ctx, "ip neigh; ip -s link")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range a.Nodes {
			if strings.Contains(neigh, m.LANMAC) {
				t.Errorf("b's node01 saw the card %s of a's %s:\n%s", m.LANMAC, m.Host, neigh)
			}
		}
	})

	t.Run("one key", func(t *testing.T) {
		for _, n := range append(a.Nodes, b.Nodes...) {
			key, err := os.ReadFile(n.KeyFile())
			if err != nil {
				t.Fatal(err)
			}
			c := a
			if strings.HasPrefix(n.Name, "b-") {
				c = b
			}
			if !bytes.Equal(key, c.Key) {
				t.Errorf("%s has a key of its own, not the run's", n.Name)
			}
		}
		if bytes.Equal(a.Key, b.Key) {
			t.Error("two runs share a key")
		}
	})

	t.Run("down", func(t *testing.T) {
		downed = true
		pids := []int{}
		for _, n := range append(a.Nodes, b.Nodes...) {
			pids = append(pids, n.PID)
		}
		if err := a.Down(ctx); err != nil {
			t.Error(err)
		}
		if err := b.Down(ctx); err != nil {
			t.Error(err)
		}
		left, _ := os.ReadDir(dir)
		if len(left) != 0 {
			t.Errorf("left in the machines' directory: %v", left)
		}
		for _, p := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(b), dir) {
					t.Errorf("qemu %d still runs", p)
				}
			}
		}
		if a.sw.Ports() != 0 || b.sw.Ports() != 0 {
			t.Errorf("switch ports left: %d, %d", a.sw.Ports(), b.sw.Ports())
		}
	})
}

// TestMachineFails: a machine that does not boot (no root file system:
// the initramfs gives up and the machine resets) fails the run as infra, named, with its
// console in the log; the machine that did start is gone, and so is
// everything else.
func TestMachineFails(t *testing.T) {
	img := debianImage(t)
	dir := t.TempDir()
	ctx := context.Background()
	var console syncio.Buffer
	cfg := testConfig(t, "f", img, dir, &console, "good", "bad")
	broken := *img
	broken.Append = "root=/dev/vdz ro console=ttyS0 panic=-1"
	broken.GuestAgent = false // no warm start: straight to the boot
	cfg.Machines[1].Image = &broken
	c, err := Up(ctx, cfg)
	if err == nil {
		c.Down(ctx)
		t.Fatal("up with a machine that cannot boot")
	}
	o := turtles.OutcomeOf(err)
	if o.Class != turtles.Infra || o.Reason != "machine bad: QEMU exited while the VM booted" {
		t.Errorf("outcome %+v, want infra naming machine bad and why (%v)", o, err)
	}
	if !regexp.MustCompile(`(?m)^f/bad\| .*/dev/vdz does not exist`).MatchString(console.String()) {
		t.Errorf("the log lacks bad's console:\n%s", console.String())
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("left in the machines' directory: %v", left)
	}
}
