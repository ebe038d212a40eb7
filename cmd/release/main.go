// Command release builds what turtles ships, without a container engine:
// the container image (make image), the Debian package (make deb), and a
// whole release from a signed tag (make release), and verifies a release
// directory. Its defaults are decided here; the work is done by package
// release and its subpackages ociimage and deb.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/release"
	"github.com/turtles-ci/turtles/release/deb"
	"github.com/turtles-ci/turtles/release/ociimage"
)

// Defaults.
const (
	defaultMirror = "http://deb.debian.org/debian"
	// defaultAllowedSigners are the keys trusted to sign release tags,
	// kept in the repository beside this tool's docs.
	defaultAllowedSigners = "deploy/release/allowed_signers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "release",
		Short:         "Build turtles' container image, Debian package and signed releases",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(rootfsCmd(), imageCmd(), debCmd(), releaseCmd(), verifyCmd())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// sourceDate is SOURCE_DATE_EPOCH, else now: the time stamped on what is
// built, so that a rebuild with the same epoch is the same bytes.
func sourceDate() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", v, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// rootfsFlags are where the base layer comes from.
type rootfsFlags struct {
	mirror, cache, arch string
	verbose             bool
}

func (f *rootfsFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mirror, "mirror", defaultMirror, "Debian mirror debootstrap installs from")
	cmd.Flags().StringVar(&f.cache, "cache", debian.CacheDir(), "cache of base layers, shared with the tests ($TURTLES_IMAGE_CACHE, $XDG_CACHE_HOME/turtles/images)")
	cmd.Flags().StringVar(&f.arch, "arch", "amd64", "architecture of the image")
	cmd.Flags().BoolVar(&f.verbose, "verbose", false, "show debootstrap's output")
}

func (f *rootfsFlags) layer(ctx context.Context, log *slog.Logger) (string, error) {
	var out *os.File
	if f.verbose {
		out = os.Stderr
	}
	o := ociimage.RootfsOptions{Mirror: f.mirror, Arch: f.arch, Log: log}
	if out != nil {
		o.Output = out
	}
	return ociimage.CachedRootfs(ctx, f.cache, o)
}

func rootfsCmd() *cobra.Command {
	var rf rootfsFlags
	cmd := &cobra.Command{
		Use:   "rootfs",
		Short: "Build (or find in the cache) the image's base layer and print its path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			layer, err := rf.layer(cmd.Context(), logger())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), layer)
			return nil
		},
	}
	rf.add(cmd)
	return cmd
}

func imageCmd() *cobra.Command {
	var (
		rf                                    rootfsFlags
		binary, out, ref, push, ver, revision string
	)
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the container image as an OCI layout, and push it",
		Long: `image builds the turtles container image without a container engine: the
cached Debian base layer (built with debootstrap on first use: root and a
Debian mirror), the binary as a layer of its own, and a config that runs it
as the user turtles (uid 10001). It writes an OCI image layout to --out
(skopeo copy oci:DIR:REF ..., podman load) and, with --push, uploads it to
a registry with the credentials of docker login or podman login.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := logger()
			created, err := sourceDate()
			if err != nil {
				return err
			}
			layer, err := rf.layer(cmd.Context(), log)
			if err != nil {
				return err
			}
			log.Info("adding the binary layer and the config", "binary", binary, "created", created)
			img, err := ociimage.Build(ociimage.Options{Rootfs: layer, Binary: binary, Arch: rf.arch, Created: created,
				Version: ver, Revision: revision})
			if err != nil {
				return err
			}
			if err := ociimage.WriteLayout(out, img, ref); err != nil {
				return err
			}
			d, err := img.Digest()
			if err != nil {
				return err
			}
			log.Info("image written", "layout", out, "ref", ref, "digest", d)
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", out, d)
			if push == "" {
				return nil
			}
			log.Info("pushing", "to", push)
			pushed, err := ociimage.Push(cmd.Context(), img, push)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pushed)
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&binary, "binary", "bin/turtles-linux-amd64", "the static turtles binary for --arch")
	cmd.Flags().StringVar(&out, "out", "bin/image", "directory of the OCI image layout (replaced)")
	cmd.Flags().StringVar(&ref, "ref", "turtles:devel", "name of the image in the layout")
	cmd.Flags().StringVar(&push, "push", "", "registry reference to push to, such as registry.example.com/turtles:TAG")
	cmd.Flags().StringVar(&ver, "version", "", "version label of the image")
	cmd.Flags().StringVar(&revision, "revision", "", "commit label of the image")
	return cmd
}

func debCmd() *cobra.Command {
	var binary, arch, ver, units, config, maintainer, out string
	cmd := &cobra.Command{
		Use:   "deb",
		Short: "Build the Debian package with dpkg-deb and print its path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := sourceDate()
			if err != nil {
				return err
			}
			files, err := filepath.Glob(filepath.Join(units, "*.service"))
			if err != nil || len(files) == 0 {
				return fmt.Errorf("no systemd units in %s", units)
			}
			path, err := deb.Build(cmd.Context(), deb.Options{Binary: binary, Arch: arch, Version: ver, Units: files,
				Config: config, Depends: ociimage.Packages, Maintainer: maintainer, Time: t, Out: out})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), path)
			return nil
		},
	}
	cmd.Flags().StringVar(&binary, "binary", "bin/turtles-linux-amd64", "the static turtles binary for --arch")
	cmd.Flags().StringVar(&arch, "arch", "amd64", "architecture: amd64 or arm64")
	cmd.Flags().StringVar(&ver, "version", "", "turtles' version (v1.2.3 or git describe's)")
	cmd.Flags().StringVar(&units, "units", "deploy/systemd", "directory of the systemd units")
	cmd.Flags().StringVar(&config, "config", "deploy/systemd/turtles.yaml", "default configuration, installed as /etc/turtles/turtles.yaml")
	cmd.Flags().StringVar(&maintainer, "maintainer", "", `the package's Maintainer, "Name <email>"`)
	cmd.Flags().StringVar(&out, "out", "bin", "directory the .deb is written to")
	cmd.MarkFlagRequired("version")
	cmd.MarkFlagRequired("maintainer")
	return cmd
}

func releaseCmd() *cobra.Command {
	var (
		rf                           rootfsFlags
		tag, repo, signers, key, out string
		noImage                      bool
	)
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Make a release from a signed tag: binaries, SBOMs, .debs, image, notes, signed SHA256SUMS",
		Long: `release verifies the tag's signature first (SSH keys of --allowed-signers,
or OpenPGP keys of your gpg keyring) and refuses a tag that is unsigned or
signed by another key. It then builds, from exactly the tagged tree, the
binaries for each --arches, their CycloneDX SBOMs, the .deb packages, the
container image (an OCI archive, for --arch), release notes from the
commits since the previous tag, SHA256SUMS and SHA256SUMS.sig (ssh-keygen
-Y sign with --key). Times come from the tag (SOURCE_DATE_EPOCH), so that
the same tag gives the same bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := logger()
			arches, _ := cmd.Flags().GetStringSlice("arches")
			c := release.Config{Repo: repo, Tag: tag, AllowedSigners: signers, SigningKey: key, Out: out,
				Arches: arches, ImageArch: rf.arch, Log: log}
			// The tag is checked before the base layer may be built:
			// an unsigned tag costs nothing.
			if _, err := release.VerifyTag(cmd.Context(), repo, tag, signers); err != nil {
				return err
			}
			if !noImage {
				layer, err := rf.layer(cmd.Context(), log)
				if err != nil {
					return err
				}
				c.Rootfs = layer
			}
			r, err := release.Release(cmd.Context(), c)
			if err != nil {
				return err
			}
			for _, f := range r.Files {
				fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(out, f))
			}
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&tag, "tag", "", "the signed tag to release")
	cmd.Flags().StringVar(&repo, "repo", ".", "the git repository")
	cmd.Flags().StringVar(&signers, "allowed-signers", defaultAllowedSigners, "SSH keys trusted to sign tags (ssh-keygen ALLOWED SIGNERS format)")
	cmd.Flags().StringVar(&key, "key", "", "SSH private key that signs SHA256SUMS (Ed25519)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the release to (default dist/TAG)")
	cmd.Flags().StringSlice("arches", []string{"amd64", "arm64"}, "architectures of the binaries and packages")
	cmd.Flags().BoolVar(&noImage, "no-image", false, "make no container image (no root or Debian mirror needed)")
	cmd.MarkFlagRequired("tag")
	cmd.MarkFlagRequired("key")
	cmd.PreRun = func(cmd *cobra.Command, args []string) {
		if out == "" {
			out = filepath.Join("dist", tag)
		}
	}
	return cmd
}

func verifyCmd() *cobra.Command {
	var signers string
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Verify a release directory: SHA256SUMS.sig, then every checksum",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			who, err := release.Verify(cmd.Context(), args[0], signers)
			if err != nil {
				return err
			}
			names, _ := release.VerifySums(args[0])
			fmt.Fprintf(cmd.OutOrStdout(), "%s: signed by %s, %d files verified: %s\n", args[0], who, len(names), strings.Join(names, " "))
			return nil
		},
	}
	cmd.Flags().StringVar(&signers, "allowed-signers", defaultAllowedSigners, "SSH keys trusted to sign releases")
	return cmd
}
