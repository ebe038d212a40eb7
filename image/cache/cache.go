// Package cache is the host's cache of pinned OS images, shared by every
// bot on the host: it fetches an image from the fastest of its sources
// (mirrors over HTTP(S) or S3, peers found through DNS), verifying each
// file's sha256 while it streams and resuming interrupted downloads; it
// serves its content to peers (Handler); and it prunes the least recently
// used images within a size budget, never one a running VM uses.
//
// Layout of the directory (the images directory, docs/images.md):
//
//	NAME-SHA256.json   pinned manifest; SHA256 is the hash of its bytes
//	NAME-SHA256.EXT    a file of an image (disk, kernel, initrd), named
//	                   by its own hash
//	.tmp/              partial downloads (FILE.part), never served
//	.locks/            flock files: FILE.lock (one download at a time),
//	                   ID.use (shared while a VM runs; its mtime is the
//	                   image's last use)
//
// A file appears under its name only once its hash matched, and a
// manifest only once all its files did, so a reader never sees a partial
// image. cmd/turtles and the bot import it.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/image"
)

// Config configures a Cache.
type Config struct {
	// Dir is the cache directory, shared by the bots of a host.
	Dir string
	// Mirrors are tried with the peers, in order of a latency probe.
	Mirrors []Source
	// Peers, if set, finds more sources through DNS.
	Peers *Peers
	// ProbeTimeout bounds the latency probe of each source.
	// StallTimeout abandons a source that sends nothing for this long.
	// Both are required when the cache has sources (Mirrors or Peers):
	// a cache without any never fetches.
	ProbeTimeout time.Duration
	StallTimeout time.Duration
	// MaxImageSize refuses to fetch an image whose manifest claims more
	// bytes in all than this: a pin names the manifest, but anyone who
	// can push a .turtles.yaml can pin one that claims a petabyte. 0
	// means no limit beyond each file's recorded size; cmd/turtles sets
	// --image-max-size.
	MaxImageSize int64
	// Progress, if set, is called as files download.
	Progress func(Progress)
	Log      *slog.Logger
	// Registerer gets the cache's metrics; nil means none.
	Registerer prometheus.Registerer

	// wrap, in tests, wraps writes to partial files (to fail like a full
	// disk where tmpfs cannot be mounted).
	wrap func(w io.Writer) io.Writer
}

// Progress reports a download in flight.
type Progress struct {
	ID     ID
	File   string
	Source string
	Done   int64
	Total  int64 // -1 when unknown
}

// Cache is an image cache directory. Its methods are safe for concurrent
// use, also by several processes on one directory.
type Cache struct {
	cfg Config
	log *slog.Logger
	m   *cacheMetrics
}

// New returns the cache in cfg.Dir, creating the directory on first use.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("image cache: no directory")
	}
	if len(cfg.Mirrors) > 0 || cfg.Peers != nil {
		switch {
		case cfg.ProbeTimeout <= 0:
			return nil, fmt.Errorf("image cache: ProbeTimeout is %s, want more than 0", cfg.ProbeTimeout)
		case cfg.StallTimeout <= 0:
			return nil, fmt.Errorf("image cache: StallTimeout is %s, want more than 0", cfg.StallTimeout)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Cache{cfg: cfg, log: log, m: m}, nil
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.cfg.Dir }

// HasSources reports whether the cache can fetch at all.
func (c *Cache) HasSources() bool { return len(c.cfg.Mirrors) > 0 || c.cfg.Peers != nil }

func (c *Cache) path(name string) string { return filepath.Join(c.cfg.Dir, name) }
func (c *Cache) tmpDir() string          { return filepath.Join(c.cfg.Dir, ".tmp") }
func (c *Cache) lockDir() string         { return filepath.Join(c.cfg.Dir, ".locks") }

func (c *Cache) init() error {
	for _, d := range []string{c.cfg.Dir, c.tmpDir(), c.lockDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return turtles.InfraFault("the bot could not write to its image cache", fmt.Errorf("image cache: %w", err))
		}
	}
	return nil
}

// lookup returns the manifest of id if the image is complete in the cache.
func (c *Cache) lookup(id ID) (*image.Manifest, []File, bool) {
	b, err := os.ReadFile(c.path(id.ManifestFile()))
	if err != nil {
		return nil, nil, false
	}
	m, files, err := parseManifest(id, b)
	if err != nil {
		// Such as a manifest `turtles image build` named by its disk's hash.
		c.log.Debug("image cache: not a pinned manifest", "image", id, "err", err)
		return nil, nil, false
	}
	for _, f := range files {
		if _, err := os.Stat(c.path(f.Name)); err != nil {
			return nil, nil, false
		}
	}
	return m, files, true
}

// Has reports whether the image is complete in the cache.
func (c *Cache) Has(id ID) bool {
	_, _, ok := c.lookup(id)
	return ok
}

// Ensure makes the image complete in the cache, fetching what it lacks,
// and returns the path of its manifest. Errors are infra Faults
// (turtles.Fault) whose reason names the image and says why it could not
// be had: the image could not be had, not the tests failed.
func (c *Cache) Ensure(ctx context.Context, id ID) (string, error) {
	if _, _, ok := c.lookup(id); ok {
		c.m.hits.Inc()
		return c.path(id.ManifestFile()), nil
	}
	c.m.misses.Inc()
	if err := c.init(); err != nil {
		return "", err
	}
	if err := c.fetch(ctx, id); err != nil {
		return "", pullFault(id, fmt.Errorf("pull image %s: %w", id, err))
	}
	return c.path(id.ManifestFile()), nil
}

// Acquire ensures the image and holds it in use until release is called:
// Prune leaves it alone meanwhile. It also records the use for LRU.
func (c *Cache) Acquire(ctx context.Context, id ID) (m *image.Manifest, release func(), err error) {
	if err := c.init(); err != nil {
		return nil, nil, err
	}
	for range 3 { // Prune may remove the image between Ensure and the lock.
		path, err := c.Ensure(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		unlock, err := c.flock(ctx, id.useLock(), syscall.LOCK_SH)
		if err != nil {
			return nil, nil, turtles.InfraFault("the bot could not lock image "+id.Short()+" in its image cache", fmt.Errorf("image %s: %w", id, err))
		}
		now := time.Now()
		os.Chtimes(c.path(filepath.Join(".locks", id.useLock())), now, now)
		if _, _, ok := c.lookup(id); !ok {
			unlock()
			continue
		}
		m, err := image.Load(path)
		if err != nil {
			unlock()
			return nil, nil, turtles.InfraFault("the bot could not read image "+id.Short()+" from its image cache", err)
		}
		return m, unlock, nil
	}
	return nil, nil, turtles.InfraFault("image "+id.Short()+" was pruned from the bot's image cache while the VM started",
		fmt.Errorf("image %s: pruned while starting; try again", id))
}

// Why a pull found no image.
var (
	errNoSources = errors.New("no image sources configured (--image-mirrors, --image-peers)")
	errNowhere   = errors.New("no source has it")
)

// pullFault says for people why the pull of id failed with err.
func pullFault(id ID, err error) error {
	var tooLarge *TooLargeError
	reason := "image " + id.Short() + " could not be fetched"
	switch {
	case errors.Is(err, ErrDiskFull):
		reason = "the bot's image cache has no room for image " + id.Short()
	case errors.As(err, &tooLarge):
		reason = "image " + id.Short() + " is larger than this bot fetches"
	case errors.Is(err, ErrNoSizes):
		reason = "image " + id.Short() + " was pinned by an older turtles; pin it again with turtles image pin"
	case errors.Is(err, errNoSources):
		reason = "this bot has nowhere to fetch image " + id.Short() + " from"
	case errors.Is(err, errNowhere):
		reason = "no image mirror or peer has image " + id.Short()
	}
	return turtles.InfraFault(reason, err)
}

func (id ID) useLock() string { return string(id) + ".use" }

// flock locks .locks/name (LOCK_EX or LOCK_SH), polling so that ctx
// bounds the wait.
func (c *Cache) flock(ctx context.Context, name string, how int) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.lockDir(), name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	wait := 10 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", name, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// tryLock takes .locks/name exclusively if nobody holds it.
func (c *Cache) tryLock(name string) (unlock func(), ok bool) {
	f, err := os.OpenFile(filepath.Join(c.lockDir(), name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// ErrDiskFull is wrapped by errors of a cache that ran out of space.
var ErrDiskFull = errors.New("image cache is full")

// diskError explains a full disk; other errors pass with the path.
func diskError(path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: no space left writing %s (free space with `turtles image prune --keep SIZE` or give the cache more room): %w", ErrDiskFull, path, err)
	}
	return fmt.Errorf("write %s: %w", path, err)
}
