package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/kubernetes"
)

// The kubernetes provider of `turtles cluster` and `cluster:` in
// .turtles.yaml (package kubernetes). Known to cluster.Attach by name, so
// that env, ssh and down work on its clusters; up configures its own.
func init() { cluster.Register(&kubernetes.Provider{}) }

// kubernetesProvider is the provider for s: Kubernetes built from the
// pinned module, or the binaries in own (--kubernetes-binaries).
func kubernetesProvider(s Settings, own, version string) (*kubernetes.Provider, error) {
	if version != "" && version != kubernetes.Version && !strings.HasPrefix(kubernetes.Version, version+".") {
		return nil, fmt.Errorf("no Kubernetes %s here: this turtles builds %s (or bring your own: --kubernetes-binaries DIR)",
			version, kubernetes.Version)
	}
	return &kubernetes.Provider{
		ImageCache: debian.CacheDir(),
		Mirror:     s.DebianMirror,
		Binaries: func(ctx context.Context, out io.Writer) (kubernetes.Binaries, error) {
			if own == "" {
				return kubernetes.BuildBinaries(ctx, kubernetes.CacheDir(), out)
			}
			var built kubernetes.Binaries
			if kubernetes.NeedBuild(own) {
				var err error
				if built, err = kubernetes.BuildBinaries(ctx, kubernetes.CacheDir(), out); err != nil {
					return built, err
				}
			}
			return kubernetes.OwnBinaries(own, built)
		},
	}, nil
}

func clusterKubeconfigCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "kubeconfig CLUSTER",
		Short: "Print (or write with -o) the kubeconfig of a kubernetes cluster, which works from this host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := attachCluster(cmd, args[0])
			if err != nil {
				return err
			}
			if c.Provider.Name() != "kubernetes" {
				return fmt.Errorf("cluster %s runs %s, not kubernetes: it has no kubeconfig", args[0], c.Provider.Name())
			}
			b, err := os.ReadFile(kubernetes.KubeconfigPath(c.Dir))
			if err != nil {
				return fmt.Errorf("cluster %s: %w", args[0], err)
			}
			if output == "" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(output, b, 0o600)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write it to this file (mode 0600) instead")
	return cmd
}
