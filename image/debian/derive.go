package debian

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/turtles-ci/turtles/image"
)

// derive makes the image with the extra packages from o.Base, a built
// image of the same recipe: a raw copy of its disk, loop-mounted, the
// packages installed with apt in a chroot, unused blocks discarded,
// unmounted and converted to qcow2. That is seconds of copying plus apt's
// own work, where bootstrap would spend debootstrap's minutes again; and
// the image is the base as machines boot it, plus the packages.
func derive(ctx context.Context, o Options, suite string, extra []string, work string) (built, error) {
	base, err := image.Load(o.Base)
	if err != nil {
		return built{}, err
	}
	if base.Builder != "image/debian" || base.BuilderVersion != Version || base.Name != o.Recipe || len(base.Packages) > 0 {
		return built{}, fmt.Errorf("derive from %s: not an image of recipe %s version %d built by image/debian (it is %q by %q version %d)",
			o.Base, o.Recipe, Version, base.Name, base.Builder, base.BuilderVersion)
	}
	if len(extra) == 0 && o.Overlay == "" && o.Setup == "" {
		return built{}, errors.New("derive: nothing to add: no packages, overlay or setup")
	}
	raw := filepath.Join(work, "root.img")
	if err := run(ctx, o.Output, "qemu-img", "convert", "-O", "raw", base.Disk, raw); err != nil {
		return built{}, err
	}
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return built{}, err
	}
	if err := run(ctx, o.Output, "mount", "-o", "loop", raw, root); err != nil {
		return built{}, fmt.Errorf("derive: loop mount the copy of the base disk: %w", err)
	}
	b, err := func() (built, error) {
		o.Log.Info("install extra packages", "packages", extra, "base", base.SHA256)
		// The mirror the caller names, as a build from scratch would
		// have it: debootstrap writes this line.
		sources := fmt.Sprintf("deb %s %s main\n", o.Mirror, suite)
		if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
			return built{}, err
		}
		if len(extra) > 0 {
			restore, err := hostResolver(root)
			if err != nil {
				return built{}, err
			}
			err = install(ctx, o.Output, root, extra)
			if rerr := restore(); err == nil {
				err = rerr
			}
			if err != nil {
				return built{}, err
			}
			if err := tidy(ctx, o.Output, root); err != nil {
				return built{}, err
			}
		}
		if err := customize(ctx, o, root); err != nil {
			return built{}, err
		}
		// Package scripts may have made a new initrd.
		kernel, initrd, err := bootFiles(root)
		if err != nil {
			return built{}, err
		}
		// Blocks of deleted files (apt's downloads) would otherwise
		// be copied into the qcow2; fstrim punches them out of the
		// raw file. An optimisation: without it the image is larger.
		if err := run(ctx, o.Output, "fstrim", root); err != nil {
			o.Log.Warn("derive: fstrim failed; the image keeps deleted blocks", "err", err)
		}
		return built{kernel: kernel, initrd: initrd, base: base.SHA256}, nil
	}()
	// Unmount even when ctx is cancelled: a mount left behind would
	// outlive the build.
	if uerr := run(context.WithoutCancel(ctx), o.Output, "umount", root); uerr != nil {
		return built{}, errors.Join(err, fmt.Errorf("derive: unmount %s: %w", root, uerr))
	}
	if err != nil {
		return built{}, err
	}
	b.qcow = filepath.Join(work, "disk.qcow2")
	if err := run(ctx, o.Output, "qemu-img", "convert", "-O", "qcow2", raw, b.qcow); err != nil {
		return built{}, err
	}
	return b, nil
}

// hostResolver puts the host's resolv.conf into root for apt's downloads
// and returns how to put the image's back.
func hostResolver(root string) (restore func() error, err error) {
	p := filepath.Join(root, "etc/resolv.conf")
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("derive: the host's resolver: %w", err)
	}
	saved := p + ".turtles-saved"
	had := true
	if err := os.Rename(p, saved); errors.Is(err, os.ErrNotExist) {
		had = false
	} else if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, host, 0o644); err != nil {
		return nil, err
	}
	return func() error {
		if err := os.Remove(p); err != nil {
			return err
		}
		if had {
			return os.Rename(saved, p)
		}
		return nil
	}, nil
}

// customize copies o.Overlay onto root and runs o.Setup in a chroot of it.
func customize(ctx context.Context, o Options, root string) error {
	if o.Overlay != "" {
		o.Log.Info("copy overlay into the image", "overlay", o.Overlay)
		// cp -a keeps modes and links; --no-preserve=ownership makes
		// everything root's, whoever built the overlay. Entry by
		// entry: copying the overlay's "." would give / its mode (a
		// temporary directory's 0700 locks every service out).
		entries, err := os.ReadDir(o.Overlay)
		if err != nil {
			return fmt.Errorf("derive: overlay: %w", err)
		}
		for _, e := range entries {
			if err := run(ctx, o.Output, "cp", "-a", "--no-preserve=ownership", filepath.Join(o.Overlay, e.Name()), root+"/"); err != nil {
				return fmt.Errorf("derive: copy overlay: %w", err)
			}
		}
	}
	if o.Setup != "" {
		o.Log.Info("run setup in the image")
		policy := filepath.Join(root, "usr/sbin/policy-rc.d")
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return err
		}
		defer os.Remove(policy)
		if err := run(ctx, o.Output, "chroot", root, "/bin/sh", "-euc", o.Setup); err != nil {
			return fmt.Errorf("derive: setup: %w", err)
		}
	}
	return nil
}
