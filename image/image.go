// Package image describes bootable OS images on the bot's disk: a disk file
// that is never written (machines boot from overlays on it), and, for
// images built for direct kernel boot, the kernel, initrd and command line
// beside it. A manifest (JSON) ties these files together; images are named
// by the sha256 of their disk.
//
// The vm package boots what a Manifest describes; image/debian builds one;
// cmd/turtles and the bot resolve the names a .turtles.yaml uses. Anyone
// may import it.
package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Manifest describes one built image. Paths are relative to the manifest's
// directory when written, absolute after Load.
type Manifest struct {
	// Name is the recipe, e.g. "debian-12"; the file names add the sha256.
	Name string `json:"name"`
	// Packages are the extra packages of a derived image (image/debian),
	// sorted; empty for a recipe's own image.
	Packages []string `json:"packages,omitempty"`
	// Base is the sha256 of the disk a derived image was made from.
	Base string `json:"base,omitempty"`
	// Builder and BuilderVersion say which recipe made it.
	Builder        string `json:"builder,omitempty"`
	BuilderVersion int    `json:"builder_version,omitempty"`
	// Disk is the qcow2 (or raw) base disk; SHA256 is its content hash.
	Disk   string `json:"disk"`
	SHA256 string `json:"sha256,omitempty"`
	// Kernel, Initrd and Append are set for direct kernel boot; empty
	// means the disk boots itself (a cloud image with a bootloader).
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"`
	// KernelSHA256 and InitrdSHA256 are set in pinned manifests (see
	// image/cache), whose own sha256 then names every byte of the image.
	KernelSHA256 string `json:"kernel_sha256,omitempty"`
	InitrdSHA256 string `json:"initrd_sha256,omitempty"`
	// Size, KernelSize and InitrdSize are the files' sizes in bytes, set
	// in pinned manifests: a fetch reads no byte past them, whoever
	// serves the file. Pins made before sizes were recorded lack them.
	Size       int64 `json:"size,omitempty"`
	KernelSize int64 `json:"kernel_size,omitempty"`
	InitrdSize int64 `json:"initrd_size,omitempty"`
	// User is the account the per-run SSH key is installed for.
	User string `json:"user,omitempty"`
	// GuestAgent: the image runs qemu-guest-agent on the virtio-serial
	// port org.qemu.guest_agent.0, which warm starts need (vm.Warm).
	GuestAgent bool      `json:"guest_agent,omitempty"`
	Built      time.Time `json:"built,omitzero"`
}

// DefaultUser is the SSH user when a manifest names none: the seed asks
// cloud-init to authorize the key for root too, and image/debian does.
const DefaultUser = "root"

// Load reads a manifest and makes its paths absolute.
func Load(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image manifest %s: %w", path, err)
	}
	if m.Disk == "" {
		return nil, fmt.Errorf("image manifest %s: no disk", path)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&m.Disk, &m.Kernel, &m.Initrd} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if m.User == "" {
		m.User = DefaultUser
	}
	return &m, nil
}

// Write stores m as JSON at path, atomically. Paths in m should be
// relative to path's directory so that the directory can be moved.
func Write(path string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write image manifest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write image manifest: %w", err)
	}
	return nil
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidName reports whether s may name an image in an images directory.
func ValidName(s string) bool { return nameRe.MatchString(s) && !strings.Contains(s, "..") }

// ErrNotFound is returned by Resolve when nothing matches the reference.
var ErrNotFound = errors.New("image not found")

// Resolve finds the image a reference names:
//   - a path (containing "/") to a manifest (.json) is loaded;
//   - a path to any other file is a disk that boots itself (a cloud image);
//   - a name N is dir/N.json (image build writes it beside the
//     content-addressed files, pointing at the newest build).
func Resolve(ref, dir string) (*Manifest, error) {
	if strings.Contains(ref, "/") {
		if strings.HasSuffix(ref, ".json") {
			return Load(ref)
		}
		abs, err := filepath.Abs(ref)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, ErrNotFound)
		}
		return &Manifest{Name: filepath.Base(ref), Disk: abs, User: DefaultUser}, nil
	}
	if !ValidName(ref) {
		return nil, fmt.Errorf("bad image name %q", ref)
	}
	p := filepath.Join(dir, ref+".json")
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("image %q in %s (build it with `turtles image build`): %w", ref, dir, ErrNotFound)
	}
	return Load(p)
}

// HashFile returns the hex sha256 of the file at path: how image files
// are named and pinned.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
