// Package release makes a turtles release from a signed tag: it verifies
// the tag's signature, builds the binaries for linux/amd64 and
// linux/arm64 reproducibly from exactly the tagged tree, and writes beside
// them their SBOMs (CycloneDX), the .deb packages, the container image (an
// OCI archive), release notes from the commits since the previous tag,
// SHA256SUMS and its SSH signature. Built twice from the same tag, with
// the same toolchain and base layer, a release is the same bytes.
//
// Its subpackages build the image (ociimage) and the package (deb). Only
// cmd/release and tests import them.
package release

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/turtles-ci/turtles/release/deb"
	"github.com/turtles-ci/turtles/release/ociimage"
)

// Config says what to release and where.
type Config struct {
	// Repo is the git repository holding Tag. Required.
	Repo string
	Tag  string
	// AllowedSigners are the SSH keys trusted to sign tags (VerifyTag).
	// Required.
	AllowedSigners string
	// SigningKey is the SSH private key SHA256SUMS is signed with (use an
	// Ed25519 key: its signatures are deterministic). Required.
	SigningKey string
	// Out is the directory the release is written to; it must not exist
	// or be empty. Required.
	Out string
	// Arches are the GOARCHes of the binaries and packages.
	Arches []string
	// Rootfs is the base layer of the container image (for ImageArch),
	// from ociimage.CachedRootfs; "" makes no image.
	Rootfs    string
	ImageArch string
	Log       *slog.Logger
}

// Result lists what Release wrote, relative to Config.Out.
type Result struct {
	Tag   Tag
	Files []string
}

// Release verifies the tag and builds the release. An unsigned tag, or one
// signed by a key not in AllowedSigners, is refused (ErrUnsigned) before
// anything is built.
func Release(ctx context.Context, c Config) (Result, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Repo == "" || c.Tag == "" || c.Out == "":
		return Result{}, errors.New("release: Repo, Tag and Out are required")
	case c.SigningKey == "":
		return Result{}, errors.New("release: no SigningKey to sign SHA256SUMS with")
	case len(c.Arches) == 0:
		return Result{}, errors.New("release: no Arches")
	}
	t, err := VerifyTag(ctx, c.Repo, c.Tag, c.AllowedSigners)
	if err != nil {
		return Result{}, err
	}
	c.Log.Info("tag verified", "tag", t.Name, "commit", t.Commit, "time", t.Time, "previous", t.Previous)
	if entries, err := os.ReadDir(c.Out); err == nil && len(entries) > 0 {
		return Result{}, fmt.Errorf("release: %s is not empty", c.Out)
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return Result{}, err
	}
	work, err := os.MkdirTemp("", "turtles-release-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	if err := Export(ctx, c.Repo, t.Commit, src); err != nil {
		return Result{}, err
	}
	r := Result{Tag: t}
	add := func(path string) { r.Files = append(r.Files, filepath.Base(path)) }
	binaries := map[string]string{}
	for _, arch := range c.Arches {
		bin := filepath.Join(c.Out, fmt.Sprintf("turtles-%s-linux-%s", t.Name, arch))
		c.Log.Info("building the binary", "arch", arch, "out", bin)
		if err := BuildBinary(ctx, src, arch, t.Name, t.Commit, bin); err != nil {
			return Result{}, err
		}
		binaries[arch] = bin
		add(bin)
		sbom, err := SBOM(bin, t.Name, t.Time)
		if err != nil {
			return Result{}, err
		}
		if err := os.WriteFile(bin+".cdx.json", sbom, 0o644); err != nil {
			return Result{}, err
		}
		add(bin + ".cdx.json")
		units, err := filepath.Glob(filepath.Join(src, "deploy/systemd/*.service"))
		if err != nil || len(units) == 0 {
			return Result{}, fmt.Errorf("release: no systemd units in deploy/systemd of %s", t.Name)
		}
		c.Log.Info("building the Debian package", "arch", arch)
		pkg, err := deb.Build(ctx, deb.Options{Binary: bin, Arch: arch, Version: t.Name, Units: units,
			Config: filepath.Join(src, "deploy/systemd/turtles.yaml"), Depends: ociimage.Packages,
			Maintainer: t.Tagger, Time: t.Time, Out: c.Out})
		if err != nil {
			return Result{}, err
		}
		add(pkg)
	}
	if c.Rootfs != "" {
		img, err := writeImage(c, t, binaries[c.ImageArch], work)
		if err != nil {
			return Result{}, err
		}
		add(img)
	} else {
		c.Log.Warn("no base layer: the release has no container image")
	}
	notes, err := Notes(ctx, c.Repo, t)
	if err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(filepath.Join(c.Out, "RELEASE-NOTES.md"), []byte(notes), 0o644); err != nil {
		return Result{}, err
	}
	add("RELEASE-NOTES.md")
	for _, f := range r.Files {
		os.Chtimes(filepath.Join(c.Out, f), t.Time, t.Time)
	}
	if err := WriteSums(c.Out, r.Files); err != nil {
		return Result{}, err
	}
	if err := Sign(ctx, c.Out, c.SigningKey); err != nil {
		return Result{}, err
	}
	r.Files = append(r.Files, SumsFile, SigFile)
	c.Log.Info("release written", "dir", c.Out, "files", len(r.Files))
	return r, nil
}

// writeImage builds the container image of binary and writes it as an
// OCI archive into c.Out.
func writeImage(c Config, t Tag, binary, work string) (string, error) {
	if binary == "" {
		return "", fmt.Errorf("release: the image's architecture %q is not among %v", c.ImageArch, c.Arches)
	}
	c.Log.Info("building the container image", "arch", c.ImageArch, "base", c.Rootfs)
	img, err := ociimage.Build(ociimage.Options{Rootfs: c.Rootfs, Binary: binary, Arch: c.ImageArch, Created: t.Time,
		Version: t.Name, Revision: t.Commit})
	if err != nil {
		return "", err
	}
	layout := filepath.Join(work, "image")
	if err := ociimage.WriteLayout(layout, img, t.Name); err != nil {
		return "", err
	}
	out := filepath.Join(c.Out, fmt.Sprintf("turtles-%s-image-%s.oci.tar", t.Name, c.ImageArch))
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := ociimage.WriteLayoutTar(f, layout, t.Time); err != nil {
		f.Close()
		return "", err
	}
	return out, f.Close()
}
