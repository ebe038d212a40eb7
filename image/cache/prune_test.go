package cache

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Prune removes the least recently used images over the budget, never one
// in use, never a file another image still names.
func TestPrune(t *testing.T) {
	seedA, a := testImage(t, "a", 1<<20)
	seedB, b := testImage(t, "b", 1<<20)
	seedC, cID := testImage(t, "c", 1<<20)
	dir := t.TempDir()
	c := newCache(t, dir, nil, &Store{}) // sources unused: images are copied in
	for _, s := range []struct {
		seed *Cache
		id   ID
	}{{seedA, a}, {seedB, b}, {seedC, cID}} {
		if _, err := c.Import(filepath.Join(s.seed.Dir(), s.id.ManifestFile())); err != nil {
			t.Fatal(err)
		}
	}
	// A shares B's disk through a second manifest that is not pinned.
	_, filesB, _ := c.lookup(b)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"name":"b","disk":"`+filesB[0].Name+`"}`), 0o644)

	// Use order, oldest first: a (held by a running VM), b, c.
	_, releaseA, err := c.Acquire(ctx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, ".locks", a.useLock()), old, old)
	_, rel, _ := c.Acquire(ctx(t), b)
	rel()
	os.Chtimes(filepath.Join(dir, ".locks", b.useLock()), old.Add(time.Minute), old.Add(time.Minute))
	_, rel, _ = c.Acquire(ctx(t), cID)
	rel()

	entries, _ := c.List()
	if len(entries) != 3 || entries[0].ID != cID || !entries[2].InUse {
		t.Fatalf("List: %+v", entries)
	}
	res, err := c.Prune(entries[0].Size) // room for c only
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0] != b || len(res.Busy) != 1 || res.Busy[0] != a {
		t.Errorf("Prune: %+v; want b removed, a busy", res)
	}
	if !c.Has(a) || !c.Has(cID) || c.Has(b) {
		t.Errorf("has a %v b %v c %v; want a, c", c.Has(a), c.Has(b), c.Has(cID))
	}
	if _, err := os.Stat(filepath.Join(dir, filesB[0].Name)); err != nil {
		t.Errorf("b's disk, named by b.json, was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, filesB[1].Name)); err == nil {
		t.Errorf("b's kernel, named by no manifest, was kept")
	}
	releaseA()
	res, err = c.Prune(0)
	if err != nil || len(res.Removed) != 2 {
		t.Errorf("Prune(0) after release: %+v, %v", res, err)
	}
	if entries, _ := c.List(); len(entries) != 0 {
		t.Errorf("left: %+v", entries)
	}
}

// Prune removes partial downloads nobody resumed for a day, never one
// being written.
func TestPruneStaleParts(t *testing.T) {
	c := newCache(t, t.TempDir(), nil)
	if err := c.init(); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-25 * time.Hour)
	for _, n := range []string{"stale.qcow2", "busy.qcow2", "fresh.qcow2"} {
		p := filepath.Join(c.tmpDir(), n+".part")
		os.WriteFile(p, make([]byte, 1000), 0o644)
		if n != "fresh.qcow2" {
			os.Chtimes(p, old, old)
		}
	}
	unlock, err := c.flock(ctx(t), "busy.qcow2.lock", syscall.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	res, err := c.Prune(1 << 30)
	if err != nil || res.Freed != 1000 {
		t.Errorf("Prune: %+v, %v; want 1000 bytes freed", res, err)
	}
	left, _ := filepath.Glob(filepath.Join(c.tmpDir(), "*.part"))
	if len(left) != 2 || strings.Contains(strings.Join(left, " "), "stale") {
		t.Errorf("parts left: %v", left)
	}
}
