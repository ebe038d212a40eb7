// Package cluster boots several machines of one run on a private network
// of their own, where they reach each other by name: the machines of a
// context's `machines:` and of `turtles cluster`.
//
// Up works in phases. A Provider may first replace the machines' images
// with provisioned ones (Prepare). Then every machine boots at once (vm,
// warm when it can), gets a second network card hot-plugged on the run's
// switch (vnet), a static address 10.77.0.N/24 on it, its hostname, and
// an /etc/hosts that names every machine of the run (by its own name and
// as node01..nodeNN), so every program of the guest resolves them. Last,
// the Provider installs its cluster software (Provision): nothing more
// for "plain"; Kubernetes for the next one.
//
// Runs never share a switch, so they never see each other's frames. A
// machine that does not boot fails the whole Up as infra, and what did
// boot is stopped: Up is all or nothing. Down stops every machine and the
// switch and removes their files.
//
// The bot and cmd/turtles import it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/vm"
	"github.com/turtles-ci/turtles/vnet"
)

// Machine is one machine to boot.
type Machine struct {
	// Name is its host name on the network; node01.. when empty.
	Name  string
	Image *image.Manifest
	// CPUs and MemoryMB size it; both required.
	CPUs     int
	MemoryMB int
	// Forwards are guest TCP ports made reachable on 127.0.0.1.
	Forwards []int
}

// Config describes a cluster to bring up.
type Config struct {
	// Name names the run; machine directories are VM.Dir/NAME-MACHINE.
	Name     string
	Machines []Machine
	// VM is what every machine shares: Dir, BootTimeout, StopGrace,
	// QEMU, Warm, Detach, Owner, Log. Its Name, Image, size, Forwards,
	// Console and Key are set per machine.
	VM vm.Config
	// Console returns where a machine's serial console goes (the task
	// log, prefixed); nil discards it.
	Console func(machine string) io.Writer
	// Provider installs the cluster software; Plain when nil.
	Provider Provider
	// Hosts are more /etc/hosts lines for every guest ("10.0.2.100
	// registry": a service beside the cluster, such as its registry).
	Hosts []string
	// Dir is where the provider keeps the cluster's files on the host (a
	// kubeconfig, certificates): the caller's, removed by it.
	Dir string
	// Registry is the cluster's registry as the nodes reach it
	// (registry:5000, named in Hosts), plain HTTP; empty without one.
	Registry string
	// RegistryAuth is the Authorization header the registry wants
	// (registry.BasicAuth); empty when it wants none.
	RegistryAuth string
	// Switch, if set, runs the run's switch elsewhere (turtles cluster:
	// a process that outlives the command) over the machines' directories
	// once their cards are in; nil runs it in this process until Down.
	Switch func(ctx context.Context, dirs []string) error
	// Output receives what Up does, for people (the task log).
	Output io.Writer
	Log    *slog.Logger
}

// Node is a machine of a running cluster.
type Node struct {
	*vm.Machine
	// Host is the name given in the configuration (or Alias); Alias is
	// nodeNN, its place in the list.
	Host, Alias string
	// Addr is its address on the private network.
	Addr netip.Addr
}

// Cluster is a running cluster.
type Cluster struct {
	Name string
	// Dir is Config.Dir: the cluster's files on the host.
	Dir   string
	Nodes []*Node
	// Extra are Config.Hosts.
	Extra []string
	// Registry and RegistryAuth are Config's.
	Registry, RegistryAuth string
	// Key is the private key SSH into every node accepts.
	Key []byte
	// Provider is the one that provisioned it.
	Provider Provider
	// Timing is where Up's time went.
	Timing Timing
	sw     *vnet.Switch
}

// Timing is where Up's time went: every machine accepting SSH, the
// network (cards, addresses, names, each reaching the next), the
// provider's software.
type Timing struct {
	Boot, Network, Provision time.Duration
}

// Subnet is the private network's: 10.77.0.0/24, away from QEMU's user
// network (10.0.2.0/24) that every machine keeps for SSH. Every run has
// the same one: runs do not share a network.
var Subnet = netip.MustParsePrefix("10.77.0.0/24")

// MaxMachines is how many machines one network numbers.
const MaxMachines = 200

// addrOf is the address of the i-th machine (0-based): 10.77.0.11...
func addrOf(i int) netip.Addr {
	a := Subnet.Addr().As4()
	a[3] = byte(11 + i)
	return netip.AddrFrom4(a)
}

// Alias is the name of the i-th machine (0-based) besides its own: node01.
func Alias(i int) string { return fmt.Sprintf("node%02d", i+1) }

var hostRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$`)

// CheckNames says what is wrong with names as a cluster's machine names
// ("" for a nodeNN name), or nil: host names, unique, none another's
// nodeNN.
func CheckNames(names []string) error {
	if len(names) == 0 {
		return errors.New("no machines")
	}
	if len(names) > MaxMachines {
		return fmt.Errorf("%d machines, at most %d", len(names), MaxMachines)
	}
	seen := map[string]bool{}
	for i := range names {
		seen[Alias(i)] = true
	}
	for i, n := range names {
		switch {
		case n == "" || n == Alias(i):
			continue
		case !hostRe.MatchString(n):
			return fmt.Errorf("bad machine name %q: use lowercase letters, digits and - (a host name of at most 32)", n)
		case seen[n]:
			return fmt.Errorf("machine name %q is used twice (node01.. name the machines in order)", n)
		}
		seen[n] = true
	}
	return nil
}

// Up boots cfg's machines on a network of their own and returns when
// every one accepts SSH, is addressed and named, and the provider is
// done. Its errors are infra Faults (turtles.Fault) that name the
// machine, except bad arguments and ctx ending; on error nothing is left.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	names := make([]string, len(cfg.Machines))
	for i, m := range cfg.Machines {
		names[i] = m.Name
	}
	if err := CheckNames(names); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	if cfg.Provider == nil {
		cfg.Provider = Plain{}
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	machines, err := cfg.Provider.Prepare(ctx, cfg.Machines, cfg.Output)
	if err != nil {
		return nil, err
	}
	key, err := vm.NewKey()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: cfg.Name, Dir: cfg.Dir, Extra: cfg.Hosts, Registry: cfg.Registry, RegistryAuth: cfg.RegistryAuth, Key: key, Provider: cfg.Provider, Nodes: make([]*Node, len(machines))}
	for i, m := range machines {
		c.Nodes[i] = &Node{Host: m.Name, Alias: Alias(i), Addr: addrOf(i)}
		if c.Nodes[i].Host == "" {
			c.Nodes[i].Host = Alias(i)
		}
	}
	ok := false
	defer func() {
		if !ok {
			c.Down(context.Background())
		}
	}()

	// Phase 1: every machine boots at once and joins the network as soon
	// as it is up (addresses and names are known from the start), so that
	// the first machines' network is set up while the last still boot.
	// The first that fails stops the others.
	began := time.Now()
	if cfg.Switch == nil {
		c.sw = vnet.New(cfg.Log.With("cluster", c.Name))
	}
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := make([]error, len(machines))
	hosts := c.Hosts()
	for i, m := range machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := c.Nodes[i]
			vc := cfg.VM
			vc.Name = cfg.Name + "-" + n.Host
			vc.Image, vc.CPUs, vc.MemoryMB, vc.Forwards, vc.Key = m.Image, m.CPUs, m.MemoryMB, m.Forwards, key
			vc.Console = nil
			if cfg.Console != nil {
				vc.Console = cfg.Console(n.Host)
			}
			machine, err := vm.Start(bctx, vc)
			if err != nil {
				reason := "the VM did not start"
				if f, ok := turtles.FaultOf(err); ok {
					reason = f.Reason
				}
				errs[i] = turtles.InfraFault(fmt.Sprintf("machine %s: %s", n.Host, reason),
					fmt.Errorf("cluster %s: machine %s: %w", cfg.Name, n.Host, err))
				cancel(fmt.Errorf("machine %s did not start", n.Host))
				return
			}
			n.Machine = machine
			mu.Lock()
			c.Timing.Boot = max(c.Timing.Boot, time.Since(began))
			mu.Unlock()
			if err := c.join(bctx, n, hosts, cfg.Log); err != nil {
				errs[i] = turtles.InfraFault(fmt.Sprintf("machine %s: the private network could not be set up", n.Host),
					fmt.Errorf("cluster %s: machine %s: %w", cfg.Name, n.Host, err))
				cancel(fmt.Errorf("machine %s is not on the network", n.Host))
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	fmt.Fprintf(cfg.Output, "turtles: %d machines accept SSH after %s\n", len(c.Nodes), c.Timing.Boot.Round(100*time.Millisecond))
	if err := c.connect(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, turtles.InfraFault("the machines' private network could not be set up", fmt.Errorf("cluster %s: %w", cfg.Name, err))
	}
	c.Timing.Network = time.Since(began) - c.Timing.Boot
	fmt.Fprintf(cfg.Output, "turtles: %d machines reach each other by name after %s\n", len(c.Nodes),
		time.Since(began).Round(100*time.Millisecond))
	provisioned := time.Now()

	// Phase 2: the cluster software.
	if err := cfg.Provider.Provision(ctx, c, cfg.Output); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, ok := turtles.FaultOf(err); !ok {
			err = turtles.InfraFault("the "+cfg.Provider.Name()+" provider could not set up the cluster", err)
		}
		return nil, err
	}
	c.Timing.Provision = time.Since(provisioned)
	ok = true
	return c, nil
}

// Down stops every machine and the switch, and removes their files. It
// is safe to call more than once and on a cluster Up gave up on.
func (c *Cluster) Down(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		if n == nil || n.Machine == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.Stop(ctx)
		}()
	}
	wg.Wait()
	if c.sw != nil {
		c.sw.Close()
	}
	return errors.Join(errs...)
}

// Node returns the node called name (its host name or nodeNN).
func (c *Cluster) Node(name string) (*Node, bool) {
	for _, n := range c.Nodes {
		if n.Host == name || n.Alias == name {
			return n, true
		}
	}
	return nil, false
}

// Hosts is the /etc/hosts block that names every node.
func (c *Cluster) Hosts() string {
	var b strings.Builder
	b.WriteString("# turtles: the machines of this run\n")
	for _, n := range c.Nodes {
		if n.Host == n.Alias {
			fmt.Fprintf(&b, "%s\t%s\n", n.Addr, n.Host)
		} else {
			fmt.Fprintf(&b, "%s\t%s %s\n", n.Addr, n.Host, n.Alias)
		}
	}
	for _, l := range c.Extra {
		b.WriteString(strings.TrimSpace(l) + "\n")
	}
	return b.String()
}
