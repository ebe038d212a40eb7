package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The layout of a live log in chunks, for stores whose objects are not
// local files (S3). While a task runs, KEY.chunks/NNNNNN (ChunkKey) holds
// the log's bytes from Offsets[N-1] on, and KEY.chunks/index.json
// (ChunkIndexKey, a ChunkIndex) is rewritten after each chunk. At the end
// KEY is stored whole, then the index and the chunks are deleted
// (DeleteChunks), the index first. A reader polls the index; when it is
// gone, KEY is complete. Bots write this layout, the recorder ends the
// logs of bots that died in it, and the static log page (web/logpage)
// follows it in a browser.
const (
	// ChunkDir is what a log's key is followed by to name its chunks.
	ChunkDir = ".chunks/"
	// chunkIndexName is the index's name under ChunkDir.
	chunkIndexName = "index.json"
)

// ChunkIndex is the content of a live log's index.
type ChunkIndex struct {
	// Offsets[i] is where chunk i+1 starts in the log.
	Offsets []int64 `json:"offsets"`
	// Size is the log size the chunks add up to.
	Size int64 `json:"size"`
}

// ChunkKey is the key of chunk n (from 1) of the log at key.
func ChunkKey(key string, n int) string { return fmt.Sprintf("%s%s%06d", key, ChunkDir, n) }

// ChunkIndexKey is the key of the index of the log at key.
func ChunkIndexKey(key string) string { return key + ChunkDir + chunkIndexName }

// PutChunkIndex stores idx as the index of the log at key. Put its chunks
// first: a reader takes every chunk the index names to be there.
func PutChunkIndex(ctx context.Context, st Store, key string, idx ChunkIndex) error {
	data, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode log index: %w", err)
	}
	return st.Put(ctx, ChunkIndexKey(key), bytes.NewReader(data), "application/json")
}

// GetChunkIndex reads the index of the log at key. It returns ErrNotExist
// (wrapped) when there is none: the log is complete, or was never in
// chunks.
func GetChunkIndex(ctx context.Context, st Store, key string) (ChunkIndex, error) {
	var idx ChunkIndex
	rc, _, err := st.Get(ctx, ChunkIndexKey(key))
	if err != nil {
		return idx, fmt.Errorf("read log index of %s: %w", key, err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(&idx); err != nil {
		return idx, fmt.Errorf("read log index of %s: %w", key, err)
	}
	return idx, nil
}

// CopyChunks copies the chunks idx names of the log at key into w, in
// order, and returns their keys.
func CopyChunks(ctx context.Context, st Store, key string, idx ChunkIndex, w io.Writer) ([]string, error) {
	var keys []string
	for n := 1; n <= len(idx.Offsets); n++ {
		c := ChunkKey(key, n)
		rc, _, err := st.Get(ctx, c)
		if err != nil {
			return keys, fmt.Errorf("read log chunk %s: %w", c, err)
		}
		_, err = io.Copy(w, rc)
		rc.Close()
		if err != nil {
			return keys, fmt.Errorf("read log chunk %s: %w", c, err)
		}
		keys = append(keys, c)
	}
	return keys, nil
}

// DeleteChunks deletes the index of the log at key, then the chunks it
// named: a reader that finds the index gone reads the whole log. Store
// the whole log first.
func DeleteChunks(ctx context.Context, st Store, key string, idx ChunkIndex) error {
	errs := []error{st.Delete(ctx, ChunkIndexKey(key))}
	for n := 1; n <= len(idx.Offsets); n++ {
		errs = append(errs, st.Delete(ctx, ChunkKey(key, n)))
	}
	return errors.Join(errs...)
}
