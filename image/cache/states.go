package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles/store"
)

// Saved VM states (package vm's warm starts) shared between bots. A bot
// that saved a state publishes it: its two files go into the cache under
// names that carry their hash (warm-SHA256), where peers serve them as
// they serve images, and its meta.json goes into the store as
// warm/NAME.json: the pin. Another bot that needs state NAME reads the pin
// from the store, which every bot trusts as it trusts its logs, and
// fetches the files from its sources, each checked against the pin's
// size and sha256 as image files are. A peer can thus only serve a state
// some bot saved and published; it cannot make one up.

// ErrNoState is returned (wrapped) by Fetch when no bot published the
// state.
var ErrNoState = errors.New("no bot published this saved state")

// States shares saved VM states through the cache's sources and a
// store's pins.
type States struct {
	c    *Cache
	pins store.Store
}

// States returns the sharing of saved states through c's sources, with
// pins in st.
func (c *Cache) States(st store.Store) *States { return &States{c: c, pins: st} }

// statePin is what Fetch reads of a pin: the files. The rest of it (the
// state's key) is the caller's to check.
type statePin struct {
	StateSize   int64  `json:"state_size"`
	StateSHA256 string `json:"state_sha256"`
	DiskSize    int64  `json:"disk_size"`
	DiskSHA256  string `json:"disk_sha256"`
}

// Names of a state's files in its directory, as package vm keeps them.
const (
	stateMemory = "memory"
	stateDisk   = "disk.qcow2"
	stateMeta   = "meta.json"
)

// maxPin bounds a pin read from the store.
const maxPin = 64 << 10

func pinKey(name string) string { return "warm/" + name + ".json" }

// stateFile is the cache's name of a state file with that sha256.
func stateFile(sha string) string { return "warm-" + sha }

func validStateName(name string) error {
	if len(name) != 64 || !isHex(name) {
		return fmt.Errorf("saved state %q: not a sha256", name)
	}
	return nil
}

func (p statePin) files() ([]File, error) {
	files := []File{{Name: stateFile(p.StateSHA256), SHA256: p.StateSHA256, Size: p.StateSize},
		{Name: stateFile(p.DiskSHA256), SHA256: p.DiskSHA256, Size: p.DiskSize}}
	for _, f := range files {
		if len(f.SHA256) != 64 || !isHex(f.SHA256) || f.Size <= 0 {
			return nil, fmt.Errorf("a file without a valid sha256 and size: %+v", f)
		}
	}
	return files, nil
}

// Fetch gets the published state name: its memory and disk.qcow2 into
// dir (which exists), from the cache or its sources. It returns the pin,
// the publisher's meta.json, whose key the caller checks before it
// trusts the state to be one of its own machines.
func (s *States) Fetch(ctx context.Context, name, dir string) ([]byte, error) {
	if err := validStateName(name); err != nil {
		return nil, err
	}
	r, _, err := s.pins.Get(ctx, pinKey(name))
	if errors.Is(err, store.ErrNotExist) {
		return nil, fmt.Errorf("saved state %s: %w", name, ErrNoState)
	}
	if err != nil {
		return nil, fmt.Errorf("saved state %s: read its pin: %w", name, err)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPin+1))
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("saved state %s: read its pin: %w", name, err)
	}
	if len(b) > maxPin {
		return nil, fmt.Errorf("saved state %s: its pin is over %d bytes", name, maxPin)
	}
	var pin statePin
	if err := json.Unmarshal(b, &pin); err != nil {
		return nil, fmt.Errorf("saved state %s: its pin: %w", name, err)
	}
	files, err := pin.files()
	if err != nil {
		return nil, fmt.Errorf("saved state %s: its pin: %w", name, err)
	}
	id := ID("warm-" + name[:12])
	if err := checkSizes(id, files, s.c.cfg.MaxImageSize); err != nil {
		return nil, err
	}
	if err := s.c.init(); err != nil {
		return nil, err
	}
	p := &pull{c: s.c, id: id, sources: s.c.sources(ctx), bad: map[Source]bool{}}
	began := time.Now()
	for i, f := range files {
		if _, err := os.Stat(s.c.path(f.Name)); err != nil && len(p.sources) == 0 {
			return nil, fmt.Errorf("saved state %s: %w", name, errNoSources)
		}
		if err := p.file(ctx, f); err != nil {
			return nil, fmt.Errorf("saved state %s: %w", name, err)
		}
		if err := linkOrCopy(s.c.path(f.Name), filepath.Join(dir, []string{stateMemory, stateDisk}[i])); err != nil {
			return nil, fmt.Errorf("saved state %s: %w", name, err)
		}
	}
	s.c.log.Info("pulled a saved VM state", "state", name, "took", time.Since(began).Round(time.Millisecond))
	return b, nil
}

// Publish offers the saved state in dir (memory, disk.qcow2, meta.json
// as package vm writes them) to other bots: its files into the cache,
// where peers find them, then its pin into the store.
func (s *States) Publish(ctx context.Context, name, dir string) error {
	if err := validStateName(name); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, stateMeta))
	if err != nil {
		return fmt.Errorf("publish saved state %s: %w", name, err)
	}
	var pin statePin
	if err := json.Unmarshal(b, &pin); err != nil {
		return fmt.Errorf("publish saved state %s: meta.json: %w", name, err)
	}
	files, err := pin.files()
	if err != nil {
		return fmt.Errorf("publish saved state %s: meta.json: %w", name, err)
	}
	if err := s.c.init(); err != nil {
		return err
	}
	for i, f := range files {
		if err := s.c.place(filepath.Join(dir, []string{stateMemory, stateDisk}[i]), f.Name); err != nil {
			return fmt.Errorf("publish saved state %s: %w", name, diskError(s.c.path(f.Name), err))
		}
	}
	if err := s.pins.Put(ctx, pinKey(name), bytes.NewReader(b), "application/json"); err != nil {
		return fmt.Errorf("publish saved state %s: its pin: %w", name, err)
	}
	s.c.log.Info("published a saved VM state", "state", name)
	return nil
}

// sources returns the mirrors and the peers found now.
func (c *Cache) sources(ctx context.Context) []Source {
	all := append([]Source(nil), c.cfg.Mirrors...)
	if c.cfg.Peers != nil {
		peers, err := c.cfg.Peers.Sources(ctx)
		if err != nil {
			c.log.Warn("no peers", "err", err)
		}
		all = append(all, peers...)
	}
	return all
}

// linkOrCopy makes dst a hard link of src where the file system allows,
// else a copy.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}

// HasFile reports whether a pinned image in the cache has a file with
// this sha256.
func (c *Cache) HasFile(sha string) bool {
	entries, err := c.List()
	if err != nil {
		return true // unknown: keep what depends on it
	}
	for _, e := range entries {
		for _, f := range e.Files {
			if f.SHA256 == sha {
				return true
			}
		}
	}
	return false
}

// PruneStateFiles removes the saved states' files no state links to any
// more (pruneStateFiles), at once, and returns the bytes freed.
func (c *Cache) PruneStateFiles() int64 { return c.pruneStateFiles(0) }

// pruneStateFiles removes the state files (warm-SHA256) that no saved
// state's directory links to any more (a link count of 1), under their
// download lock, and returns the bytes freed. Copies (another file
// system) are not counted as links: they go at the next prune after
// their state's.
func (c *Cache) pruneStateFiles(minAge time.Duration) int64 {
	paths, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "warm-*"))
	var freed int64
	for _, p := range paths {
		name := filepath.Base(p)
		if len(name) != len("warm-")+64 || !isHex(strings.TrimPrefix(name, "warm-")) {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || time.Since(fi.ModTime()) < minAge {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Nlink > 1 {
			continue
		}
		unlock, ok := c.tryLock(name + ".lock")
		if !ok {
			continue
		}
		if os.Remove(p) == nil {
			freed += fi.Size()
			c.log.Info("pruned a saved VM state's file", "file", name, "size", fi.Size())
		}
		unlock()
	}
	return freed
}
