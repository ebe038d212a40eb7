package kubernetes

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BinaryImage is a container image of one static binary, run as its
// entrypoint: the pause and DNS images of every node, built here from
// what kubebin's build made, never pulled from the internet.
type BinaryImage struct {
	// Tag names it in containerd (PauseImage).
	Tag string
	// Binary is the host file; it is /NAME in the image, NAME its base
	// name.
	Binary string
	// Args follow the entrypoint.
	Args []string
}

// Image makes the image: one layer, no timestamps, so that the same
// binary always makes the same image (and the same node image name).
func (b BinaryImage) Image() (v1.Image, error) {
	data, err := os.ReadFile(b.Binary)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", b.Tag, err)
	}
	entry := "/" + path.Base(b.Binary)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: entry[1:], Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{entry}
	cf.Config.Cmd = b.Args
	return mutate.ConfigFile(img, cf)
}

// Write writes the image as an archive `ctr images import` reads, to
// path.
func (b BinaryImage) Write(path string) error {
	tag, err := name.NewTag(b.Tag)
	if err != nil {
		return err
	}
	img, err := b.Image()
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("write image %s: %w", b.Tag, err)
	}
	return nil
}
