package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/registry"
	"github.com/turtles-ci/turtles/sandbox"
	"github.com/turtles-ci/turtles/syncio"
	"github.com/turtles-ci/turtles/vm"
)

// testMachines runs command with the task's machines (a context's
// machines:) up on a private network of their own: in the first machine
// (ModeGuest) or on the bot beside them (ModeHost), with every machine
// described in the environment (cluster.Env). A list over the operator's
// limits is refused before anything boots. Every machine and the
// network are gone before it returns, whatever happened.
func (r runner) testMachines(ctx context.Context, t turtles.Task, ws workspace, out io.Writer, command string, timeout time.Duration, v vmTask) (turtles.Outcome, error) {
	out = syncio.NewWriter(out)
	log := r.vm.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var provider cluster.Provider = cluster.Plain{}
	if v.provider != "" {
		p, ok := r.vm.Providers[v.provider]
		if !ok {
			var have []string
			for n := range r.vm.Providers {
				have = append(have, n)
			}
			sort.Strings(have)
			return failure(out, fmt.Sprintf("cluster: this bot has no provider %q (it has: %s)", v.provider, strings.Join(have, ", "))), nil
		}
		provider = p
	}
	machines := make([]cluster.Machine, len(v.machines))
	for i, m := range v.machines {
		machines[i] = cluster.Machine{Name: m.Name, CPUs: m.CPUs, MemoryMB: m.MemoryMB, Forwards: m.Forward}
		if machines[i].CPUs == 0 {
			machines[i].CPUs = r.vm.CPUs
		}
		if machines[i].MemoryMB == 0 {
			machines[i].MemoryMB = r.vm.MemoryMB
			if d, ok := provider.(interface{ DefaultMemoryMB() int }); ok {
				machines[i].MemoryMB = max(machines[i].MemoryMB, d.DefaultMemoryMB())
			}
		}
	}
	if reason := r.vm.overLimits(machines); reason != "" {
		return failure(out, reason), nil
	}
	for i, m := range v.machines {
		img, release, err := r.image(ctx, m.Image, out)
		if err != nil {
			if ctx.Err() != nil {
				return turtles.Outcome{}, cancelled(ctx)
			}
			return turtles.Outcome{}, imageFault(m.Image, err)
		}
		defer release()
		machines[i].Image = img
	}
	b := make([]byte, 4)
	rand.Read(b)
	cfg := cluster.Config{
		Name:     "r" + hex.EncodeToString(b),
		Machines: machines,
		Dir:      filepath.Join(ws.dir, "cluster"),
		Output:   out,
		Log:      log.With("task", t.Key()),
		Console: func(host string) io.Writer {
			return cluster.LinePrefix(out, "["+host+"] ")
		},
	}
	cfg.Provider = provider
	var regEnv []string
	if v.provider != "" {
		// The cluster's registry: the task's own, on the bot's loopback,
		// its content in the workspace, behind a password because other
		// tasks share that loopback (registry.Config.Password).
		reg, env, err := taskRegistry(ws, log)
		if err != nil {
			return turtles.Outcome{}, turtles.InfraFault("the bot could not start the cluster's registry", err)
		}
		defer reg.Close()
		cfg.Hosts = append(cfg.Hosts, registry.HostFromGuest+" "+registry.GuestName)
		cfg.Registry = fmt.Sprintf("%s:%d", registry.GuestName, reg.Port())
		cfg.RegistryAuth = registry.BasicAuth(env.password)
		regEnv = env.vars(reg.Port())
	}
	cfg.VM.Dir, cfg.VM.BootTimeout, cfg.VM.StopGrace, cfg.VM.QEMU = r.vm.Dir, r.vm.BootTimeout, r.vm.StopGrace, r.vm.QEMU
	cfg.VM.Log = cfg.Log
	if !t.Cold {
		cfg.VM.Warm = r.vm.Warm
	}
	var hosts []string
	for i, m := range machines {
		h := m.Name
		if h == "" {
			h = cluster.Alias(i)
		}
		hosts = append(hosts, fmt.Sprintf("%s (%d CPUs, %d MiB)", h, m.CPUs, m.MemoryMB))
	}
	// Cheap, and it catches what a killed `turtles run` left behind.
	if _, err := vm.Sweep(cfg.VM.Dir, log); err != nil {
		log.Warn("sweep VMs", "err", err)
	}
	logf(out, "booting %d machines on a private network: %s", len(machines), strings.Join(hosts, ", "))
	began := time.Now()
	c, err := cluster.Up(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			logf(out, "stopped while the machines booted: %v", context.Cause(ctx))
			return turtles.Outcome{}, cancelled(ctx)
		}
		if f, ok := turtles.FaultOf(err); ok {
			logf(out, "%s", f.Reason)
		}
		return turtles.Outcome{}, err
	}
	defer func() {
		stopped := time.Now()
		if err := c.Down(context.Background()); err != nil {
			log.Error("stop machines", "err", err)
		}
		logf(out, "%d machines stopped in %s", len(c.Nodes), time.Since(stopped).Round(10*time.Millisecond))
	}()
	logf(out, "%d machines up and named after %s", len(c.Nodes), time.Since(began).Round(100*time.Millisecond))
	for _, n := range c.Nodes {
		if _, err := n.Output(ctx, "mkdir -p "+GuestArtifacts); err != nil {
			if ctx.Err() != nil {
				return turtles.Outcome{}, cancelled(ctx)
			}
			return turtles.Outcome{}, turtles.InfraFault("the bot could not prepare machine "+n.Host+" for the task", fmt.Errorf("prepare machine %s: %w", n.Host, err))
		}
	}

	var o turtles.Outcome
	first := c.Nodes[0]
	if v.mode == turtles.ModeHost {
		logf(out, "running on the host, machines beside it: %s", command)
		key := first.KeyFile()
		if r.sandbox != nil {
			if key, err = copyKey(first.KeyFile(), filepath.Join(ws.dir, "vm-key")); err != nil {
				return turtles.Outcome{}, turtles.InfraFault("the bot could not hand the machines' SSH key to the task", err)
			}
			key = filepath.Join(sandbox.Root, "vm-key")
		}
		env := append(append(c.Env(key), regEnv...), "TURTLES_VM_ARTIFACTS="+GuestArtifacts)
		if r.sandbox != nil {
			// The provider's files (a kubeconfig) are in the workspace,
			// which the sandbox shows at sandbox.Root.
			env = inSandbox(env, ws.dir, sandbox.Root)
		}
		var spec execSpec
		if spec, err = r.onBot(t, ws, command, timeout, out, env...); err != nil {
			return turtles.Outcome{}, err
		}
		o, err = execute(ctx, spec)
	} else {
		o, err = r.guest(ctx, t, first.Machine, ws, out, command, timeout)
	}
	if ctx.Err() == nil {
		// The first machine's as a single VM's (vm/), the others' beside.
		for i, n := range c.Nodes {
			as := "vm"
			if i > 0 {
				as = "vm-" + n.Host
			}
			collect(n.Machine, ws, out, as)
		}
	}
	return o, err
}

// registryEnv is what a host-mode command learns of its cluster's
// registry.
type registryEnv struct{ password string }

func (e registryEnv) vars(port int) []string {
	return []string{
		fmt.Sprintf("TURTLES_REGISTRY=127.0.0.1:%d", port),
		fmt.Sprintf("TURTLES_REGISTRY_GUEST=%s:%d", registry.GuestName, port),
		"TURTLES_REGISTRY_USER=" + registry.User,
		"TURTLES_REGISTRY_PASSWORD=" + e.password,
	}
}

// taskRegistry starts the registry of a task's cluster on a free port of
// the bot's loopback, with a fresh password.
func taskRegistry(ws workspace, log *slog.Logger) (*registry.Registry, registryEnv, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, registryEnv{}, err
	}
	e := registryEnv{password: hex.EncodeToString(b)}
	reg, err := registry.Start("127.0.0.1:0", registry.Config{Dir: filepath.Join(ws.dir, "registry"), Password: e.password, Log: log})
	return reg, e, err
}

// inSandbox rewrites values of env that are paths under dir to the same
// paths under root, where a sandboxed command sees dir.
func inSandbox(env []string, dir, root string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if rel, err := filepath.Rel(dir, v); err == nil && filepath.IsAbs(v) && rel != ".." && !strings.HasPrefix(rel, "../") {
			v = filepath.Join(root, rel)
		}
		out[i] = k + "=" + v
	}
	return out
}

// overLimits says why machines exceed what the operator lets a task run
// on this bot, or "".
func (c VMConfig) overLimits(machines []cluster.Machine) string {
	cpus, mem := 0, 0
	for _, m := range machines {
		cpus += m.CPUs
		mem += m.MemoryMB
	}
	var over []string
	if c.MaxMachines > 0 && len(machines) > c.MaxMachines {
		over = append(over, fmt.Sprintf("%d machines (at most %d)", len(machines), c.MaxMachines))
	}
	if c.MaxCPUs > 0 && cpus > c.MaxCPUs {
		over = append(over, fmt.Sprintf("%d CPUs in all (at most %d)", cpus, c.MaxCPUs))
	}
	if c.MaxMemoryMB > 0 && mem > c.MaxMemoryMB {
		over = append(over, fmt.Sprintf("%d MiB of memory in all (at most %d)", mem, c.MaxMemoryMB))
	}
	if len(over) == 0 {
		return ""
	}
	return "machines: more than this bot may run: " + strings.Join(over, ", ") + "; nothing was booted"
}
