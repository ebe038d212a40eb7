// Package kubernetes is the kubernetes provider of package cluster: a
// Kubernetes cluster made of test VMs, one control-plane node and the
// rest workers, created and destroyed per run, as kubevirtci does for
// KubeVirt, with no container engine on the host and nothing downloaded
// at run time but Debian packages.
//
// Prepare makes (once, cached by content) a node image: Debian 12 with
// containerd, runc and the CNI plugins from Debian, the Kubernetes
// components built from k8s.io/kubernetes (BuildBinaries: one binary,
// kubebin, with etcd), and pause and DNS images built here
// (BinaryImage). Provision gives each cluster a fresh CA and its
// certificates and kubeconfigs, starts the control plane on node01 and
// a kubelet and kube-proxy on every node, routes every node's pod subnet
// over the private network, and waits until every node is Ready and
// the cluster DNS answers. docs/clusters.md tells the phases and their
// times.
package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/turtles-ci/turtles/cluster"
	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/debian"
)

// Provider is the kubernetes provider.
type Provider struct {
	// Binaries returns the binaries of the node image: BuildBinaries, or
	// OwnBinaries. Called by Prepare only.
	Binaries func(ctx context.Context, out io.Writer) (Binaries, error)
	// ImageCache is where node images are cached (debian.CacheDir()).
	ImageCache string
	// Mirror is the Debian mirror of the node image's packages.
	Mirror string
	// ReadyTimeout bounds how long Provision waits for the API server
	// and every node; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
	Log          *slog.Logger
}

// DefaultReadyTimeout is how long Provision waits for a cluster under
// TCG, where the API server alone takes a minute to start.
const DefaultReadyTimeout = 10 * time.Minute

// MinMemoryMB is the least memory of a node: the control plane's
// processes and a few pods. DefaultMemoryMB is what a node gets when
// nobody says.
const (
	MinMemoryMB     = 1536
	DefaultMemoryMB = 2048
)

// DefaultMemoryMB is the memory of a node whose size nobody gave (a bot
// asks it).
func (p *Provider) DefaultMemoryMB() int { return DefaultMemoryMB }

// Recipe is the image recipe node images are made from.
const Recipe = "debian-12"

var _ cluster.Provider = (*Provider)(nil)

// Name implements cluster.Provider.
func (p *Provider) Name() string { return "kubernetes" }

// Env implements cluster.Provider: the host's kubeconfig.
func (p *Provider) Env(c *cluster.Cluster) []string {
	if c.Dir == "" {
		return nil
	}
	return []string{"KUBECONFIG=" + KubeconfigPath(c.Dir)}
}

// KubeconfigPath is where Provision writes the kubeconfig that works from
// the host, in a cluster's directory.
func KubeconfigPath(dir string) string { return filepath.Join(dir, "kubeconfig") }

// Prepare implements cluster.Provider: it checks the sizes, forwards the
// API server's port of node01 and puts every machine on the node image,
// made first if it is not cached.
func (p *Provider) Prepare(ctx context.Context, machines []cluster.Machine, out io.Writer) ([]cluster.Machine, error) {
	for i, m := range machines {
		if m.MemoryMB < MinMemoryMB {
			return nil, fmt.Errorf("kubernetes: %s has %d MiB of memory; a Kubernetes node needs at least %d (--memory 2048)",
				cluster.Alias(i), m.MemoryMB, MinMemoryMB)
		}
		if m.Image != nil && m.Image.Name != Recipe && !isNodeImage(m.Image) {
			return nil, fmt.Errorf("kubernetes: nodes run an image of their own, made from %s; image %s cannot be one", Recipe, m.Image.Name)
		}
	}
	manifest, err := p.NodeImage(ctx, out)
	if err != nil {
		return nil, err
	}
	img, err := image.Load(manifest)
	if err != nil {
		return nil, err
	}
	ms := make([]cluster.Machine, len(machines))
	for i, m := range machines {
		m.Image = img
		if i == 0 {
			m.Forwards = append(append([]int(nil), m.Forwards...), APIPort)
		}
		ms[i] = m
	}
	return ms, nil
}

func isNodeImage(m *image.Manifest) bool {
	return len(m.Name) > 4 && m.Name[:4] == "k8s-"
}

// NodeImage returns the manifest of the node image, made first (and
// cached in p.ImageCache) if need be: the recipe's image, NodePackages,
// the binaries and images as an overlay, NAME k8s-VERSION-HASH where
// HASH names all of it.
func (p *Provider) NodeImage(ctx context.Context, out io.Writer) (string, error) {
	if p.Binaries == nil {
		return "", errors.New("kubernetes: a provider without binaries")
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	bins, err := p.Binaries(ctx, out)
	if err != nil {
		return "", err
	}
	name, err := nodeImageName(bins)
	if err != nil {
		return "", err
	}
	if m := debian.CachedManifest(p.ImageCache, name); fileExists(m) {
		return m, nil
	}
	fmt.Fprintf(out, "turtles: making the Kubernetes node image %s (once)\n", name)
	overlay, err := os.MkdirTemp("", "turtles-k8s-overlay-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(overlay)
	if err := writeOverlay(overlay, bins); err != nil {
		return "", fmt.Errorf("kubernetes: node image overlay: %w", err)
	}
	manifest, err := debian.CachedImage(ctx, p.ImageCache, debian.Options{
		Recipe: Recipe, Packages: NodePackages, Overlay: overlay, Setup: nodeSetup, Name: name,
		Mirror: p.Mirror, Output: out, Log: log,
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "turtles: node image %s made in %s\n", name, time.Since(start).Round(time.Second))
	return manifest, nil
}

// nodeLayout is the version of how a node image is laid out beyond what
// nodeImageName hashes (how the overlay is copied in): a new one makes
// new images.
const nodeLayout = 2

// nodeImageName names the node image by everything in it: the
// binaries' contents, the files, the packages and the setup.
func nodeImageName(b Binaries) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "layout %d\npackages %v\nsetup %q\n", nodeLayout, NodePackages, nodeSetup)
	var paths []string
	for p := range imageFiles {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(h, "file %s %q\n", p, imageFiles[p])
	}
	sums := map[string]string{}
	for _, c := range append(append([]string(nil), Components...), "pause", "dns") {
		f := b.Components[c]
		switch c {
		case "pause":
			f = b.Pause
		case "dns":
			f = b.DNS
		}
		if sums[f] == "" {
			s, err := image.HashFile(f)
			if err != nil {
				return "", fmt.Errorf("kubernetes: %s: %w", c, err)
			}
			sums[f] = s
		}
		fmt.Fprintf(h, "binary %s %s\n", c, sums[f])
	}
	v := Version
	if b.Version == "own" {
		v = "own"
	}
	return "k8s-" + v + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// writeOverlay lays out the node image's own files under dir.
func writeOverlay(dir string, b Binaries) error {
	for p, content := range imageFiles {
		f := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return err
		}
	}
	bin := filepath.Join(dir, "usr/local/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	copied := map[string]string{} // host file -> name in bin
	for _, c := range Components {
		src := b.Components[c]
		if have, ok := copied[src]; ok {
			if err := os.Symlink(have, filepath.Join(bin, c)); err != nil {
				return err
			}
			continue
		}
		to := c
		if filepath.Base(src) == "kubebin" {
			to = "kubebin"
		}
		if err := copyFile(src, filepath.Join(bin, to), 0o755); err != nil {
			return err
		}
		copied[src] = to
		if to != c {
			if err := os.Symlink(to, filepath.Join(bin, c)); err != nil {
				return err
			}
		}
	}
	imgs := filepath.Join(dir, "var/lib/turtles/images")
	if err := os.MkdirAll(imgs, 0o755); err != nil {
		return err
	}
	for file, bi := range map[string]BinaryImage{
		"pause.tar": {Tag: PauseImage, Binary: b.Pause},
		"dns.tar":   {Tag: DNSImage, Binary: b.DNS},
	} {
		if err := bi.Write(filepath.Join(imgs, file)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// nodeAddrs are the nodes' addresses, in order.
func nodeAddrs(c *cluster.Cluster) []netip.Addr {
	a := make([]netip.Addr, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// tarFiles is a tar of files (path relative to / -> content, mode 0600
// for keys and 0644 otherwise).
func tarFiles(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeTar(&buf, files); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
