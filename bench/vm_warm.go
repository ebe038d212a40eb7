package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/turtles-ci/turtles/vm"
)

func init() { register("vm-warm", vmWarm) }

// vmWarm compares "task starts" to "a command ran in the guest" for a
// machine restored from the image's saved state against a cold boot of
// the same image, in alternating rounds after the state was saved once
// (issue 18: warm / cold <= 0.2 under TCG). It prints where a warm
// start's time goes: loading the state, making the guest unique, SSH.
func vmWarm(ctx context.Context) error {
	img, dir, err := debianBench(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	warmDir := filepath.Join(dir, "warm")
	fmt.Printf("accelerator: %s\n", map[bool]string{true: "KVM", false: "TCG (no usable /dev/kvm)"}[vm.KVMUsable()])
	start := func(warm string) (time.Duration, vm.WarmTiming, error) {
		began := time.Now()
		m, err := vm.Start(ctx, vm.Config{Image: img, Dir: filepath.Join(dir, "vms"), CPUs: benchCPUs, MemoryMB: benchMemoryMB,
			BootTimeout: benchBootTimeout, StopGrace: benchStopGrace, QEMU: benchQEMU, Warm: warm})
		if err != nil {
			return 0, vm.WarmTiming{}, err
		}
		defer m.Stop(context.Background())
		if _, err := m.Output(ctx, "true"); err != nil {
			return 0, vm.WarmTiming{}, err
		}
		if warm != "" && !m.Warm {
			return 0, vm.WarmTiming{}, fmt.Errorf("machine %s booted cold", m.Name)
		}
		return time.Since(began), m.Timing, nil
	}
	fmt.Println("==> saving the state (a cold boot, once)")
	first, _, err := start(warmDir)
	if err != nil {
		return err
	}
	fmt.Printf("first machine (save and restore): %.1f s\n", first.Seconds())
	const rounds = 5
	var cold, warm, load, refresh, ssh []time.Duration
	for i := range rounds {
		c, _, err := start("")
		if err != nil {
			return err
		}
		w, t, err := start(warmDir)
		if err != nil {
			return err
		}
		cold, warm = append(cold, c), append(warm, w)
		load, refresh, ssh = append(load, t.Load), append(refresh, t.Refresh), append(ssh, t.SSH)
		fmt.Printf("round %d: cold %.1f s, warm %.1f s (load %.2f s, unique %.2f s, SSH %.2f s)\n",
			i+1, c.Seconds(), w.Seconds(), t.Load.Seconds(), t.Refresh.Seconds(), t.SSH.Seconds())
	}
	c, w := median(cold), median(warm)
	fmt.Printf("median of %d: cold %.1f s, warm %.1f s (load %.2f s, unique %.2f s, SSH %.2f s)\n",
		rounds, c.Seconds(), w.Seconds(), median(load).Seconds(), median(refresh).Seconds(), median(ssh).Seconds())
	result("vm-warm", fmt.Sprintf("%.2f", w.Seconds()/c.Seconds()), "ratio", "<= 0.2")
	return nil
}
