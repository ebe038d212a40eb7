// Package debian builds a bootable Debian image with debootstrap, without
// root loop mounts: debootstrap into a directory, mkfs.ext4 -d into a raw
// file, qemu-img convert to qcow2. The kernel and initrd are kept beside
// the disk for direct kernel boot (no bootloader: faster to build and to
// boot under TCG). A small first-boot unit installs the per-run SSH key
// from the machine's seed disk (see InstallKeysScript), the same seed
// that cloud-init reads in standard cloud images.
//
// A derived image is a recipe's image with extra Debian packages
// (Options.Packages), named by Name ("debian-12_etcd-server"). It is made
// from a built image of the recipe (Options.Base): a copy of its disk,
// loop-mounted (the one loop mount: copying the tree out of an ext4 disk
// without one loses setuid bits and file capabilities), the packages
// installed with apt-get in a chroot; without a Base, the recipe's image
// is built first and is the base. Tests get
// one, built once (about 45 s beside a cached base) and then cached, with
//
//	manifest, err := debian.CachedPackages(ctx, debian.CacheDir(), "debian-12",
//		[]string{"etcd-server"}, "http://deb.debian.org/debian", out, log)
//
// and boot what image.Load(manifest) describes.
//
// cmd/turtles (`turtles image build`) and tests import it. Building needs
// root (debootstrap, chroot, and loop devices for derived images) and
// network access to a Debian mirror.
package debian

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles/image"
)

// Version is the recipe's version: bump it whenever the image it builds
// changes, so caches keyed by it (tests, bots) rebuild.
const Version = 2

// Recipes maps the names `turtles image build` accepts to Debian suites.
var Recipes = map[string]string{"debian-12": "bookworm"}

// Append is the kernel command line: root on the first virtio disk, serial
// console (captured into task logs), eth0 as the interface name.
const Append = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"

// Packages on top of debootstrap's minbase.
var Packages = []string{
	"systemd-sysv", "udev", "openssh-server", "iproute2", "linux-image-amd64",
	"procps", "less", "dbus",
	// Warm starts (vm.Warm) refresh a restored machine through it.
	"qemu-guest-agent",
}

// Options configure Build.
type Options struct {
	// Recipe is a key of Recipes.
	Recipe string
	// Packages are Debian packages installed on top of the recipe's
	// (Packages), with their dependencies but not their recommendations:
	// a derived image, named Name(Recipe, Packages). Names must pass
	// ValidPackage; order and duplicates do not matter.
	Packages []string
	// Base is the manifest of a built image of Recipe (no packages) to
	// derive the image with Packages from; empty builds that image into
	// Out first.
	Base string
	// Overlay, if set, is a directory copied onto the image's root
	// after the packages are installed, owned by root, modes kept: the
	// files of a provisioned image (a cluster node's binaries, units and
	// configuration). Only for a derived image (with Base, or built from
	// the recipe's image first).
	Overlay string
	// Setup, if set, is a shell script run in a chroot of the root after
	// Overlay (systemctl enable ...).
	Setup string
	// Name names the image instead of Name(Recipe, Packages); required
	// with Overlay or Setup, and it must say what they hold (a hash),
	// because caches are keyed by it. It must pass image.ValidName.
	Name string
	// Out is the directory the image files go to.
	Out string
	// Mirror is the Debian mirror debootstrap installs from; required.
	Mirror string
	// Output receives the tools' progress (debootstrap is chatty).
	Output io.Writer
	Log    *slog.Logger
}

// Build builds the image and returns the path of its manifest, named
// NAME-SHA256.json, and also written as NAME.json so that the name
// resolves to the newest build (image.Resolve). NAME is the recipe, or
// Name(Recipe, Packages) for a derived image. A derived image is made
// from Base (see derive); without a Base, the recipe's image is built
// into Out first and serves as the base.
func Build(ctx context.Context, o Options) (string, error) {
	suite, ok := Recipes[o.Recipe]
	if !ok {
		return "", fmt.Errorf("unknown image recipe %q (known: debian-12)", o.Recipe)
	}
	extra, err := normalize(o.Packages)
	if err != nil {
		return "", err
	}
	name := Name(o.Recipe, extra)
	custom := o.Overlay != "" || o.Setup != ""
	switch {
	case custom && o.Name == "":
		return "", errors.New("debian: an image with an Overlay or Setup needs a Name that says what they hold")
	case o.Name != "" && !image.ValidName(o.Name):
		return "", fmt.Errorf("debian: bad image name %q", o.Name)
	case o.Name != "":
		name = o.Name
	}
	if o.Mirror == "" {
		return "", errors.New("debian: no Mirror to install from")
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return "", errors.New("building a Debian image needs root (debootstrap, chroot)")
	}
	tools := []string{"debootstrap", "mkfs.ext4", "qemu-img"}
	if o.Base != "" {
		tools = []string{"qemu-img", "mount", "umount"}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s is missing (run scripts/deps.sh): %w", tool, err)
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(o.Out, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	start := time.Now()
	if (len(extra) > 0 || custom) && o.Base == "" {
		// One way to add packages, the tested one: build the
		// recipe's image first (it is in o.Out afterwards), then
		// derive from it.
		base := o
		base.Packages, base.Overlay, base.Setup, base.Name = nil, "", "", ""
		if o.Base, err = Build(ctx, base); err != nil {
			return "", err
		}
	}
	var b built
	if o.Base != "" {
		b, err = derive(ctx, o, suite, extra, work)
	} else {
		b, err = bootstrap(ctx, o, suite, work)
	}
	if err != nil {
		return "", err
	}
	manifest, err := publish(o, name, extra, b)
	if err != nil {
		return "", err
	}
	o.Log.Info("image built", "manifest", manifest, "took", time.Since(start).Round(time.Second))
	return manifest, nil
}

// built is what a build leaves in its work directory for publish.
type built struct {
	qcow, kernel, initrd string
	// base is the sha256 of the disk a derived image was made from.
	base string
}

// bootstrap builds the recipe's image from scratch: debootstrap into a
// directory, mkfs.ext4 -d into a raw file, qemu-img convert.
func bootstrap(ctx context.Context, o Options, suite string, work string) (built, error) {
	root := filepath.Join(work, "root")
	o.Log.Info("debootstrap", "suite", suite, "mirror", o.Mirror)
	if err := run(ctx, o.Output, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Packages, ","), suite, root, o.Mirror); err != nil {
		return built{}, err
	}
	if err := configure(ctx, o.Output, root); err != nil {
		return built{}, err
	}
	kernel, initrd, err := bootFiles(root)
	if err != nil {
		return built{}, err
	}
	raw := filepath.Join(work, "root.img")
	if err := run(ctx, o.Output, "truncate", "-s", "4G", raw); err != nil {
		return built{}, err
	}
	if err := run(ctx, o.Output, "mkfs.ext4", "-q", "-F", "-L", "turtles-root", "-d", root, raw); err != nil {
		return built{}, err
	}
	qcow := filepath.Join(work, "disk.qcow2")
	if err := run(ctx, o.Output, "qemu-img", "convert", "-O", "qcow2", raw, qcow); err != nil {
		return built{}, err
	}
	return built{qcow: qcow, kernel: kernel, initrd: initrd}, nil
}

// publish names the built files by the disk's sha256, moves them to
// o.Out and writes the manifest, as NAME-SHA256.json and NAME.json.
func publish(o Options, name string, extra []string, b built) (string, error) {
	sum, err := image.HashFile(b.qcow)
	if err != nil {
		return "", err
	}
	base := name + "-" + sum
	m := &image.Manifest{
		Name: name, Packages: extra, Base: b.base, Builder: "image/debian", BuilderVersion: Version,
		Disk: base + ".qcow2", SHA256: sum,
		Kernel: base + ".vmlinuz", Initrd: base + ".initrd", Append: Append,
		User: "root", GuestAgent: true, Built: time.Now().UTC().Truncate(time.Second),
	}
	for src, dst := range map[string]string{b.qcow: m.Disk, b.kernel: m.Kernel, b.initrd: m.Initrd} {
		if err := os.Rename(src, filepath.Join(o.Out, dst)); err != nil {
			return "", fmt.Errorf("move image file: %w", err)
		}
	}
	// The base disk is never written: machines boot from overlays.
	os.Chmod(filepath.Join(o.Out, m.Disk), 0o444)
	manifest := filepath.Join(o.Out, base+".json")
	if err := image.Write(manifest, m); err != nil {
		return "", err
	}
	if err := image.Write(filepath.Join(o.Out, name+".json"), m); err != nil {
		return "", err
	}
	return manifest, nil
}

// install installs the extra packages into the image's tree with apt,
// which resolves dependencies as a user's apt-get would (debootstrap's
// --include does not know virtual packages). A policy-rc.d keeps the
// packages' maintainer scripts from starting services on the host.
func install(ctx context.Context, out io.Writer, root string, pkgs []string) error {
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return fmt.Errorf("install packages: %w", err)
	}
	defer os.Remove(policy)
	if err := run(ctx, out, "chroot", root, "apt-get", "update"); err != nil {
		return fmt.Errorf("install packages: %w", err)
	}
	args := append([]string{root, "apt-get", "install", "-y", "--no-install-recommends", "--"}, pkgs...)
	if err := run(ctx, out, "chroot", args...); err != nil {
		return fmt.Errorf("install packages %s: %w", strings.Join(pkgs, ","), err)
	}
	return nil
}

// configure turns the debootstrap tree into a guest that boots on the
// serial console, gets an address by DHCP and installs the seed's key.
func configure(ctx context.Context, out io.Writer, root string) error {
	files := map[string]string{
		"etc/hostname":                     "turtles\n",
		"etc/hosts":                        "127.0.0.1 localhost\n127.0.1.1 turtles\n",
		"etc/fstab":                        "/dev/vda / ext4 rw,discard,errors=remount-ro 0 1\n",
		"etc/systemd/network/eth0.network": "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n",
		"etc/systemd/system/turtles-keys.service":       keysUnit,
		"usr/local/sbin/turtles-keys":                   InstallKeysScript,
		"etc/ssh/sshd_config.d/turtles.conf":            "PermitRootLogin prohibit-password\nUseDNS no\n",
		"etc/systemd/journald.conf.d/turtles.conf":      "[Journal]\nStorage=persistent\n",
		"etc/machine-id":                                "",
		"etc/systemd/system/ssh.service.d/turtles.conf": "[Unit]\nAfter=turtles-keys.service\nWants=turtles-keys.service\n",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "usr/local/sbin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return fmt.Errorf("configure image: %w", err)
		}
	}
	os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	for _, args := range [][]string{
		{"systemctl", "enable", "systemd-networkd", "turtles-keys.service"},
		{"systemctl", "mask", "systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer"},
		{"passwd", "-l", "root"},
	} {
		if err := run(ctx, out, "chroot", append([]string{root}, args...)...); err != nil {
			return err
		}
	}
	return tidy(ctx, out, root)
}

// tidy drops what apt downloaded: packages and package lists.
func tidy(ctx context.Context, out io.Writer, root string) error {
	if err := run(ctx, out, "chroot", root, "apt-get", "clean"); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(root, "var/lib/apt/lists")); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(root, "var/lib/apt/lists/partial"), 0o755)
}

const keysUnit = `[Unit]
Description=Install the turtles SSH key from the seed disk
DefaultDependencies=no
After=systemd-udevd.service local-fs.target
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/turtles-keys
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`

// InstallKeysScript runs at every boot of an image/debian guest: it mounts
// the seed disk (label cidata, the cloud-init NoCloud convention that
// vm.Start always attaches) and installs its authorized_keys file for
// root. Standard cloud images read the same seed's user-data instead.
const InstallKeysScript = `#!/bin/sh
# Installs the per-run SSH key from the turtles seed disk (label cidata).
set -u
dev=/dev/disk/by-label/cidata
i=0
while [ ! -e "$dev" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -e "$dev" ] || { echo "turtles-keys: no seed disk" >&2; exit 0; }
mnt=$(mktemp -d)
mount -o ro "$dev" "$mnt" || exit 1
install -d -m 700 /root/.ssh
install -m 600 "$mnt/authorized_keys" /root/.ssh/authorized_keys
umount "$mnt"; rmdir "$mnt"
echo "turtles-keys: installed authorized_keys for root"
`

// bootFiles finds the kernel and initrd that linux-image-amd64 installed.
func bootFiles(root string) (kernel, initrd string, err error) {
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	is, _ := filepath.Glob(filepath.Join(root, "boot", "initrd.img-*"))
	if len(ks) != 1 || len(is) != 1 {
		return "", "", fmt.Errorf("image has %d kernels and %d initrds in /boot, want one of each", len(ks), len(is))
	}
	// Copy, not move: the guest keeps its /boot for module matching.
	for _, p := range []*string{&ks[0], &is[0]} {
		dst := filepath.Join(filepath.Dir(root), filepath.Base(*p))
		if err := copyFile(*p, dst); err != nil {
			return "", "", err
		}
		*p = dst
	}
	return ks[0], is[0], nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func run(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
