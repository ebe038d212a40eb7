package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/vm"
)

// vmCmd is the VM machinery for people and scripts: several VMs for one
// test, or one on a laptop. Machines live in DATA-DIR/vms/NAME and run
// until `turtles vm stop`; every vm command first sweeps machines whose
// qemu died or whose start was killed.
func vmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Start, use and stop test VMs",
	}
	cmd.AddCommand(vmStartCmd(), vmSSHCmd(), vmScpCmd(), vmListCmd(), vmStopCmd())
	for _, c := range cmd.Commands() {
		addFlags(c.Flags(), "data-dir", "images-dir", "log-level", "log-format")
	}
	return cmd
}

// vmSetup loads settings and sweeps the machines directory.
func vmSetup(cmd *cobra.Command) (Settings, string, error) {
	s, err := loadSettings(cmd.Flags())
	if err != nil {
		return s, "", err
	}
	dir := filepath.Join(s.DataDir, "vms")
	if _, err := vm.Sweep(dir, newLogger(s, cmd.ErrOrStderr())); err != nil {
		return s, "", err
	}
	return s, dir, nil
}

func vmStartCmd() *cobra.Command {
	var name string
	var forwards []int
	var cpus, memory, owner int
	var bootTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "start IMAGE",
		Short: "Boot a VM of an image and wait until it accepts SSH",
		Long: `start boots IMAGE (a name in the images directory, a manifest .json, or a
disk that boots itself, such as a cloud image) on a fresh overlay, waits
until SSH accepts the machine's own key, prints its name and returns. The
VM runs until "turtles vm stop NAME". Its serial console is in
DATA-DIR/vms/NAME/console.log.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			img, err := image.Resolve(args[0], s.ImagesDir)
			if err != nil {
				return err
			}
			ctx, _, stop := signals()
			defer stop()
			m, err := vm.Start(ctx, vm.Config{
				Image: img, Dir: dir, Name: name, CPUs: cpus, MemoryMB: memory,
				Forwards: forwards, BootTimeout: bootTimeout, StopGrace: personVMStopGrace, QEMU: qemuBinary, Detach: true, Owner: owner,
				Console: cmd.ErrOrStderr(), Log: newLogger(s, cmd.ErrOrStderr()),
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), m.Name)
			fmt.Fprintf(cmd.ErrOrStderr(), "turtles: %s is up (%s); ssh -i %s -p %d %s@127.0.0.1%s\n",
				m.Name, m.Accel, m.KeyFile(), m.SSHPort, m.User, portList(m.Ports))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "machine name (default: random)")
	cmd.Flags().IntSliceVar(&forwards, "forward", nil, "guest TCP port to forward to 127.0.0.1 (repeatable)")
	cmd.Flags().IntVar(&cpus, "cpus", defaultVMCPUs, "virtual CPUs")
	cmd.Flags().IntVar(&memory, "memory", defaultVMMemoryMB, "memory in MiB")
	cmd.Flags().DurationVar(&bootTimeout, "boot-timeout", defaultVMBootTimeout, "how long to wait for SSH")
	cmd.Flags().IntVar(&owner, "owner-pid", 0, "a process (a script, a test) whose death ends the VM at the next vm command's sweep")
	return cmd
}

func portList(ports map[int]int) string {
	if len(ports) == 0 {
		return ""
	}
	var parts []string
	for g, h := range ports {
		parts = append(parts, fmt.Sprintf("%d->127.0.0.1:%d", g, h))
	}
	sort.Strings(parts)
	return "; ports " + strings.Join(parts, ", ")
}

func vmSSHCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh NAME -- COMMAND...",
		Short: "Run a command in a VM; exits with its status",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			m, err := vm.Attach(dir, args[0])
			if err != nil {
				return err
			}
			ctx, _, stop := signals()
			defer stop()
			code, err := m.Exec(ctx, strings.Join(args[1:], " "), os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
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

func vmScpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scp SRC DST",
		Short: "Copy files into or out of a VM: scp PATH NAME:DIR or scp NAME:PATH DIR",
		Long: `scp copies a file or a directory's contents between this machine and a VM,
over SSH (tar). One side is NAME:PATH. The destination is a directory,
created if needed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			ctx, _, stop := signals()
			defer stop()
			src, dst := args[0], args[1]
			if name, guest, ok := remote(dst); ok {
				m, err := vm.Attach(dir, name)
				if err != nil {
					return err
				}
				return m.CopyTo(ctx, src, guest)
			}
			if name, guest, ok := remote(src); ok {
				m, err := vm.Attach(dir, name)
				if err != nil {
					return err
				}
				return m.CopyFrom(ctx, guest, dst)
			}
			return errors.New("scp: one of SRC and DST must be NAME:PATH")
		},
	}
}

// remote splits NAME:PATH; a path with a slash before the colon is local.
func remote(arg string) (name, path string, ok bool) {
	name, path, ok = strings.Cut(arg, ":")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	return name, path, true
}

func vmListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List running VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			entries, _ := os.ReadDir(dir)
			var states []vm.State
			for _, e := range entries {
				m, err := vm.Attach(dir, e.Name())
				if err != nil {
					continue // still booting
				}
				states = append(states, m.State)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(states)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSSH\tACCEL\tUP\tIMAGE")
			for _, st := range states {
				fmt.Fprintf(w, "%s\t127.0.0.1:%s\t%s\t%s\t%s\n", st.Name, strconv.Itoa(st.SSHPort), st.Accel,
					time.Since(st.Started).Round(time.Second), filepath.Base(st.Image))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func vmStopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stop NAME...",
		Short: "Stop VMs and remove their overlays",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, dir, err := vmSetup(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				m, err := vm.Attach(dir, name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				m.StopGrace = personVMStopGrace
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				errs = append(errs, m.Stop(ctx))
				cancel()
			}
			return errors.Join(errs...)
		},
	}
}
