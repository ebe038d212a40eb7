package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/kubernetes"
	"github.com/turtles-ci/turtles/syncio"
	"github.com/turtles-ci/turtles/vm"
)

func init() { register("cluster-k8s", clusterK8s) }

// k8sMemoryMB is a node's memory, as turtles cluster up gives it.
const k8sMemoryMB = 2048

// clusterK8s measures `cluster up` of a two-node Kubernetes cluster from
// a provisioned node image to every node Ready and the cluster DNS
// answering (issue 20), in seconds, median of alternating rounds with a
// plain two-node cluster of the same image and size (machines up and
// named: the baseline, so that the ratio says what Kubernetes adds).
// Once, first, it provisions: the Kubernetes binaries (cached; built if
// absent) and the node image, made anew in a directory of its own, then
// its warm state saved. BENCH_ROUNDS sets the rounds (default 5).
func clusterK8s(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "turtles-bench-k8s-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	accel := map[bool]string{true: "KVM", false: "TCG (no usable /dev/kvm)"}[vm.KVMUsable()]
	fmt.Printf("accelerator: %s; 2 nodes of %d CPUs and %d MiB; %d rounds\n", accel, benchCPUs, k8sMemoryMB, rounds)

	fmt.Println("==> provisioning, once: Kubernetes binaries (cached) and a new node image")
	began := time.Now()
	bins, err := kubernetes.BuildBinaries(ctx, kubernetes.CacheDir(), os.Stdout)
	if err != nil {
		return err
	}
	binaries := time.Since(began)
	p := &kubernetes.Provider{
		ImageCache: filepath.Join(dir, "images"), Mirror: benchDebianMirror, Log: slog.Default(),
		Binaries: func(context.Context, io.Writer) (kubernetes.Binaries, error) { return bins, nil },
	}
	began = time.Now()
	manifest, err := p.NodeImage(ctx, io.Discard)
	if err != nil {
		return err
	}
	img, err := image.Load(manifest)
	if err != nil {
		return err
	}
	imageTime := time.Since(began)
	vcfg := vm.Config{Dir: filepath.Join(dir, "vms"), BootTimeout: benchBootTimeout, StopGrace: benchStopGrace,
		QEMU: benchQEMU, Warm: filepath.Join(dir, "warm")}
	began = time.Now()
	m, err := vm.Start(ctx, vm.Config{Image: img, Dir: vcfg.Dir, CPUs: benchCPUs, MemoryMB: k8sMemoryMB,
		BootTimeout: vcfg.BootTimeout, StopGrace: vcfg.StopGrace, QEMU: vcfg.QEMU, Warm: vcfg.Warm})
	if err != nil {
		return err
	}
	m.Stop(context.Background())
	stateTime := time.Since(began)
	fmt.Printf("provisioning: binaries %.0f s (cached when about 0), node image %.0f s, warm state %.0f s\n",
		binaries.Seconds(), imageTime.Seconds(), stateTime.Seconds())

	round := 0
	up := func(provider cluster.Provider) (time.Duration, error) {
		round++
		began := time.Now()
		var consoles syncio.Buffer
		cfg := cluster.Config{Name: fmt.Sprintf("k%d", round), VM: vcfg, Provider: provider, Dir: filepath.Join(dir, fmt.Sprintf("c%d", round)),
			Console: func(host string) io.Writer { return cluster.LinePrefix(&consoles, host+"| ") }}
		for range 2 {
			cfg.Machines = append(cfg.Machines, cluster.Machine{Image: img, CPUs: benchCPUs, MemoryMB: k8sMemoryMB})
		}
		c, err := cluster.Up(ctx, cfg)
		if err != nil {
			return 0, err
		}
		took := time.Since(began)
		defer c.Down(context.Background())
		for _, n := range c.Nodes {
			if !n.Warm {
				return 0, fmt.Errorf("machine %s booted cold:\n%s", n.Name, consoles.String())
			}
		}
		return took, nil
	}
	var plains, kubes []time.Duration
	for i := range rounds {
		pl, err := up(cluster.Plain{})
		if err != nil {
			return err
		}
		k, err := up(p)
		if err != nil {
			return err
		}
		plains, kubes = append(plains, pl), append(kubes, k)
		fmt.Printf("round %d: plain %.1f s, kubernetes %.1f s\n", i+1, pl.Seconds(), k.Seconds())
	}
	pl, k := median(plains), median(kubes)
	fmt.Printf("median of %d: plain two machines %.1f s, Kubernetes to all Ready %.1f s (%.1f x), under %s\n",
		rounds, pl.Seconds(), k.Seconds(), k.Seconds()/pl.Seconds(), accel)
	result("cluster-k8s", fmt.Sprintf("%.0f", k.Seconds()), "s", "<= 300")
	return nil
}
