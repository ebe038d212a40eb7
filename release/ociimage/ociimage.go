// Package ociimage builds the turtles container image without a container
// engine: a Debian root filesystem made with debootstrap (the base layer,
// built once and cached, see CachedRootfs), the turtles binary as a layer
// of its own, and a config that runs it as the non-root account turtles.
// The image is written as an OCI image layout and can be pushed to a
// registry. Two builds from the same base layer, binary and time give the
// same bytes.
//
// The Dockerfile at the repository's root builds the same image with
// docker or podman; its package list is checked against Packages.
//
// Only the release tooling (cmd/release) and tests import it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options say what goes into the image.
type Options struct {
	// Rootfs is the base layer, a gzipped tar (CachedRootfs). Required.
	Rootfs string
	// Binary is the turtles binary for Arch. Required.
	Binary string
	// Arch is the GOARCH of the binary and the root filesystem. Required.
	Arch string
	// Created is the image's creation time and the binary's modification
	// time: SOURCE_DATE_EPOCH for a release. Required.
	Created time.Time
	// Version and Revision label the image (org.opencontainers.image.*).
	Version, Revision string
}

// Build assembles the image: base layer, binary layer, config.
func Build(o Options) (v1.Image, error) {
	switch {
	case o.Rootfs == "" || o.Binary == "":
		return nil, errors.New("image: Rootfs and Binary are required")
	case o.Arch == "":
		return nil, errors.New("image: no Arch")
	case o.Created.IsZero():
		return nil, errors.New("image: no Created time")
	}
	created := v1.Time{Time: o.Created.UTC().Truncate(time.Second)}
	base, err := tarball.LayerFromFile(o.Rootfs, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: base layer %s: %w", o.Rootfs, err)
	}
	binLayer, err := binaryLayer(o.Binary, created.Time)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "debootstrap --variant=minbase --include=" + strings.Join(Packages, ",") + " " + Suite,
			Comment: "Debian " + Suite + " with what a bot runs, and the account " + User}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "COPY turtles " + Binary}},
	)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", created
	cf.Config = v1.Config{
		User:       strconv.Itoa(UID) + ":" + strconv.Itoa(GID),
		Entrypoint: []string{Binary},
		Cmd:        []string{"--help"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + Home},
		WorkingDir: Home,
		Labels:     labels(o),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

func labels(o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "turtles",
		"org.opencontainers.image.description": "turtles CI: hook, reporter, bots and image peers in one binary",
		"org.opencontainers.image.source":      "https://github.com/turtles-ci/turtles",
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
	if o.Version != "" {
		l["org.opencontainers.image.version"] = o.Version
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

// binaryLayer is a layer holding only the binary at Binary, owned by root
// and not writable by the account that runs it.
func binaryLayer(path string, mtime time.Time) (v1.Layer, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(Binary, "/"), Mode: 0o755, Size: int64(len(bin)),
		ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// WriteLayout writes img as the only image of a new OCI image layout in
// dir, named ref (annotation org.opencontainers.image.ref.name), which
// `skopeo copy oci:DIR:REF` and `podman load` read.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return fmt.Errorf("image layout %s: %w", dir, err)
	}
	return nil
}

// ReadLayout returns the only image of the OCI image layout in dir.
func ReadLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("image layout %s: %d images, want 1", dir, len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

// Unpack writes the image's file system, its layers applied in order
// (whiteouts honoured), into dst as root would see it: owners kept,
// devices skipped. Tests run the image's programs there with chroot.
func Unpack(ctx context.Context, img v1.Image, dst string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	return extract(ctx, rc, dst)
}
