package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	ociregistry "github.com/turtles-ci/turtles/registry"
)

func registryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run the OCI image registry that clusters use (turtles cluster up --registry)",
	}
	cmd.AddCommand(registryServeCmd())
	return cmd
}

func registryServeCmd() *cobra.Command {
	var listen, dir string
	cmd := &cobra.Command{
		Use:   "serve [--listen 127.0.0.1:5000] [--dir DIR]",
		Short: "Serve an OCI registry whose content lives in a directory",
		Long: `serve runs an OCI registry (go-containerregistry's) on --listen, plain
HTTP, with its blobs and manifests in --dir (default DATA-DIR/registry): what
is pushed survives a restart. It prints the address it listens on, one line,
once it accepts connections (--listen 127.0.0.1:0 picks a free port), and
runs until a signal. Guests of a cluster reach it as registry:5000 through
QEMU's user-mode network (docs/vms.md, "A registry for clusters").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			if dir == "" {
				dir = filepath.Join(s.DataDir, "registry")
			}
			log := newLogger(s, cmd.ErrOrStderr())
			r, err := ociregistry.Start(listen, ociregistry.Config{Dir: dir, Log: log})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), r.Addr())
			log.Info("serving registry", "addr", r.Addr(), "dir", dir)
			ctx, _, stop := signals()
			defer stop()
			select {
			case <-ctx.Done():
				return r.Close()
			case <-waitChan(r):
				return r.Wait()
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:5000", "address to serve on (HOST:PORT; port 0 picks one)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the registry's content (default DATA-DIR/registry)")
	addFlags(cmd.Flags(), "data-dir", "log-level", "log-format")
	return cmd
}

// waitChan is closed when r stops serving on its own.
func waitChan(r *ociregistry.Registry) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		r.Wait()
		close(c)
	}()
	return c
}
