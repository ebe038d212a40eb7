package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/kubernetes"
	ociregistry "github.com/turtles-ci/turtles/registry"
	"github.com/turtles-ci/turtles/vm"
)

// clusterCmd is `turtles vm` for several machines on one private network
// (package cluster): kept until `turtles cluster down`. Machines live in
// DATA-DIR/vms as NAME-HOST (turtles vm list shows them too), the
// cluster's record and its switch's log in DATA-DIR/clusters/NAME.
func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Start, use and stop several VMs on one private network",
	}
	cmd.AddCommand(clusterUpCmd(), clusterListCmd(), clusterSSHCmd(), clusterEnvCmd(), clusterKubeconfigCmd(), clusterDownCmd(), clusterSwitchCmd())
	for _, c := range cmd.Commands() {
		addFlags(c.Flags(), "data-dir", "images-dir", "log-level", "log-format")
	}
	return cmd
}

var clusterNameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

func clustersDir(s Settings) string { return filepath.Join(s.DataDir, "clusters") }

func clusterRecordPath(s Settings, name string) string {
	return filepath.Join(clustersDir(s), name, "cluster.json")
}

func clusterUpCmd() *cobra.Command {
	var name, img, provider, kubeBinaries, kubeVersion string
	var nodes, cpus, memory, owner, registryPort int
	var bootTimeout time.Duration
	var warm, withRegistry bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Boot a cluster of VMs on a private network and wait until they reach each other by name",
		Long: `up boots --nodes machines of --image at once, each on a fresh overlay (warm
from a saved state when it can), on a private network of their own
(10.77.0.0/24, a switch in a process of its own, no root needed), where
each reaches the others as node01..nodeNN. It prints the cluster's name
and returns; the machines run until "turtles cluster down NAME".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			if name == "" {
				b := make([]byte, 3)
				rand.Read(b)
				name = "c-" + hex.EncodeToString(b)
			}
			if !clusterNameRe.MatchString(name) {
				return fmt.Errorf("bad cluster name %q: lowercase letters, digits and -, at most 31", name)
			}
			record := clusterRecordPath(s, name)
			if _, err := os.Stat(filepath.Dir(record)); err == nil {
				return fmt.Errorf("a cluster named %s exists: turtles cluster down %s", name, name)
			}
			p, err := cluster.ProviderNamed(provider)
			if err != nil {
				return err
			}
			if provider == "kubernetes" {
				if p, err = kubernetesProvider(s, kubeBinaries, kubeVersion); err != nil {
					return err
				}
				// A Kubernetes cluster has a registry and room for
				// its control plane unless told otherwise.
				if !cmd.Flags().Changed("memory") {
					memory = kubernetes.DefaultMemoryMB
				}
				if !cmd.Flags().Changed("registry") {
					withRegistry = true
				}
			} else if kubeBinaries != "" || kubeVersion != "" {
				return fmt.Errorf("--kubernetes-binaries and --version are for --provider kubernetes")
			}
			manifest, err := image.Resolve(img, s.ImagesDir)
			if err != nil {
				return err
			}
			machines := make([]cluster.Machine, nodes)
			for i := range machines {
				machines[i] = cluster.Machine{Image: manifest, CPUs: cpus, MemoryMB: memory}
			}
			if err := os.MkdirAll(filepath.Dir(record), 0o755); err != nil {
				return err
			}
			log := newLogger(s, cmd.ErrOrStderr())
			cfg := cluster.Config{
				Name: name, Machines: machines, Provider: p, Dir: filepath.Dir(record), Output: cmd.ErrOrStderr(), Log: log,
				VM: vm.Config{Dir: dir, BootTimeout: bootTimeout, StopGrace: personVMStopGrace, QEMU: qemuBinary,
					Detach: true, Owner: owner, Log: log},
				Switch: func(ctx context.Context, dirs []string) error {
					return startSwitch(ctx, s, name, dirs)
				},
			}
			if warm {
				cfg.VM.Warm = s.warmStates()
			}
			// The registry: one per data directory, kept running after
			// the cluster is down, its content in DATA-DIR/registry. A
			// guest reaches the host's loopback as 10.0.2.2 through
			// QEMU's user-mode network, so "registry" names that.
			registryAddr := ""
			if withRegistry {
				if registryAddr, err = ensureRegistry(s, registryPort); err != nil {
					return err
				}
				cfg.Hosts = append(cfg.Hosts, ociregistry.HostFromGuest+" "+ociregistry.GuestName)
				_, port, _ := net.SplitHostPort(registryAddr)
				cfg.Registry = "registry:" + port
			}
			ctx, _, stop := signals()
			defer stop()
			c, err := cluster.Up(ctx, cfg)
			if err != nil {
				os.RemoveAll(filepath.Dir(record))
				return err
			}
			r := c.Record(machines)
			r.SwitchPID = readSwitchPID(s, name)
			r.Registry = registryAddr
			if err := cluster.WriteRecord(record, r); err != nil {
				c.Down(context.Background())
				os.RemoveAll(filepath.Dir(record))
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), name)
			fmt.Fprintf(cmd.ErrOrStderr(), "turtles: cluster %s is up: %d nodes; turtles cluster ssh %s node01\n", name, len(c.Nodes), name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (default: random)")
	cmd.Flags().IntVar(&nodes, "nodes", 3, "how many machines")
	cmd.Flags().StringVar(&img, "image", "debian-12", "image of every machine")
	cmd.Flags().StringVar(&provider, "provider", "plain", "what runs on the machines: "+strings.Join(cluster.ProviderNames(), ", "))
	cmd.Flags().IntVar(&cpus, "cpus", defaultVMCPUs, "virtual CPUs of each machine")
	cmd.Flags().IntVar(&memory, "memory", defaultVMMemoryMB, "memory of each machine in MiB")
	cmd.Flags().DurationVar(&bootTimeout, "boot-timeout", defaultVMBootTimeout, "how long to wait for SSH")
	cmd.Flags().BoolVar(&warm, "warm", true, "start machines from saved states (docs/vms.md); false boots them cold")
	cmd.Flags().BoolVar(&withRegistry, "registry", false, "an OCI registry the nodes reach as registry:PORT and the host as 127.0.0.1:PORT; its content (DATA-DIR/registry) and process outlive the cluster")
	cmd.Flags().IntVar(&registryPort, "registry-port", 5000, "the registry's port on the host's loopback and, by name, on the nodes")
	cmd.Flags().StringVar(&kubeBinaries, "kubernetes-binaries", "", "with --provider kubernetes: a directory of your own kube-apiserver, kubelet, ... (or kubebin) to use instead of building them (docs/clusters.md)")
	cmd.Flags().StringVar(&kubeVersion, "version", "", "with --provider kubernetes: the Kubernetes version ("+kubernetes.Version+", the one this turtles builds)")
	cmd.Flags().IntVar(&owner, "owner-pid", 0, "a process (a script, a test) whose death ends the machines at the next vm or cluster command's sweep")
	addFlags(cmd.Flags(), "vm-warm-states")
	return cmd
}

// startSwitch starts `turtles cluster switch` in a session of its own, so
// that it outlives this command, and waits until it has connected every
// machine's card.
func startSwitch(ctx context.Context, s Settings, name string, dirs []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(clustersDir(s), name, "switch.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	c := exec.Command(self, append([]string{"cluster", "switch", "--data-dir", s.DataDir, "--", name}, dirs...)...)
	c.Stderr = logf
	out, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(clustersDir(s), name, "switch.pid"), []byte(strconv.Itoa(c.Process.Pid)), 0o600)
	go c.Wait() // reaped while we run; after that, init's
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("switch said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("the cluster's switch did not start: %v: %s", err, b)
		}
		return nil
	case <-ctx.Done():
		c.Process.Kill()
		return ctx.Err()
	}
}

func readSwitchPID(s Settings, name string) int {
	b, _ := os.ReadFile(filepath.Join(clustersDir(s), name, "switch.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// clusterSwitchCmd is the switch of a kept cluster (cluster.Serve): it
// exits when every machine is gone.
func clusterSwitchCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "switch NAME MACHINE-DIR...",
		Short:  "Run a cluster's private network (started by cluster up)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(s, cmd.ErrOrStderr()).With("cluster", args[0])
			ctx, _, stop := signals()
			defer stop()
			err = cluster.Serve(ctx, args[1:], func() {
				fmt.Fprintln(cmd.OutOrStdout(), "ready")
				os.Stdout.Close() // up has read it and gone
			}, log)
			if errors.Is(err, context.Canceled) {
				err = nil
			}
			log.Info("switch stopped", "err", err)
			return err
		},
	}
}

// clusters returns the records in the clusters directory; clusters none
// of whose machines run any more are removed (with their switch).
func clusters(s Settings, vmDir string) ([]cluster.Record, error) {
	entries, err := os.ReadDir(clustersDir(s))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []cluster.Record
	for _, e := range entries {
		r, err := cluster.ReadRecord(filepath.Join(clustersDir(s), e.Name(), "cluster.json"))
		if err != nil {
			continue // being brought up
		}
		c, _ := cluster.Attach(r, vmDir, filepath.Join(clustersDir(s), r.Name))
		if c != nil && len(c.Nodes) == 0 {
			removeCluster(s, r)
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// removeCluster ends a cluster's switch and removes its directory.
func removeCluster(s Settings, r cluster.Record) error {
	if r.SwitchPID > 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.SwitchPID))
		if strings.Contains(string(b), "cluster\x00switch\x00") && strings.Contains(string(b), "\x00"+r.Name+"\x00") {
			syscall.Kill(r.SwitchPID, syscall.SIGTERM)
		}
	}
	return os.RemoveAll(filepath.Join(clustersDir(s), r.Name))
}

func attachCluster(cmd *cobra.Command, name string) (*cluster.Cluster, Settings, error) {
	s, dir, err := vmSetup(cmd)
	if err != nil {
		return nil, s, err
	}
	r, err := cluster.ReadRecord(clusterRecordPath(s, name))
	if err != nil {
		return nil, s, fmt.Errorf("no cluster %s (turtles cluster list)", name)
	}
	c, err := cluster.Attach(r, dir, filepath.Join(clustersDir(s), r.Name))
	if err != nil && errors.Is(err, cluster.ErrGone) {
		return c, s, fmt.Errorf("cluster %s is not whole: %w (turtles cluster down %s)", name, err, name)
	}
	return c, s, err
}

func clusterListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List clusters, their nodes and what each costs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			rs, err := clusters(s, dir)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CLUSTER\tNODE\tHOST\tADDRESS\tSSH\tCPUS\tMEMORY\tIMAGE\tUP")
			for _, r := range rs {
				c, _ := cluster.Attach(r, dir, filepath.Join(clustersDir(s), r.Name))
				cpus, mem := 0, 0
				for _, rn := range r.Nodes {
					ssh := "gone"
					if c == nil {
						ssh = "?"
					} else if n, ok := c.Node(rn.Alias); ok {
						ssh = "127.0.0.1:" + strconv.Itoa(n.SSHPort)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d MiB\t%s\t%s\n", r.Name, rn.Alias, rn.Host, rn.Addr, ssh,
						rn.CPUs, rn.MemoryMB, shortImage(rn.Image), time.Since(r.Created).Round(time.Second))
					cpus += rn.CPUs
					mem += rn.MemoryMB
				}
				fmt.Fprintf(w, "%s\t(all)\t\t\t\t%d\t%d MiB\t\t\n", r.Name, cpus, mem)
				if r.Registry != "" {
					_, port, _ := net.SplitHostPort(r.Registry)
					fmt.Fprintf(w, "%s\t(registry)\tregistry:%s\t%s\t\t\t\t\t\n", r.Name, port, r.Registry)
				}
			}
			return w.Flush()
		},
	}
}

// shortImage is an image file's name without its extension and with its
// sha256 cut to 12 digits.
func shortImage(file string) string {
	name := strings.TrimSuffix(file, filepath.Ext(file))
	if i := strings.LastIndexByte(name, '-'); i > 0 && len(name)-i-1 == 64 {
		name = name[:i+13]
	}
	return name
}

func clusterSSHCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh CLUSTER NODE [-- COMMAND...]",
		Short: "Run a command on a node (a shell without one); exits with its status",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := attachCluster(cmd, args[0])
			if c == nil {
				return err
			}
			n, ok := c.Node(args[1])
			if !ok {
				return fmt.Errorf("cluster %s has no node %s", args[0], args[1])
			}
			if len(args) == 2 {
				// A terminal: the system's ssh does that best.
				ssh := exec.Command("ssh", "-i", n.KeyFile(), "-p", strconv.Itoa(n.SSHPort),
					"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
					n.User+"@127.0.0.1")
				ssh.Stdin, ssh.Stdout, ssh.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
				return ssh.Run()
			}
			ctx, _, stop := signals()
			defer stop()
			code, err := n.Exec(ctx, strings.Join(args[2:], " "), os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
}

func clusterEnvCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "env CLUSTER",
		Short: "Print shell exports that describe a cluster's nodes (eval \"$(turtles cluster env C)\")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, s, err := attachCluster(cmd, args[0])
			if err != nil {
				return err
			}
			env := c.Env(c.Nodes[0].KeyFile())
			if r, err := cluster.ReadRecord(clusterRecordPath(s, args[0])); err == nil && r.Registry != "" {
				_, port, _ := net.SplitHostPort(r.Registry)
				env = append(env, "TURTLES_REGISTRY="+r.Registry, "TURTLES_REGISTRY_GUEST=registry:"+port)
			}
			printExports(cmd.OutOrStdout(), env)
			return nil
		},
	}
}

func printExports(w io.Writer, env []string) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(w, "export %s=%s\n", k, vm.Quote(v))
	}
}

func clusterDownCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down CLUSTER...",
		Short: "Stop clusters: their machines, network and files",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				r, err := cluster.ReadRecord(clusterRecordPath(s, name))
				if err != nil {
					errs = append(errs, fmt.Errorf("no cluster %s", name))
					continue
				}
				c, err := cluster.Attach(r, dir, filepath.Join(clustersDir(s), r.Name))
				if c == nil {
					errs = append(errs, err)
					continue
				}
				for _, n := range c.Nodes {
					n.StopGrace = personVMStopGrace
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				errs = append(errs, c.Down(ctx), removeCluster(s, r))
				cancel()
			}
			return errors.Join(errs...)
		},
	}
}
