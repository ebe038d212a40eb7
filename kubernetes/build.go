package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Version is the Kubernetes release kubebin is built from: the one
// k8s.io/kubernetes is pinned to in kubebin/go.mod.txt.
const Version = "1.34.4"

// src holds the two modules the node's binaries are built from, each
// with go.mod and go.sum under other names (a go.mod would make it a
// module this one cannot embed) and its commands' sources, tagged ignore
// so that this module never builds them:
//
//	components  kubebin: k8s.io/kubernetes at Version, with the
//	            dependencies it was released with, nothing added
//	node        pause and dns: miekg/dns and the client-go of turtles
//
//go:embed src
var src embed.FS

// CacheDir is where Kubernetes is built once by default, outside any
// checkout: $XDG_CACHE_HOME/turtles, else ~/.cache/turtles, else
// /var/tmp/turtles-cache.
func CacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "turtles")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "turtles")
	}
	return "/var/tmp/turtles-cache"
}

// Binaries are the host files a node image is made of.
type Binaries struct {
	// Components maps each of Components to its binary (all kubebin
	// when built here).
	Components map[string]string
	// Pause and DNS are the static binaries of the pause and DNS images.
	Pause, DNS string
	// Version is what `kubelet --version` says, as v1.34.4.
	Version string
}

// command is a binary built from the embedded sources.
type command struct{ name, module, file string }

// commands are built in this order: the small ones first, so that a
// broken toolchain shows in seconds.
var commands = []command{
	{"pause", "node", "pause.go"},
	{"dns", "node", "dns.go"},
	{"kubebin", "components", "main.go"},
}

// BuildBinaries builds kubebin, pause and dns from the embedded module
// with the go tool, once: into cacheDir/kubernetes-VERSION-HASH, HASH
// naming the sources and the go tool's version. A second call (also from
// another process, which waits) finds them there. out gets progress: the
// first build compiles about 3,000 packages, some 15 minutes on 2 cores.
func BuildBinaries(ctx context.Context, cacheDir string, out io.Writer) (Binaries, error) {
	gover, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("building Kubernetes needs the go tool (or --kubernetes-binaries DIR): %w", err)
	}
	key, err := sourceKey(strings.TrimSpace(string(gover)))
	if err != nil {
		return Binaries{}, err
	}
	dir := filepath.Join(cacheDir, "kubernetes-"+Version+"-"+key)
	bins := builtBinaries(dir)
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return bins, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Binaries{}, err
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, ".kubernetes.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Binaries{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return Binaries{}, fmt.Errorf("lock the Kubernetes build: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return bins, nil // built by another process while this one waited
	}
	work, err := os.MkdirTemp(cacheDir, ".kubernetes-build-")
	if err != nil {
		return Binaries{}, err
	}
	defer os.RemoveAll(work)
	if err := WriteSource(work); err != nil {
		return Binaries{}, err
	}
	out2 := filepath.Join(work, "out")
	start := time.Now()
	fmt.Fprintf(out, "turtles: building Kubernetes %s from the Go module proxy (once; the first time takes 10-20 minutes on 2 cores)\n", Version)
	ldflags := fmt.Sprintf("-s -w -X k8s.io/component-base/version.gitVersion=v%s -X k8s.io/component-base/version.gitMajor=%s -X k8s.io/component-base/version.gitMinor=%s -X k8s.io/component-base/version.gitTreeState=clean",
		Version, strings.Split(Version, ".")[0], strings.Split(Version, ".")[1])
	for _, c := range commands {
		cmd := exec.CommandContext(ctx, "go", "build", "-v", "-trimpath", "-ldflags", ldflags,
			"-o", filepath.Join(out2, c.name), "./"+c.name)
		cmd.Dir = filepath.Join(work, c.module)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
		if err := runCounting(cmd, out, c.name); err != nil {
			return Binaries{}, fmt.Errorf("build %s of Kubernetes %s: %w", c.name, Version, err)
		}
	}
	if err := os.WriteFile(filepath.Join(out2, "done"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return Binaries{}, err
	}
	os.RemoveAll(dir) // a build without "done" that was cut short
	if err := os.Rename(out2, dir); err != nil {
		return Binaries{}, err
	}
	fmt.Fprintf(out, "turtles: Kubernetes %s built in %s, in %s\n", Version, time.Since(start).Round(time.Second), dir)
	return bins, nil
}

func builtBinaries(dir string) Binaries {
	b := Binaries{Components: map[string]string{}, Pause: filepath.Join(dir, "pause"), DNS: filepath.Join(dir, "dns"), Version: "v" + Version}
	for _, c := range Components {
		b.Components[c] = filepath.Join(dir, "kubebin")
	}
	return b
}

// OwnBinaries are binaries a user brings: DIR/NAME for each of
// Components (release tarballs' files), or DIR/kubebin for those
// missing; DIR/pause and DIR/dns, or else those built here (built, which
// may be zero when the user brought them all).
func OwnBinaries(dir string, built Binaries) (Binaries, error) {
	b := Binaries{Components: map[string]string{}, Pause: built.Pause, DNS: built.DNS, Version: "own"}
	for _, c := range Components {
		for _, p := range []string{filepath.Join(dir, c), filepath.Join(dir, "kubebin")} {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				b.Components[c] = p
				break
			}
		}
		if b.Components[c] == "" {
			return Binaries{}, fmt.Errorf("%s: no executable %s (or kubebin)", dir, c)
		}
	}
	for _, x := range []struct {
		name string
		p    *string
	}{{"pause", &b.Pause}, {"dns", &b.DNS}} {
		if p := filepath.Join(dir, x.name); fileExists(p) {
			*x.p = p
		}
		if *x.p == "" {
			return Binaries{}, fmt.Errorf("%s: no %s binary, and none built", dir, x.name)
		}
	}
	return b, nil
}

// NeedBuild reports whether OwnBinaries(dir) lacks pause or dns, which
// BuildBinaries then provides.
func NeedBuild(dir string) bool {
	return !fileExists(filepath.Join(dir, "pause")) || !fileExists(filepath.Join(dir, "dns"))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// sourceKey names the embedded sources and the go tool's version.
func sourceKey(gover string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", gover)
	var names []string
	if err := fs.WalkDir(src, "src", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	}); err != nil {
		return "", err
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := src.ReadFile(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// WriteSource writes the embedded modules into dir/MODULE: go.mod,
// go.sum, and each command in a directory of its own, its ignore tag
// gone. `make kubernetes-tidy` uses it to update the sources.
func WriteSource(dir string) error {
	files := map[string]string{}
	for _, m := range []string{"components", "node"} {
		files[filepath.Join(m, "go.mod")] = "src/" + m + "/go.mod.txt"
		files[filepath.Join(m, "go.sum")] = "src/" + m + "/go.sum.txt"
	}
	for _, c := range commands {
		files[filepath.Join(c.module, c.name, "main.go")] = "src/" + c.module + "/" + c.file
	}
	for to, from := range files {
		b, err := src.ReadFile(from)
		if err != nil {
			return err
		}
		b = bytes.TrimPrefix(b, []byte("//go:build ignore\n"))
		p := filepath.Join(dir, to)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runCounting runs a `go build -v`, telling out how many packages it
// compiled every 250 (it names each on stderr) and its last lines if it
// fails.
func runCounting(cmd *exec.Cmd, out io.Writer, what string) error {
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan []string)
	go func() {
		var tail []string
		n := 0
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			n++
			tail = append(tail, sc.Text())
			if len(tail) > 20 {
				tail = tail[1:]
			}
			if n%250 == 0 {
				fmt.Fprintf(out, "turtles: building %s: %d packages compiled\n", what, n)
			}
		}
		io.Copy(io.Discard, r)
		done <- tail
	}()
	err := cmd.Wait()
	w.Close()
	tail := <-done
	if err != nil {
		return errors.Join(err, errors.New(strings.Join(tail, "\n")))
	}
	return nil
}
