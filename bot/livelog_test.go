package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/store/s3"
	"github.com/turtles-ci/turtles/store/s3/s3test"
	"github.com/turtles-ci/turtles/web/logpage"
)

// putOnly hides the Dir's Create: a store such as S3 that can only Put.
type putOnly struct{ store.Store }

func readKey(st store.Store, key string) (string, error) {
	rc, _, err := st.Get(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// readChunks reads a live log as the viewer does: the index, then the
// chunks it names.
func readChunks(st store.Store, key string) (string, error) {
	data, err := readKey(st, store.ChunkIndexKey(key))
	if err != nil {
		return "", err
	}
	var idx store.ChunkIndex
	if err := json.Unmarshal([]byte(data), &idx); err != nil {
		return "", err
	}
	var b strings.Builder
	for i, off := range idx.Offsets {
		if int64(b.Len()) != off {
			return "", errors.New("chunks do not follow each other")
		}
		c, err := readKey(st, store.ChunkKey(key, i+1))
		if err != nil {
			return "", err
		}
		b.WriteString(c)
	}
	return b.String(), nil
}

// TestLiveLogChunks runs the chunk scheme on a directory that hides its
// Create, and on S3 (gofakes3 through store/s3).
func TestLiveLogChunks(t *testing.T) {
	old := chunkEvery
	chunkEvery = 20 * time.Millisecond
	t.Cleanup(func() { chunkEvery = old })
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := s3test.Fake()
	defer srv.Close()
	bucket, err := srv.CreateBucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s3st, err := s3.New(srv.Config(bucket, "ci"))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []store.Store{putOnly{d}, s3st} {
		t.Run(fmt.Sprintf("%T", st), func(t *testing.T) { testLiveLogChunks(t, st) })
	}
}

func testLiveLogChunks(t *testing.T, st store.Store) {
	const key = "o/r/s/c/1/log"
	l, err := newLiveLog(st, key, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if page, err := readKey(st, "o/r/s/c/1/"+logpage.Name); err != nil || !strings.Contains(page, "turtles log viewer") {
		t.Errorf("log page not stored at the start: %v", err)
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := readChunks(st, key)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("live chunks hold %q, want %q", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	io.WriteString(l, "first\n")
	waitFor("first\n")
	io.WriteString(l, "second\nok 1 - a test\n")
	waitFor("first\nsecond\nok 1 - a test\n")
	if _, err := st.Stat(context.Background(), key); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("the whole log exists before the end: %v", err)
	}
	io.WriteString(l, "not ok 2 - another\n")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRead(t, st, key), "first\nsecond\nok 1 - a test\nnot ok 2 - another\n"; got != want {
		t.Errorf("final log %q, want %q", got, want)
	}
	if left, _ := st.List(context.Background(), key+store.ChunkDir); len(left) != 0 {
		t.Errorf("chunks left after Close: %v", left)
	}
	info, err := st.Stat(context.Background(), key)
	if err != nil || info.ContentType != logType {
		t.Errorf("log info %+v, %v; want content type %q", info, err, logType)
	}
	tests := l.tests.results()
	if len(tests) != 2 || tests[1].Name != "another" || tests[1].Outcome != "failed" || tests[1].Line != 4 {
		t.Errorf("tests from the log = %+v, want a and another (failed, line 4)", tests)
	}
}

// TestLiveLogScrubs checks the wiring: whatever the scrubber masks never
// reaches a chunk or the final log, however the writes split it.
func TestLiveLogScrubs(t *testing.T) {
	old := chunkEvery
	chunkEvery = 10 * time.Millisecond
	t.Cleanup(func() { chunkEvery = old })
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
	l.setSecrets([]string{"s3cr3t-value"})
	io.WriteString(l, "token: s3cr3")
	l.flush() // a chunk goes out between the halves, now
	if got, _ := readChunks(st, key); got != "token: " {
		t.Errorf("chunks hold %q between the halves of a secret, want %q: no part of it", got, "token: ")
	}
	io.WriteString(l, "t-value done\n")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, st, key); got != "token: *** done\n" {
		t.Errorf("final log %q, want the secret masked", got)
	}
}

func mustRead(t *testing.T, st store.Store, key string) string {
	t.Helper()
	s, err := readKey(st, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
