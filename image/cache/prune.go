package cache

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/turtles-ci/turtles/image"
)

// Entry is a pinned image in the cache.
type Entry struct {
	ID       ID
	Files    []File
	Size     int64     // of its files
	LastUsed time.Time // last Acquire, else when it arrived
	InUse    bool      // a VM holds it (Acquire) now
}

// List returns the complete pinned images in the cache, most recently
// used first. Manifests that are not pinned (such as NAME.json written by
// `turtles image build`) are not listed.
func (c *Cache) List() ([]Entry, error) {
	names, err := filepath.Glob(filepath.Join(c.cfg.Dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, p := range names {
		id, err := ParseID(strings.TrimSuffix(filepath.Base(p), ".json"))
		if err != nil {
			continue
		}
		_, files, ok := c.lookup(id)
		if !ok {
			continue
		}
		e := Entry{ID: id, Files: files}
		for _, f := range files {
			if fi, err := os.Stat(c.path(f.Name)); err == nil {
				e.Size += fi.Size()
			}
		}
		if fi, err := os.Stat(filepath.Join(c.lockDir(), id.useLock())); err == nil {
			e.LastUsed = fi.ModTime()
		} else if fi, err := os.Stat(p); err == nil {
			e.LastUsed = fi.ModTime()
		}
		if unlock, ok := c.tryLock(id.useLock()); ok {
			unlock()
		} else if _, err := os.Stat(c.lockDir()); err == nil {
			e.InUse = true
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// PruneResult says what Prune did.
type PruneResult struct {
	Removed []ID
	Freed   int64
	Kept    int64 // bytes of the images kept
	// Busy are images over the budget that a VM uses: kept anyway.
	Busy []ID
}

// Prune removes the least recently used pinned images until those left
// fit in keep bytes. An image in use (Acquire) is never removed; a file
// that another manifest still names is never removed.
func (c *Cache) Prune(keep int64) (PruneResult, error) {
	var res PruneResult
	if err := c.init(); err != nil {
		return res, err
	}
	res.Freed += c.removeStaleParts(staleParts)
	res.Freed += c.pruneStateFiles(staleStateFiles)
	entries, err := c.List()
	if err != nil {
		return res, err
	}
	counted := map[string]bool{}
	size := func(e Entry) int64 { // bytes e adds to what is kept
		var n int64
		for _, f := range e.Files {
			if !counted[f.Name] {
				if fi, err := os.Stat(c.path(f.Name)); err == nil {
					n += fi.Size()
				}
			}
		}
		return n
	}
	keepFiles := func(e Entry) {
		for _, f := range e.Files {
			counted[f.Name] = true
		}
	}
	var victims []Entry
	full := false
	for _, e := range entries {
		n := size(e)
		if !full && res.Kept+n <= keep {
			res.Kept += n
			keepFiles(e)
			continue
		}
		full = true
		if e.InUse {
			res.Busy = append(res.Busy, e.ID)
			res.Kept += n
			keepFiles(e)
			continue
		}
		victims = append(victims, e)
	}
	for _, e := range victims {
		unlock, ok := c.tryLock(e.ID.useLock())
		if !ok {
			res.Busy = append(res.Busy, e.ID)
			res.Kept += size(e)
			keepFiles(e)
			continue
		}
		freed, err := c.remove(e)
		unlock()
		if err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, e.ID)
		res.Freed += freed
		c.m.pruned.Inc()
		c.m.prunedBytes.Add(float64(freed))
		c.log.Info("pruned image", "image", e.ID, "freed", freed)
	}
	return res, nil
}

// staleStateFiles is how old a saved state's file that no state links
// to must be for Prune to remove it: a fetch links the file it pulled
// within moments.
const staleStateFiles = time.Hour

// staleParts is how old a partial download must be for Prune to remove
// it: nobody resumed it for this long.
const staleParts = 24 * time.Hour

// removeStaleParts removes partial downloads older than age that no pull
// is writing, and returns the bytes freed.
func (c *Cache) removeStaleParts(age time.Duration) int64 {
	parts, _ := filepath.Glob(filepath.Join(c.tmpDir(), "*.part"))
	var freed int64
	for _, p := range parts {
		fi, err := os.Stat(p)
		if err != nil || time.Since(fi.ModTime()) < age {
			continue
		}
		unlock, ok := c.tryLock(strings.TrimSuffix(filepath.Base(p), ".part") + ".lock")
		if !ok {
			continue // being downloaded
		}
		if os.Remove(p) == nil {
			freed += fi.Size()
			c.log.Info("removed a stale partial download", "file", p, "size", fi.Size())
		}
		unlock()
	}
	return freed
}

// remove deletes e's manifest, then its files that no other manifest in
// the directory names (pinned or not). The caller holds e's use lock.
func (c *Cache) remove(e Entry) (int64, error) {
	if err := os.Remove(c.path(e.ID.ManifestFile())); err != nil {
		return 0, fmt.Errorf("prune %s: %w", e.ID, err)
	}
	named := c.namedFiles()
	var freed int64
	for _, f := range e.Files {
		if named[f.Name] {
			continue
		}
		p := c.path(f.Name)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if err := os.Remove(p); err != nil {
			return freed, fmt.Errorf("prune %s: %w", e.ID, err)
		}
		freed += fi.Size()
	}
	return freed, nil
}

// namedFiles is every file some manifest in the directory names.
func (c *Cache) namedFiles() map[string]bool {
	named := map[string]bool{}
	paths, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var m image.Manifest
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		for _, f := range []string{m.Disk, m.Kernel, m.Initrd} {
			if f != "" {
				named[filepath.Base(f)] = true
			}
		}
	}
	return named
}
