package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/syncio"
	"github.com/turtles-ci/turtles/vm"
)

func init() { register("cluster-up", clusterUp) }

// clusterUp compares three machines up on one private network, each
// reaching the next by name (cluster.Up), with one machine up (vm.Start),
// both to "a command ran in the guest", warm, in alternating rounds after
// the state was saved once (issue 19: three / one <= 1.5: they boot in
// parallel). It prints the absolute times and where the three's went.
func clusterUp(ctx context.Context) error {
	img, dir, err := debianBench(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	warm := filepath.Join(dir, "warm")
	vms := filepath.Join(dir, "vms")
	fmt.Printf("accelerator: %s; machines of %d CPUs and %d MiB\n", map[bool]string{true: "KVM", false: "TCG (no usable /dev/kvm)"}[vm.KVMUsable()], benchCPUs, benchMemoryMB)
	vcfg := vm.Config{Image: img, Dir: vms, CPUs: benchCPUs, MemoryMB: benchMemoryMB,
		BootTimeout: benchBootTimeout, StopGrace: benchStopGrace, QEMU: benchQEMU, Warm: warm}
	one := func() (time.Duration, error) {
		began := time.Now()
		m, err := vm.Start(ctx, vcfg)
		if err != nil {
			return 0, err
		}
		defer m.Stop(context.Background())
		if _, err := m.Output(ctx, "true"); err != nil {
			return 0, err
		}
		if !m.Warm {
			return 0, fmt.Errorf("machine %s booted cold", m.Name)
		}
		return time.Since(began), nil
	}
	round := 0
	three := func() (time.Duration, cluster.Timing, error) {
		round++
		began := time.Now()
		var consoles syncio.Buffer
		cfg := cluster.Config{Name: fmt.Sprintf("b%d", round), VM: vcfg,
			Console: func(host string) io.Writer { return cluster.LinePrefix(&consoles, host+"| ") }}
		for range 3 {
			cfg.Machines = append(cfg.Machines, cluster.Machine{Image: img, CPUs: benchCPUs, MemoryMB: benchMemoryMB})
		}
		c, err := cluster.Up(ctx, cfg)
		if err != nil {
			return 0, cluster.Timing{}, err
		}
		defer c.Down(context.Background())
		// Reached by name from the last to the first too (Up checked each
		// reaches the next), and a command ran in every guest.
		if _, err := c.Nodes[2].Output(ctx, cluster.Reach("node01", 22, time.Minute)); err != nil {
			return 0, cluster.Timing{}, err
		}
		for _, n := range c.Nodes {
			if !n.Warm {
				return 0, cluster.Timing{}, fmt.Errorf("machine %s booted cold:\n%s", n.Name, consoles.String())
			}
		}
		return time.Since(began), c.Timing, nil
	}
	fmt.Println("==> saving the state (a cold boot, once)")
	first, err := one()
	if err != nil {
		return err
	}
	fmt.Printf("first machine (save and restore): %.1f s\n", first.Seconds())
	const rounds = 5
	var ones, threes, boots, nets []time.Duration
	for i := range rounds {
		o, err := one()
		if err != nil {
			return err
		}
		th, tm, err := three()
		if err != nil {
			return err
		}
		ones, threes = append(ones, o), append(threes, th)
		boots, nets = append(boots, tm.Boot), append(nets, tm.Network)
		fmt.Printf("round %d: one %.1f s, three %.1f s (all accept SSH %.1f s, network and names %.1f s)\n",
			i+1, o.Seconds(), th.Seconds(), tm.Boot.Seconds(), tm.Network.Seconds())
	}
	o, th := median(ones), median(threes)
	fmt.Printf("median of %d: one %.1f s, three %.1f s (all accept SSH %.1f s, network and names %.1f s)\n",
		rounds, o.Seconds(), th.Seconds(), median(boots).Seconds(), median(nets).Seconds())
	result("cluster-up", fmt.Sprintf("%.2f", th.Seconds()/o.Seconds()), "ratio", "<= 1.5")
	return nil
}
