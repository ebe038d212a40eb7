package ociimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RootfsVersion is the version of the root filesystem recipe: bump it
// whenever Packages or configure change, so that cached root filesystems
// (CachedRootfs) are rebuilt.
const RootfsVersion = 1

// Suite is the Debian release of the image; the Dockerfile's runtime stage
// uses the same one (debian:bookworm-slim).
const Suite = "bookworm"

// Packages are installed on top of debootstrap's minbase: what a bot runs.
// qemu-system-x86 and qemu-utils: test VMs (KVM when the container gets
// /dev/kvm, TCG otherwise). git and openssh-client: checkouts over
// https:// and ssh://. ca-certificates: forges, S3 and image mirrors over
// TLS. bubblewrap: the sandbox of commands a bot runs itself
// (docs/trust.md). The Dockerfile installs the same list: a test compares
// them.
var Packages = []string{"bubblewrap", "ca-certificates", "git", "openssh-client", "qemu-system-x86", "qemu-utils"}

// The account turtles runs as in the image: numeric, so that Kubernetes'
// runAsNonRoot can check it without reading the image's /etc/passwd.
const (
	User = "turtles"
	UID  = 10001
	GID  = 10001
	// Home is the account's home and turtles' data directory.
	Home = "/var/lib/turtles"
	// Binary is where the binary layer puts turtles.
	Binary = "/usr/local/bin/turtles"
)

// RootfsOptions configure BuildRootfs.
type RootfsOptions struct {
	// Mirror is the Debian mirror debootstrap installs from. Required.
	Mirror string
	// Arch is the Debian architecture (amd64). Required.
	Arch string
	// Output receives debootstrap's progress; nil discards it.
	Output io.Writer
	Log    *slog.Logger
}

func (o *RootfsOptions) check() error {
	switch {
	case o.Mirror == "":
		return errors.New("root filesystem: no Mirror to install from")
	case o.Arch == "":
		return errors.New("root filesystem: no Arch")
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// BuildRootfs installs Debian with Packages and the turtles account into a
// temporary directory and writes it to layer as a gzipped tar, the image's
// base layer, with the list of installed packages ("name version arch"
// lines) beside it in layer+".packages". It needs root (debootstrap) and
// the mirror.
func BuildRootfs(ctx context.Context, o RootfsOptions, layer string) error {
	if err := o.check(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("building the image's root filesystem needs root (debootstrap)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("debootstrap is missing (run scripts/deps.sh): %w", err)
	}
	work, err := os.MkdirTemp(filepath.Dir(layer), ".rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	start := time.Now()
	o.Log.Info("debootstrap: installing Debian with the bot's packages (a few minutes, once per recipe version)",
		"suite", Suite, "arch", o.Arch, "packages", strings.Join(Packages, ","), "mirror", o.Mirror)
	if err := run(ctx, o.Output, "debootstrap", "--variant=minbase", "--arch="+o.Arch,
		"--include="+strings.Join(Packages, ","), Suite, root, o.Mirror); err != nil {
		return err
	}
	o.Log.Info("configuring the root filesystem: the turtles account, no caches or logs")
	if err := configure(ctx, o.Output, root); err != nil {
		return err
	}
	pkgs, err := output(ctx, "chroot", root, "dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\n")
	if err != nil {
		return err
	}
	o.Log.Info("writing the base layer", "layer", layer)
	tmp := layer + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := WriteTarGz(f, root, start); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", layer, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(layer+".packages", []byte(pkgs), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, layer); err != nil {
		return err
	}
	o.Log.Info("root filesystem built", "took", time.Since(start).Round(time.Second))
	return nil
}

// configure adds the turtles account (in the kvm group, which udev's
// package creates) and removes what would differ between two builds of
// the same packages or has no use in a container: apt's lists and
// caches, logs, the machine ID.
func configure(ctx context.Context, out io.Writer, root string) error {
	if m := mountsUnder(root); len(m) > 0 {
		return fmt.Errorf("debootstrap left file systems mounted under the root: %s", strings.Join(m, ", "))
	}
	uid, gid := strconv.Itoa(UID), strconv.Itoa(GID)
	steps := [][]string{
		{"groupadd", "--gid", gid, User},
		{"useradd", "--uid", uid, "--gid", gid, "--home-dir", Home, "--no-create-home", "--shell", "/usr/sbin/nologin",
			"--comment", "turtles CI", User},
		{"sh", "-c", "if getent group kvm >/dev/null; then usermod --append --groups kvm " + User + "; fi"},
		{"install", "-d", "-o", uid, "-g", gid, "-m", "0750", Home},
		{"apt-get", "clean"},
	}
	for _, args := range steps {
		if err := run(ctx, out, "chroot", append([]string{root}, args...)...); err != nil {
			return err
		}
	}
	for _, glob := range []string{
		"var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
		"var/cache/ldconfig/aux-cache", "var/log/*", "var/log/apt/*", "etc/*-", "etc/ssh/ssh_host_*", "tmp/*", "root/.*_history",
		"dev/*", "proc/*", "sys/*", "run/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			if st, err := os.Lstat(m); err == nil && st.IsDir() && (strings.HasPrefix(glob, "var/log/") || glob == "var/lib/apt/lists/*") {
				continue // keep the directories apt and services expect
			}
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("clean root filesystem: %w", err)
			}
		}
	}
	// An empty machine ID: systemd-less containers keep it so, a booted
	// system makes its own.
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(root, "var/lib/apt/lists/partial"), 0o755)
}

// CachedRootfs returns the base layer for arch in
// dir/container-rootfs-SUITE-ARCH-vVERSION/rootfs.tar.gz, building it
// first if absent. A file lock makes parallel callers (make image and a
// test) build it once.
func CachedRootfs(ctx context.Context, dir string, o RootfsOptions) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	d := filepath.Join(dir, fmt.Sprintf("container-rootfs-%s-%s-v%d", Suite, o.Arch, RootfsVersion))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(d, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock root filesystem cache: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	layer := filepath.Join(d, "rootfs.tar.gz")
	if _, err := os.Stat(layer); err == nil {
		o.Log.Info("base layer: cached", "layer", layer)
		return layer, nil
	}
	o.Log.Info("base layer: not cached, building it", "layer", layer)
	if err := BuildRootfs(ctx, o, layer); err != nil {
		return "", err
	}
	return layer, nil
}

// InstalledPackages reads the package list BuildRootfs wrote beside layer:
// package name to "version arch".
func InstalledPackages(layer string) (map[string]string, error) {
	b, err := os.ReadFile(layer + ".packages")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok {
			out[name] = rest
		}
	}
	return out, nil
}

func run(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// mountsUnder lists the mount points at or below dir (/proc/self/mounts),
// which the clean-up must not descend into.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			out = append(out, f[1])
		}
	}
	return out
}
