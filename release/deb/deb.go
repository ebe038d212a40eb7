// Package deb builds the Debian package of turtles with dpkg-deb: the
// binary, the systemd units of deploy/systemd, a default configuration
// (a conffile), and maintainer scripts that create the turtles system user
// and put it in the kvm group. The same inputs and time give the same
// bytes (files and archive members carry that time, owners are root).
//
// Only the release tooling (cmd/release) and tests import it.
package deb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Name is the package's name; the user it creates has the same name.
const Name = "turtles"

// Paths of what the package installs.
const (
	BinaryPath = "/usr/bin/turtles"
	UnitDir    = "/lib/systemd/system"
	ConfigPath = "/etc/turtles/turtles.yaml"
	DataDir    = "/var/lib/turtles"
)

// Options say what goes into the package.
type Options struct {
	// Binary is turtles built for Arch. Required.
	Binary string
	// Arch is the GOARCH; the Debian architecture is the same name for
	// amd64 and arm64. Required.
	Arch string
	// Version is turtles' version (v1.2.3, or git describe's output); the
	// package's version is derived from it (Version). Required.
	Version string
	// Units are the systemd unit files to install. Required.
	Units []string
	// Config is the default configuration file, installed as a conffile
	// at ConfigPath. Required.
	Config string
	// Depends are the Debian packages turtles runs programs from.
	Depends []string
	// Maintainer is the control file's Maintainer. Required.
	Maintainer string
	// Time is every file's and member's time: SOURCE_DATE_EPOCH for a
	// release. Required.
	Time time.Time
	// Out is the directory the .deb is written to. Required.
	Out string
}

// debianArch maps GOARCH to Debian's architecture names.
var debianArch = map[string]string{"amd64": "amd64", "arm64": "arm64"}

// Build writes NAME_VERSION_ARCH.deb into Out and returns its path.
func Build(ctx context.Context, o Options) (string, error) {
	switch {
	case o.Binary == "" || o.Config == "" || len(o.Units) == 0:
		return "", errors.New("deb: Binary, Config and Units are required")
	case debianArch[o.Arch] == "":
		return "", fmt.Errorf("deb: architecture %q, want amd64 or arm64", o.Arch)
	case o.Maintainer == "" || o.Time.IsZero() || o.Out == "":
		return "", errors.New("deb: Maintainer, Time and Out are required")
	}
	version, err := Version(o.Version)
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return "", fmt.Errorf("deb: dpkg-deb is missing (Debian's dpkg package): %w", err)
	}
	stage, err := os.MkdirTemp("", "turtles-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)

	files := []struct {
		src, dst string
		mode     fs.FileMode
	}{{o.Binary, BinaryPath, 0o755}, {o.Config, ConfigPath, 0o644}}
	for _, u := range o.Units {
		files = append(files, struct {
			src, dst string
			mode     fs.FileMode
		}{u, filepath.Join(UnitDir, filepath.Base(u)), 0o644})
	}
	for _, f := range files {
		if err := copyFile(f.src, filepath.Join(stage, f.dst), f.mode); err != nil {
			return "", fmt.Errorf("deb: %w", err)
		}
	}
	size, err := installedSize(stage)
	if err != nil {
		return "", err
	}
	control := map[string]string{
		"DEBIAN/control":   controlFile(o, version, size),
		"DEBIAN/conffiles": ConfigPath + "\n",
		"DEBIAN/postinst":  postinst,
		"DEBIAN/prerm":     prerm,
		"DEBIAN/postrm":    postrm,
	}
	for name, body := range control {
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(name, "DEBIAN/p") {
			mode = 0o755
		}
		if err := writeFile(filepath.Join(stage, name), body, mode); err != nil {
			return "", err
		}
	}
	if err := stamp(stage, o.Time); err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(o.Out, fmt.Sprintf("%s_%s_%s.deb", Name, version, debianArch[o.Arch]))
	// gzip, not xz: as reproducible (xz is too, with one thread), and
	// seconds instead of minutes for a 30 MB binary on a busy machine.
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z9", "--build", stage, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(o.Time.Unix(), 10))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb --build: %w\n%s", err, b)
	}
	return out, nil
}

// bareCommit is git describe --always's output in a repository without
// tags: an abbreviated commit, which may start with a digit.
var bareCommit = regexp.MustCompile(`^[0-9a-f]{7,40}(-dirty)?$`)

// versionRe is what Debian accepts as an upstream version without epoch
// or revision: a digit first.
var versionRe = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// Version turns turtles' version into the package's: v1.2.3 is 1.2.3;
// git describe's v1.2.3-4-gabcdef is 1.2.3+4.gabcdef (after 1.2.3); a
// bare commit abcdef (no tag yet) is 0~abcdef (before any release); -dirty
// becomes +dirty.
func Version(v string) (string, error) {
	s := strings.TrimPrefix(v, "v")
	if s == "" {
		return "", errors.New("deb: no version")
	}
	if s[0] < '0' || s[0] > '9' || bareCommit.MatchString(s) {
		s = "0~" + s
	}
	s = strings.ReplaceAll(s, "-", "+")
	if i := strings.Index(s, "+"); i >= 0 {
		s = s[:i+1] + strings.ReplaceAll(s[i+1:], "+", ".")
	}
	if !versionRe.MatchString(s) {
		return "", fmt.Errorf("deb: version %q makes no Debian version (%q)", v, s)
	}
	return s, nil
}

func controlFile(o Options, version string, sizeKiB int64) string {
	return fmt.Sprintf(`Package: %s
Version: %s
Architecture: %s
Maintainer: %s
Installed-Size: %d
Depends: %s
Section: devel
Priority: optional
Homepage: https://github.com/turtles-ci/turtles
Description: continuous integration that tests software on real operating systems
 turtles receives forge webhooks, queues a task per test context, runs each
 task on a bot in a fresh checkout (in a QEMU VM when it asks for one, in a
 bubblewrap sandbox otherwise), streams its log and reports commit statuses.
 .
 This package installs the turtles binary, systemd units for turtles serve
 (everything in one process), hook, reporter and bot@POOL, a default
 configuration in /etc/turtles, and the system user turtles (in group kvm).
 No unit is enabled: systemctl enable --now turtles-serve.
`, Name, version, debianArch[o.Arch], o.Maintainer, sizeKiB, strings.Join(append([]string{"adduser"}, o.Depends...), ", "))
}

// postinst creates the user (adduser is idempotent only with the checks
// around it) and its data directory, and lets it open /dev/kvm. Units are
// not enabled: turtles serve needs its forge settings first.
const postinst = `#!/bin/sh
set -e
if [ "$1" = configure ]; then
	if ! getent passwd turtles >/dev/null; then
		adduser --system --group --home /var/lib/turtles --no-create-home --gecos "turtles CI" turtles >/dev/null
	fi
	# /dev/kvm belongs to group kvm (udev); without it QEMU falls back to TCG.
	if getent group kvm >/dev/null; then
		adduser turtles kvm >/dev/null
	fi
	install -d -o turtles -g turtles -m 0750 /var/lib/turtles
	chown root:turtles /etc/turtles
	chmod 0750 /etc/turtles
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
exit 0
`

// prerm stops what runs before its binary goes away.
const prerm = `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop turtles-serve.service turtles-hook.service turtles-reporter.service 'turtles-bot@*.service' >/dev/null 2>&1 || true
fi
exit 0
`

// postrm forgets the units. The user and /var/lib/turtles (queue, history,
// logs) stay, even on purge: they may be all that is left of past runs.
const postrm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
exit 0
`

func copyFile(src, dst string, mode fs.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFile(dst, string(b), mode)
}

func writeFile(path, body string, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode) // not the umask's
}

// installedSize is the control file's Installed-Size: KiB, rounded up per
// file as dpkg-gencontrol does.
func installedSize(root string) (int64, error) {
	var kib int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		kib += (info.Size() + 1023) / 1024
		return nil
	})
	return kib, err
}

// stamp sets every file's and directory's time to t, and directories'
// modes to 0755, whatever the umask made them.
func stamp(root string, t time.Time) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := os.Chmod(path, 0o755); err != nil {
				return err
			}
		}
		return os.Chtimes(path, t, t)
	})
}
