package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/storetest"
)

func TestDirContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		d, err := store.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestDirCreate(t *testing.T) {
	ctx := context.Background()
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const key = "o/r/sha/ctx/1/log"
	if err := d.Put(ctx, key, bytes.NewReader([]byte("an older attempt's log\n")), "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
	f, err := d.Create(ctx, key, "text/plain; charset=utf-8")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want bytes.Buffer
	for _, chunk := range []string{"", "line one\n", "line two\n", "partial", " line\n"} {
		if _, err := f.WriteString(chunk); err != nil {
			t.Fatal(err)
		}
		want.WriteString(chunk)
		// Readers see the object grow.
		rc, info, err := d.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get while writing: %v", err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("after writing %q Get = %q, want %q", chunk, got, want.String())
		}
		if info.ContentType != "text/plain; charset=utf-8" {
			t.Errorf("created object content type %q, want text/plain; charset=utf-8", info.ContentType)
		}
	}
	if _, err := d.Create(ctx, "../escape", "text/plain"); err == nil {
		t.Errorf("Create(../escape) succeeded, want an error")
	}
	if _, err := d.Create(ctx, ".turtles-store/x", "text/plain"); err == nil {
		t.Errorf("Create(.turtles-store/x) succeeded, want an error")
	}
}

func TestDirLayout(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := store.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "a/b.txt", bytes.NewReader([]byte("hi")), "text/plain"); err != nil {
		t.Fatal(err)
	}
	path, err := d.Path("a/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(d.Root(), "a", "b.txt"); path != want {
		t.Errorf("Path = %q, want %q", path, want)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "hi" {
		t.Errorf("file at Path = %q, %v; want %q", b, err, "hi")
	}
	// The metadata directory is neither listed nor reachable as a key.
	list, err := d.List(ctx, "")
	if err != nil || len(list) != 1 {
		t.Errorf("List() = %+v, %v; want just a/b.txt", list, err)
	}
	for _, key := range []string{".turtles-store/types/a/b.txt", ".turtles-store"} {
		if _, err := d.Stat(ctx, key); err == nil || errors.Is(err, store.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want a bad key error", key, err)
		}
	}
}
