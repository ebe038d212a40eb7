package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/image/cache"
)

func init() {
	register("image-pull", imagePull)
}

// imagePull pulls a 1 GiB image from a peer (the cache's Handler, as
// `turtles image serve` runs it) on loopback, verifying its sha256 as it
// streams and syncing it before the rename, and compares its throughput
// with curl downloading the same file from the same server onto the same
// disk. Runs alternate, with a sync(2) between them so that neither pays
// for the other's writeback; the result is the ratio of the medians.
//
// turtles fsyncs a file before renaming it into the cache (a crash must
// not leave a torn image under a verified name), so its time includes
// writing to disk. The baseline is the same: curl, then an fsync of its
// file, timed together. curl alone, done when the file is in the page
// cache, is printed beside it; on a disk slower than memory it is faster
// than any download that waits for the disk.
func imagePull(ctx context.Context) error {
	curl, err := exec.LookPath("curl")
	if err != nil {
		return errors.New("curl is missing")
	}
	dir, err := os.MkdirTemp("", "turtles-bench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const size = 1 << 30
	seed, id, err := benchImage(dir, size)
	if err != nil {
		return err
	}
	syscall.Sync()
	_, files, _ := seedFiles(seed, id)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/images/", http.StripPrefix("/images", seed.Handler()))
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p, _ := strconv.Atoi(port)
	url := fmt.Sprintf("http://127.0.0.1:%d/images/%s", p, files)

	const runs = 3
	var tCurl, tCurlOnly, tPull []time.Duration
	var cpuCurl, cpuServer, cpuPull time.Duration
	for i := range runs {
		out := filepath.Join(dir, "curl.out")
		start, self := time.Now(), cpuSelf()
		cmd := exec.CommandContext(ctx, curl, "-sSf", "-o", out, url)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("curl: %w", err)
		}
		tCurlOnly = append(tCurlOnly, time.Since(start))
		cpuCurl += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		cpuServer += cpuSelf() - self
		if err := fsyncFile(out); err != nil {
			return err
		}
		tCurl = append(tCurl, time.Since(start))
		// Its dirty pages are written back now, not during the next run.
		syscall.Sync()
		os.Remove(out)

		cdir := filepath.Join(dir, fmt.Sprintf("pull-%d", i))
		c, err := cache.New(cache.Config{Dir: cdir, Log: slog.New(slog.DiscardHandler), Peers: &cache.Peers{
			Name: "peers.bench", Port: p, Resolver: staticResolver{"127.0.0.1"},
		}, ProbeTimeout: 2 * time.Second, StallTimeout: 30 * time.Second})
		if err != nil {
			return err
		}
		start, self = time.Now(), cpuSelf()
		if _, err := c.Ensure(ctx, id); err != nil {
			return err
		}
		tPull = append(tPull, time.Since(start))
		cpuPull += cpuSelf() - self
		syscall.Sync()
		os.RemoveAll(cdir)
		fmt.Printf("run %d: curl + fsync %.0f MiB/s (curl alone %.0f MiB/s), turtles (sha256 + fsync) %.0f MiB/s\n",
			i+1, mibps(size, tCurl[i]), mibps(size, tCurlOnly[i]), mibps(size, tPull[i]))
	}
	c, t, co := median(tCurl), median(tPull), median(tCurlOnly)
	fmt.Printf("1 GiB over loopback: curl + fsync median %s (%.0f MiB/s), turtles median %s (%.0f MiB/s); against curl alone (page cache, %.0f MiB/s): %.2f\n",
		c.Round(time.Millisecond), mibps(size, c), t.Round(time.Millisecond), mibps(size, t), mibps(size, co), co.Seconds()/t.Seconds())
	fmt.Printf("CPU per GiB: curl %.2fs, turtles %.2fs (less the server's %.2fs); load average %s\n",
		(cpuCurl / runs).Seconds(), ((cpuPull - cpuServer) / runs).Seconds(), (cpuServer / runs).Seconds(), loadAverage())
	result("image-pull", fmt.Sprintf("%.2f", c.Seconds()/t.Seconds()), "ratio", ">= 0.9")
	return nil
}

func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func mibps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

// benchImage writes an image with a disk of size pseudo-random bytes (no
// compression helps anyone) and pins it in a cache under dir.
func benchImage(dir string, size int64) (*cache.Cache, cache.ID, error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, "", err
	}
	f, err := os.Create(filepath.Join(src, "bench.qcow2"))
	if err != nil {
		return nil, "", err
	}
	r := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return nil, "", err
	}
	if err := f.Close(); err != nil {
		return nil, "", err
	}
	if err := image.Write(filepath.Join(src, "bench.json"), &image.Manifest{Name: "bench", Disk: "bench.qcow2"}); err != nil {
		return nil, "", err
	}
	seed, err := cache.New(cache.Config{Dir: filepath.Join(dir, "seed")})
	if err != nil {
		return nil, "", err
	}
	id, err := seed.Import(filepath.Join(src, "bench.json"))
	return seed, id, err
}

// seedFiles returns the disk's file name of the pinned image.
func seedFiles(seed *cache.Cache, id cache.ID) (*image.Manifest, string, error) {
	m, err := image.Load(filepath.Join(seed.Dir(), id.ManifestFile()))
	if err != nil {
		return nil, "", err
	}
	return m, filepath.Base(m.Disk), nil
}

// cpuSelf is the CPU time (user and system) of this process so far.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage is the first field of /proc/loadavg: the bench shares the
// machine, and the ratio suffers when the CPUs are busy.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

type staticResolver []string

func (s staticResolver) LookupHost(context.Context, string) ([]string, error) { return s, nil }
