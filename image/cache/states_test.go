package cache

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/image"
	"github.com/turtles-ci/turtles/store"
)

// testState writes a saved state's files as package vm does into a new
// directory, and returns it and its name.
func testState(t *testing.T) (dir, name string) {
	t.Helper()
	dir = t.TempDir()
	meta := map[string]any{"key": map[string]any{"format": 1, "cpus": 2}}
	for _, f := range []struct {
		name, size, sum string
		n               int
	}{{stateMemory, "state_size", "state_sha256", 3 << 20}, {stateDisk, "disk_size", "disk_sha256", 256 << 10}} {
		b := make([]byte, f.n)
		rand.Read(b)
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, b, 0o444); err != nil {
			t.Fatal(err)
		}
		sum, err := image.HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		meta[f.size], meta[f.sum] = f.n, sum
	}
	b, _ := json.Marshal(meta)
	if err := os.WriteFile(filepath.Join(dir, stateMeta), b, 0o444); err != nil {
		t.Fatal(err)
	}
	return dir, strings.Repeat("ab", 32)
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s differs from %s", b, a)
	}
}

// TestStates: a state one bot published is fetched by another from its
// peer, checked against the pin in the store they share; a peer that
// serves other bytes, a missing pin and a bad pin fetch nothing.
func TestStates(t *testing.T) {
	pins, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	saved, name := testState(t)
	a := newCache(t, t.TempDir(), nil)
	if err := a.States(pins).Publish(t.Context(), name, saved); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	src, err := NewHTTP(srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("fetched", func(t *testing.T) {
		b := newCache(t, t.TempDir(), nil, src)
		into := t.TempDir()
		pin, err := b.States(pins).Fetch(t.Context(), name, into)
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := os.ReadFile(filepath.Join(saved, stateMeta))
		if !bytes.Equal(pin, meta) {
			t.Errorf("pin %s, want the publisher's meta.json %s", pin, meta)
		}
		sameFile(t, filepath.Join(saved, stateMemory), filepath.Join(into, stateMemory))
		sameFile(t, filepath.Join(saved, stateDisk), filepath.Join(into, stateDisk))
		// While the state links its files, pruning keeps them; once the
		// state is gone, they go.
		if freed := b.pruneStateFiles(0); freed != 0 {
			t.Errorf("pruned %d bytes of a state in use", freed)
		}
		os.RemoveAll(into)
		if freed := b.pruneStateFiles(0); freed != 3<<20+256<<10 {
			t.Errorf("pruned %d bytes once the state was gone, want %d", freed, 3<<20+256<<10)
		}
	})

	t.Run("no pin", func(t *testing.T) {
		b := newCache(t, t.TempDir(), nil, src)
		_, err := b.States(pins).Fetch(t.Context(), strings.Repeat("cd", 32), t.TempDir())
		if !errors.Is(err, ErrNoState) {
			t.Errorf("Fetch of an unpublished state: %v, want ErrNoState", err)
		}
	})

	t.Run("bad name", func(t *testing.T) {
		b := newCache(t, t.TempDir(), nil, src)
		for _, n := range []string{"../../etc", "", strings.Repeat("g", 64)} {
			if _, err := b.States(pins).Fetch(t.Context(), n, t.TempDir()); err == nil || errors.Is(err, ErrNoState) {
				t.Errorf("Fetch(%q): %v, want refused", n, err)
			}
		}
	})

	t.Run("a peer serves other bytes", func(t *testing.T) {
		// The publisher's cache file of the memory is changed in place,
		// as a peer that lies would serve it.
		var pin statePin
		b, _ := os.ReadFile(filepath.Join(saved, stateMeta))
		json.Unmarshal(b, &pin)
		other := t.TempDir()
		liar := newCache(t, other, nil)
		liar.init()
		evil := make([]byte, pin.StateSize)
		rand.Read(evil)
		os.WriteFile(liar.path(stateFile(pin.StateSHA256)), evil, 0o444)
		lsrv := httptest.NewServer(liar.Handler())
		defer lsrv.Close()
		lsrc, _ := NewHTTP(lsrv.URL)
		c := newCache(t, t.TempDir(), nil, lsrc)
		into := t.TempDir()
		if _, err := c.States(pins).Fetch(t.Context(), name, into); err == nil {
			t.Fatal("a state made up by a peer was fetched")
		}
		if left, _ := os.ReadDir(into); len(left) != 0 {
			t.Errorf("a failed fetch left %d files in the state's directory", len(left))
		}
	})

	t.Run("a pin without hashes", func(t *testing.T) {
		bad := strings.Repeat("ef", 32)
		pins.Put(t.Context(), pinKey(bad), strings.NewReader(`{"state_size":10,"disk_size":10}`), "application/json")
		c := newCache(t, t.TempDir(), nil, src)
		if _, err := c.States(pins).Fetch(t.Context(), bad, t.TempDir()); err == nil || !strings.Contains(err.Error(), "sha256") {
			t.Errorf("Fetch with a pin without hashes: %v", err)
		}
	})
}
