package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/store"
)

func TestChunkKeys(t *testing.T) {
	tests := []struct{ got, want string }{
		{store.ChunkKey("o/r/s/c/1/log", 1), "o/r/s/c/1/log.chunks/000001"},
		{store.ChunkKey("log", 123456), "log.chunks/123456"},
		{store.ChunkIndexKey("o/r/s/c/1/log"), "o/r/s/c/1/log.chunks/index.json"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestChunks writes a log in chunks as a bot does, reads it back as the
// recorder does for a bot that died, and deletes the chunks.
func TestChunks(t *testing.T) {
	ctx := context.Background()
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const key = "o/r/" + "0123456789012345678901234567890123456789" + "/unit/1/log"
	if _, err := store.GetChunkIndex(ctx, st, key); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("GetChunkIndex of a log without chunks: %v, want ErrNotExist", err)
	}
	var idx store.ChunkIndex
	for i, c := range []string{"one\n", "two\n", "three\n"} {
		if err := st.Put(ctx, store.ChunkKey(key, i+1), strings.NewReader(c), "text/plain"); err != nil {
			t.Fatal(err)
		}
		idx.Offsets = append(idx.Offsets, idx.Size)
		idx.Size += int64(len(c))
		if err := store.PutChunkIndex(ctx, st, key, idx); err != nil {
			t.Fatal(err)
		}
	}
	got, err := store.GetChunkIndex(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(idx, got); diff != "" {
		t.Errorf("index (-put +got):\n%s", diff)
	}
	var buf bytes.Buffer
	keys, err := store.CopyChunks(ctx, st, key, got, &buf)
	if err != nil || buf.String() != "one\ntwo\nthree\n" || len(keys) != 3 {
		t.Errorf("CopyChunks = %q, %v, %v; want the three chunks in order", buf.String(), keys, err)
	}
	if err := store.DeleteChunks(ctx, st, key, got); err != nil {
		t.Fatal(err)
	}
	if left, err := st.List(ctx, key+store.ChunkDir); err != nil || len(left) != 0 {
		t.Errorf("after DeleteChunks: %v, %v; want nothing", left, err)
	}
}
