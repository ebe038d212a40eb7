package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/image/debian"
)

func imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, pin, pull, push, list, prune and serve the OS images that test VMs boot",
	}
	cmd.AddCommand(imageBuildCmd(), imagePinCmd(), imagePullCmd(), imagePushCmd(), imageListCmd(), imagePruneCmd(), imageServeCmd())
	return cmd
}

func imageBuildCmd() *cobra.Command {
	var out, mirror, packages string
	var cached bool
	var recipes []string
	for r := range debian.Recipes {
		recipes = append(recipes, r)
	}
	sort.Strings(recipes)
	cmd := &cobra.Command{
		Use:   "build RECIPE [--packages PKG,...]",
		Short: "Build a bootable image (" + strings.Join(recipes, ", ") + ") with debootstrap",
		Long: `build makes a bootable Debian image with debootstrap (systemd,
openssh-server and a first-boot unit that installs the per-run SSH key from
the machine's seed disk), without loop mounts, and writes it to the images
directory as RECIPE-SHA256.qcow2 with the kernel and initrd for direct
kernel boot beside it, a manifest RECIPE-SHA256.json, and RECIPE.json
pointing at the newest build: contexts name it as "image: RECIPE".

--packages derives an image with extra Debian packages (and what they
depend on), named RECIPE_PKG1_PKG2... with the packages sorted, e.g.
"debian-12_etcd-server" (RECIPE__ and a hash of the list when a name has a
"+" or the list is long): contexts name it as "image: debian-12_etcd-server".
It is derived from the recipe's newest build in the directory (RECIPE.json)
in about a minute (a loop mount of a copy of its disk); when there is none,
the recipe's image is built first.

It needs root (debootstrap) and a Debian mirror; it takes a few minutes.
It prints the path of the manifest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			if out == "" {
				out = s.ImagesDir
			}
			if cmd.Flags().Changed("mirror") {
				s.DebianMirror = mirror
			}
			pkgs, err := debian.ParsePackages(packages)
			if err != nil {
				return fmt.Errorf("--packages: %w", err)
			}
			ctx, _, stop := signals()
			defer stop()
			log := newLogger(s, cmd.ErrOrStderr())
			var manifest string
			if cached {
				if _, ok := debian.Recipes[args[0]]; !ok {
					return fmt.Errorf("unknown image recipe %q", args[0])
				}
				manifest, err = debian.CachedPackages(ctx, debian.CacheDir(), args[0], pkgs, s.DebianMirror, cmd.ErrOrStderr(), log)
			} else {
				o := debian.Options{Recipe: args[0], Packages: pkgs, Out: out, Mirror: s.DebianMirror, Output: cmd.ErrOrStderr(), Log: log}
				if base := filepath.Join(out, args[0]+".json"); len(pkgs) > 0 {
					if _, err := os.Stat(base); err == nil {
						o.Base = base
						log.Info("deriving from the recipe's newest build", "base", base)
					}
				}
				manifest, err = debian.Build(ctx, o)
			}
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(manifest)
			fmt.Fprintln(cmd.OutOrStdout(), abs)
			return nil
		},
	}
	cmd.Flags().StringVar(&packages, "packages", "", "comma-separated Debian packages to add to the recipe's image: a derived image, e.g. etcd-server,nginx")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the image to (default: the images directory)")
	// --mirror was the flag before --debian-mirror, which has the
	// environment variable and the config key too.
	cmd.Flags().StringVar(&mirror, "mirror", "", "Debian mirror")
	cmd.Flags().MarkDeprecated("mirror", "use --debian-mirror")
	cmd.Flags().BoolVar(&cached, "cached", false, "use (or fill) the shared cache the tests use ($TURTLES_IMAGE_CACHE, $XDG_CACHE_HOME/turtles/images or /var/tmp/turtles-cache/images), keyed by the recipe's version")
	addFlags(cmd.Flags(), "data-dir", "images-dir", "debian-mirror", "log-level", "log-format")
	return cmd
}
