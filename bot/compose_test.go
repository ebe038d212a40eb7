package bot

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/s3"
	"github.com/turtles-ci/turtles/store/s3/s3test"
)

const mib = 1 << 20

func TestComposeParts(t *testing.T) {
	const min = store.MinPartSize
	type part struct {
		chunk     int // 0: uploaded from the local copy
		off, size int64
	}
	tests := []struct {
		name    string
		offsets []int64 // chunk starts
		chunked int64   // size of the chunks together
		size    int64
		want    []part
	}{
		{name: "no chunks", size: 3 * mib, want: []part{{0, 0, 3 * mib}}},
		{name: "small log in chunks", offsets: []int64{0, 100}, chunked: 200, size: 300, want: []part{{0, 0, 300}}},
		{name: "fast task: one big chunk and a big tail", offsets: []int64{0}, chunked: 80 * mib, size: 100 * mib,
			want: []part{{1, 0, 80 * mib}, {0, 80 * mib, 20 * mib}}}, // under 16+5 MiB: one part
		{name: "all in big chunks", offsets: []int64{0, 60 * mib}, chunked: 100 * mib, size: 100 * mib,
			want: []part{{1, 0, 60 * mib}, {2, 0, 40 * mib}}},
		{name: "small last chunk is copied", offsets: []int64{0, 60 * mib}, chunked: 60*mib + 10, size: 60*mib + 10,
			want: []part{{1, 0, 60 * mib}, {2, 0, 10}}},
		{name: "slow start, then a burst", offsets: []int64{0, 100, 300}, chunked: 300 + 50*mib, size: 300 + 50*mib,
			want: []part{{0, 0, min}, {3, min - 300, 50*mib + 300 - min}}},
		{name: "burst ends in a small remainder", offsets: []int64{0, 100, 300}, chunked: 300 + 8*mib, size: 300 + 8*mib + 5,
			want: []part{{0, 0, 300 + 8*mib + 5}}},
		{name: "small chunks, then a big tail", offsets: []int64{0, 1 * mib, 2 * mib}, chunked: 3 * mib, size: 40 * mib,
			want: []part{{0, 0, 16 * mib}, {0, 16 * mib, 16 * mib}, {0, 32 * mib, 8 * mib}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := store.ChunkIndex{Offsets: tt.offsets, Size: tt.chunked}
			parts := composeParts("k", idx, tt.size, bytes.NewReader(nil))
			var got []part
			var pos int64
			for i, p := range parts {
				if i < len(parts)-1 && p.Size < min {
					t.Errorf("part %d has %d bytes, under the minimum", i+1, p.Size)
				}
				g := part{off: pos, size: p.Size}
				if p.Key != "" {
					n := 0
					for i := range tt.offsets {
						if store.ChunkKey("k", i+1) == p.Key {
							n = i + 1
						}
					}
					if n == 0 {
						t.Fatalf("part %d copies %q, not a chunk", i+1, p.Key)
					}
					g.chunk, g.off = n, p.Offset
					if tt.offsets[n-1]+p.Offset != pos {
						t.Errorf("part %d copies from %d, want %d", i+1, tt.offsets[n-1]+p.Offset, pos)
					}
				} else if sr, ok := p.Data.(*io.SectionReader); !ok || sr.Size() != p.Size {
					t.Errorf("part %d: data of the wrong size", i+1)
				}
				pos += p.Size
				got = append(got, g)
			}
			if pos != tt.size {
				t.Errorf("parts add up to %d bytes, want %d", pos, tt.size)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parts %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("part %d = %+v, want %+v", i+1, got[i], tt.want[i])
				}
			}
		})
	}
}

// countingStore counts the bytes put under one key, and passes Compose on.
type countingStore struct {
	store.Store
	key string

	mu       sync.Mutex
	put      int64 // bytes Put under key
	composed int   // Compose calls for key
	uploaded int64 // bytes of Data parts
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, ct string) error {
	if key == c.key {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.put += int64(len(b))
		c.mu.Unlock()
		r = bytes.NewReader(b)
	}
	return c.Store.Put(ctx, key, r, ct)
}

func (c *countingStore) Compose(ctx context.Context, key string, parts []store.Part, ct string) error {
	c.mu.Lock()
	c.composed++
	for _, p := range parts {
		if p.Key == "" {
			c.uploaded += p.Size
		}
	}
	c.mu.Unlock()
	return c.Store.(store.Composer).Compose(ctx, key, parts, ct)
}

// TestLiveLogCompose streams a log of big bursts to versitygw and checks
// that the final log is built from the chunks: the bytes already uploaded
// are not uploaded again.
func TestLiveLogCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw")
	}
	old, oldMax := chunkEvery, maxChunk
	chunkEvery = time.Hour // the test flushes by hand
	maxChunk = 12 * mib    // the burst in one chunk
	t.Cleanup(func() { chunkEvery, maxChunk = old, oldMax })
	ctx := context.Background()
	srv, err := s3test.Versity(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bucket, err := srv.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s3st, err := s3.New(srv.Config(bucket, "ci"))
	if err != nil {
		t.Fatal(err)
	}
	const key = "o/r/s/c/1/log"
	st := &countingStore{Store: s3st, key: key}
	l, err := newLiveLog(st, key, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	write := func(n int) {
		b := make([]byte, n)
		rand.Read(b)
		l.Write(b)
		want.Write(b)
	}
	write(100) // a slow start
	l.flush()
	write(12 * mib) // a burst
	l.flush()
	write(13 * mib) // the tail, more than a chunk: left to Close
	l.flushEnd()
	if got, err := readChunks(st, key); err != nil || len(got) != 12*mib+100 {
		t.Fatalf("live chunks hold %d bytes, %v; want %d", len(got), err, 12*mib+100)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := readKey(st, key)
	if err != nil || got != want.String() {
		t.Fatalf("final log: %d bytes, %v; want %d bytes as written", len(got), err, want.Len())
	}
	if st.composed != 1 || st.put != 0 {
		t.Errorf("final log: %d composes, %d bytes put; want 1 compose, 0 bytes put", st.composed, st.put)
	}
	// 5 MiB (100 bytes and the burst's start) and the 13 MiB tail.
	if st.uploaded != store.MinPartSize+13*mib {
		t.Errorf("compose uploaded %d bytes, want %d", st.uploaded, store.MinPartSize+13*mib)
	}
	if left, _ := st.List(ctx, key+store.ChunkDir); len(left) != 0 {
		t.Errorf("chunks left after Close: %v", left)
	}
}

// TestLiveLogComposeFallback: a store whose Compose fails (gofakes3 has no
// UploadPartCopy) still gets the whole log, put from the local copy.
func TestLiveLogComposeFallback(t *testing.T) {
	old := chunkEvery
	chunkEvery = time.Hour
	t.Cleanup(func() { chunkEvery = old })
	srv := s3test.Fake()
	defer srv.Close()
	ctx := context.Background()
	bucket, err := srv.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s3st, err := s3.New(srv.Config(bucket, "ci"))
	if err != nil {
		t.Fatal(err)
	}
	const key = "o/r/s/c/1/log"
	l, err := newLiveLog(s3st, key, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", store.MinPartSize+10)
	io.WriteString(l, big)
	l.flush()
	io.WriteString(l, "end\n")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s3st, key); got != big+"end\n" {
		t.Errorf("final log: %d bytes, want %d", len(got), len(big)+4)
	}
}

// TestLiveLogInPlace: on a directory store the log is written into its
// object, once, and readers see it grow; no local copy is made.
func TestLiveLogInPlace(t *testing.T) {
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const key = "o/r/s/c/1/log"
	local := filepath.Join(t.TempDir(), "log")
	l, err := newLiveLog(d, key, local, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(l, "first\n")
	if got := mustRead(t, d, key); got != "first\n" {
		t.Errorf("live log %q, want %q at once", got, "first\n")
	}
	io.WriteString(l, "second\n")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, d, key); got != "first\nsecond\n" {
		t.Errorf("final log %q", got)
	}
	if info, err := d.Stat(context.Background(), key); err != nil || info.ContentType != logType {
		t.Errorf("log info %+v, %v; want content type %q", info, err, logType)
	}
	if _, err := os.Stat(local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a local copy was made: %v", err)
	}
}

// TestLiveLogFinalOnly: with streaming off nothing is stored before Close.
func TestLiveLogFinalOnly(t *testing.T) {
	old := chunkEvery
	chunkEvery = 5 * time.Millisecond
	t.Cleanup(func() { chunkEvery = old })
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const key = "o/r/s/c/1/log"
	l, err := newLiveLog(FinalLogOnly(d), key, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(l, "first\n")
	// The barrier: a streaming log uploads what it holds before flushEnd
	// returns, so a chunk, if any were made, is there now.
	l.flushEnd()
	if list, _ := d.List(context.Background(), key); len(list) != 0 {
		t.Errorf("stored before Close: %+v", list)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, d, key); got != "first\n" {
		t.Errorf("final log %q", got)
	}
}

// TestLiveLogChunkCap: a chunk holds at most maxChunk bytes, so a task
// that prints faster is shown live at that pace; the final log has all.
func TestLiveLogChunkCap(t *testing.T) {
	old, oldMax := chunkEvery, maxChunk
	chunkEvery, maxChunk = time.Hour, 10
	t.Cleanup(func() { chunkEvery, maxChunk = old, oldMax })
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := putOnly{d}
	const key = "o/r/s/c/1/log"
	l, err := newLiveLog(st, key, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	const text = "0123456789abcdefghijklmnopqrstuvwxyz\n"
	io.WriteString(l, text)
	for _, want := range []string{text[:10], text[:20]} {
		l.flush()
		if got, _ := readChunks(st, key); got != want {
			t.Errorf("live log %q, want %q", got, want)
		}
	}
	l.flushEnd() // 17 bytes left: more than a chunk, left to Close
	if got, _ := readChunks(st, key); got != text[:20] {
		t.Errorf("after flushEnd: live log %q, want %q", got, text[:20])
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, st, key); got != text {
		t.Errorf("final log %q, want %q", got, text)
	}
}
