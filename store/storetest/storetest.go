// Package storetest is the contract suite every store.Store backend must
// pass. Backends' tests import it; nothing else should.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// Run runs the contract suite. open returns a new, empty store for each
// subtest; it may register cleanups on t.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{name: "RoundTrip", run: testRoundTrip},
		{name: "Replace", run: testReplace},
		{name: "NotExist", run: testNotExist},
		{name: "List", run: testList},
		{name: "Delete", run: testDelete},
		{name: "ContentTypes", run: testContentTypes},
		{name: "BadKeys", run: testBadKeys},
		{name: "Large", run: testLarge},
		{name: "FailedPutKeepsOld", run: testFailedPut},
		{name: "Compose", run: testCompose},
		{name: "PutNew", run: testPutNew},
		{name: "PutNewRace", run: testPutNewRace},
		{name: "ClaimAttempt", run: testClaimAttempt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
	}
}

func put(t *testing.T, s store.Store, key, data, ct string) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader([]byte(data)), ct); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s store.Store, key string) ([]byte, store.Info) {
	t.Helper()
	rc, info, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b, info
}

func testRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	const key = "owner/repo/0123/ctx/1/log"
	put(t, s, key, "hello\nworld\n", "text/plain; charset=utf-8")
	b, info := get(t, s, key)
	if string(b) != "hello\nworld\n" {
		t.Errorf("Get(%q) = %q, want %q", key, b, "hello\nworld\n")
	}
	if info.Key != key || info.Size != 12 {
		t.Errorf("Get(%q) info = %+v, want key %q and size 12", key, info, key)
	}
	if info.Modified.IsZero() {
		t.Errorf("Get(%q) info has no modification time", key)
	}
	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if diff := cmp.Diff(info, st); diff != "" {
		t.Errorf("Stat and Get infos differ (-get +stat):\n%s", diff)
	}
	put(t, s, "empty", "", "text/plain")
	if b, info := get(t, s, "empty"); len(b) != 0 || info.Size != 0 {
		t.Errorf("Get(empty) = %q, size %d; want nothing", b, info.Size)
	}
}

func testReplace(t *testing.T, s store.Store) {
	put(t, s, "a/b", "first, and longer", "text/plain")
	put(t, s, "a/b", "second", "application/json")
	b, info := get(t, s, "a/b")
	if string(b) != "second" || info.Size != 6 || info.ContentType != "application/json" {
		t.Errorf("after replace Get = %q, %+v; want %q, size 6, application/json", b, info, "second")
	}
}

func testNotExist(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, "dir/file", "x", "text/plain")
	for _, key := range []string{"missing", "dir/missing", "dir/file/below", "missing/dir/file"} {
		if _, _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("Get(%q) error = %v, want store.ErrNotExist", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("Stat(%q) error = %v, want store.ErrNotExist", key, err)
		}
	}
	list, err := s.List(ctx, "missing/")
	if err != nil || len(list) != 0 {
		t.Errorf("List(missing/) = %v, %v; want nothing", list, err)
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Created out of order, with names whose sort order differs from a
	// directory walk's ("a.b" sorts before "a/").
	keys := []string{"o/r/s/c/2/log", "o/r/s/c/1/result.json", "o/r/s/c/1/log", "o/r/s/c/1/artifacts/x/y.txt",
		"o/r/s/c.b/1/log", "o/r/s/d/1/log", "o/r2/s/c/1/log", "p/q"}
	for i, k := range keys {
		put(t, s, k, fmt.Sprint(i), "text/plain")
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{prefix: "o/r/s/c/1/", want: []string{"o/r/s/c/1/artifacts/x/y.txt", "o/r/s/c/1/log", "o/r/s/c/1/result.json"}},
		{prefix: "o/r/s/c", want: []string{"o/r/s/c.b/1/log", "o/r/s/c/1/artifacts/x/y.txt", "o/r/s/c/1/log", "o/r/s/c/1/result.json", "o/r/s/c/2/log"}},
		{prefix: "o/r/s/c/1/artifacts/", want: []string{"o/r/s/c/1/artifacts/x/y.txt"}},
		{prefix: "o/r", want: []string{"o/r/s/c.b/1/log", "o/r/s/c/1/artifacts/x/y.txt", "o/r/s/c/1/log", "o/r/s/c/1/result.json", "o/r/s/c/2/log", "o/r/s/d/1/log", "o/r2/s/c/1/log"}},
		{prefix: "p/q", want: []string{"p/q"}},
		{prefix: "", want: []string{"o/r/s/c.b/1/log", "o/r/s/c/1/artifacts/x/y.txt", "o/r/s/c/1/log", "o/r/s/c/1/result.json", "o/r/s/c/2/log", "o/r/s/d/1/log", "o/r2/s/c/1/log", "p/q"}},
		{prefix: "z", want: nil},
	}
	for _, tt := range tests {
		list, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tt.prefix, err)
			continue
		}
		var got []string
		for _, info := range list {
			got = append(got, info.Key)
			if info.Size != int64(len(fmt.Sprint(indexOf(keys, info.Key)))) || info.ContentType != "text/plain" {
				t.Errorf("List(%q) info %+v: wrong size or content type", tt.prefix, info)
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("List(%q) keys (-want +got):\n%s", tt.prefix, diff)
		}
	}
}

func indexOf(keys []string, k string) int {
	for i, x := range keys {
		if x == k {
			return i
		}
	}
	return -1
}

func testDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, "a/b/c", "x", "text/plain")
	put(t, s, "a/b/d", "y", "text/plain")
	for i := 0; i < 2; i++ {
		if err := s.Delete(ctx, "a/b/c"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := s.Stat(ctx, "a/b/c"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Stat after Delete = %v, want store.ErrNotExist", err)
	}
	for _, key := range []string{"never/was", "a", "a/b"} {
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) of a missing key: %v", key, err)
		}
	}
	list, err := s.List(ctx, "a/")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Key != "a/b/d" {
		t.Errorf("List(a/) after Delete = %+v, want only a/b/d", list)
	}
	// A deleted key can be written again, with a new type.
	put(t, s, "a/b/c", "z", "application/json")
	if b, info := get(t, s, "a/b/c"); string(b) != "z" || info.ContentType != "application/json" {
		t.Errorf("Get after re-Put = %q, %+v", b, info)
	}
}

func testContentTypes(t *testing.T, s store.Store) {
	ctx := context.Background()
	types := map[string]string{
		"x/log":             "text/plain; charset=utf-8",
		"x/result.json":     "application/json",
		"x/artifacts/a.bin": "application/octet-stream",
		"x/artifacts/r.txt": "text/html", // not what the name suggests
	}
	for k, ct := range types {
		put(t, s, k, "data", ct)
	}
	for k, ct := range types {
		if _, info := get(t, s, k); info.ContentType != ct {
			t.Errorf("Get(%q) content type %q, want %q", k, info.ContentType, ct)
		}
		if info, err := s.Stat(ctx, k); err != nil || info.ContentType != ct {
			t.Errorf("Stat(%q) = %+v, %v; want content type %q", k, info, err, ct)
		}
	}
	list, err := s.List(ctx, "x/")
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range list {
		if info.ContentType != types[info.Key] {
			t.Errorf("List: %q content type %q, want %q", info.Key, info.ContentType, types[info.Key])
		}
	}
}

func testBadKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, key := range []string{"", "/abs", "../up", "a/../../up", "a//b", "a/./b", "a/", `a\b`, "a/.."} {
		if err := s.Put(ctx, key, bytes.NewReader([]byte("x")), "text/plain"); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", key)
		}
		if _, _, err := s.Get(ctx, key); err == nil {
			t.Errorf("Get(%q) succeeded, want an error", key)
		}
		if _, err := s.Stat(ctx, key); err == nil {
			t.Errorf("Stat(%q) succeeded, want an error", key)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded, want an error", key)
		}
	}
}

func testLarge(t *testing.T, s store.Store) {
	data := make([]byte, 12<<20+7)
	rand.Read(data)
	if err := s.Put(context.Background(), "big/object", bytes.NewReader(data), "application/octet-stream"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, info := get(t, s, "big/object")
	if info.Size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Errorf("Get returned %d bytes (info size %d), want the %d bytes put", len(got), info.Size, len(data))
	}
}

// failingReader returns some data, then an error.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("reader broke")
	}
	n := min(len(p), f.n)
	for i := range n {
		p[i] = 'x'
	}
	f.n -= n
	return n, nil
}

func testFailedPut(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, "k/old", "old content", "text/plain")
	if err := s.Put(ctx, "k/old", &failingReader{n: 100}, "application/json"); err == nil {
		t.Fatalf("Put from a failing reader succeeded")
	}
	if b, info := get(t, s, "k/old"); string(b) != "old content" || info.ContentType != "text/plain" {
		t.Errorf("after a failed Put, Get = %q, %+v; want the old object", b, info)
	}
	if err := s.Put(ctx, "k/new", &failingReader{n: 100}, "text/plain"); err == nil {
		t.Fatalf("Put from a failing reader succeeded")
	}
	if _, err := s.Stat(ctx, "k/new"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("after a failed Put of a new key, Stat = %v, want store.ErrNotExist", err)
	}
}

// testCompose checks store.Composer, for stores that have it: copied
// ranges and uploaded data in order, and a failed compose that leaves the
// old object.
func testCompose(t *testing.T, s store.Store) {
	c, ok := s.(store.Composer)
	if !ok {
		t.Skip("not a store.Composer")
	}
	ctx := context.Background()
	src := make([]byte, store.MinPartSize+1<<20)
	rand.Read(src)
	if err := s.Put(ctx, "c/src", bytes.NewReader(src), "text/plain"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, store.MinPartSize+3)
	rand.Read(data)
	parts := []store.Part{
		{Key: "c/src", Offset: 1 << 20, Size: store.MinPartSize},
		{Data: bytes.NewReader(data), Size: int64(len(data))},
		{Key: "c/src", Offset: 0, Size: 10},
	}
	if err := c.Compose(ctx, "c/dst", parts, "text/plain; charset=utf-8"); err != nil {
		t.Fatalf("Compose: %v", err)
	}
	want := append(append(append([]byte(nil), src[1<<20:]...), data...), src[:10]...)
	got, info := get(t, s, "c/dst")
	if !bytes.Equal(got, want) {
		t.Errorf("composed object: %d bytes, want %d (equal: %v)", len(got), len(want), bytes.Equal(got, want))
	}
	if info.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("composed content type %q", info.ContentType)
	}
	// A missing source fails the whole compose and keeps the old object.
	bad := []store.Part{
		{Data: bytes.NewReader(data), Size: int64(len(data))},
		{Key: "c/missing", Offset: 0, Size: 10},
	}
	if err := c.Compose(ctx, "c/dst", bad, "text/plain"); err == nil {
		t.Errorf("Compose from a missing object succeeded")
	}
	if got, _ := get(t, s, "c/dst"); !bytes.Equal(got, want) {
		t.Errorf("after a failed Compose the object changed")
	}
	// Parts under the minimum size are refused, but for the last.
	small := []store.Part{{Key: "c/src", Size: 10}, {Key: "c/src", Size: 10}}
	if err := c.Compose(ctx, "c/small", small, "text/plain"); err == nil {
		t.Errorf("Compose with a small first part succeeded")
	}
}

// testPutNew: PutNew creates a key once and never replaces an object,
// whether PutNew or Put made it.
func testPutNew(t *testing.T, s store.Store) {
	ctx := context.Background()
	const key = "owner/repo/0123/ctx/1/claim"
	if err := s.PutNew(ctx, key, bytes.NewReader([]byte("first")), "application/json"); err != nil {
		t.Fatalf("PutNew(%q) of a new key: %v", key, err)
	}
	err := s.PutNew(ctx, key, bytes.NewReader([]byte("second")), "text/plain")
	if !errors.Is(err, store.ErrExist) {
		t.Errorf("PutNew(%q) again = %v, want ErrExist", key, err)
	}
	b, info := get(t, s, key)
	if string(b) != "first" || info.ContentType != "application/json" {
		t.Errorf("after a refused PutNew, %q = %q (%s), want %q (application/json)", key, b, info.ContentType, "first")
	}
	const log = "owner/repo/0123/ctx/1/log"
	put(t, s, log, "the first run's log", "text/plain")
	if err := s.PutNew(ctx, log, bytes.NewReader([]byte("overwritten")), "text/plain"); !errors.Is(err, store.ErrExist) {
		t.Errorf("PutNew(%q) over a Put object = %v, want ErrExist", log, err)
	}
	if b, _ := get(t, s, log); string(b) != "the first run's log" {
		t.Errorf("%q = %q after a refused PutNew, want it unchanged", log, b)
	}
}

// testPutNewRace: of concurrent PutNews of one key exactly one wins, and
// the object holds the winner's bytes.
func testPutNewRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	const key, n = "owner/repo/0123/ctx/2/claim", 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.PutNew(ctx, key, bytes.NewReader([]byte(fmt.Sprint("claimer ", i))), "text/plain")
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("PutNew by claimers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExist):
			t.Errorf("PutNew by claimer %d = %v, want nil or ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no PutNew succeeded: %v", errs)
	}
	if b, _ := get(t, s, key); string(b) != fmt.Sprint("claimer ", winner) {
		t.Errorf("%q = %q, want the winner's %q", key, b, fmt.Sprint("claimer ", winner))
	}
}

// testClaimAttempt: a task published again after it finished starts at
// attempt 1; it must run under a prefix of its own, and concurrent
// claimers of one task get different numbers.
func testClaimAttempt(t *testing.T, s store.Store) {
	ctx := context.Background()
	task := turtles.Task{Repo: turtles.Repo{Name: "owner/repo"}, SHA: "0123456789abcdef0123456789abcdef01234567", Context: "unit/x", Attempt: 1}
	// Attempt 1 as stored before markers existed: a log and no claim.
	old := task
	put(t, s, store.AttemptPrefix(old)+store.LogName, "the first run's log", "text/plain")

	var got []int
	for range 2 {
		c, err := store.ClaimAttempt(ctx, s, task, "bot-a", time.Now())
		if err != nil {
			t.Fatalf("ClaimAttempt: %v", err)
		}
		got = append(got, c.Attempt)
	}
	if diff := cmp.Diff([]int{2, 3}, got); diff != "" {
		t.Errorf("attempts claimed (-want +got):\n%s", diff)
	}
	if b, _ := get(t, s, store.AttemptPrefix(old)+store.LogName); string(b) != "the first run's log" {
		t.Errorf("attempt 1's log = %q, want it intact", b)
	}

	const n = 4
	claimed := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := store.ClaimAttempt(ctx, s, task, fmt.Sprint("bot-", i), time.Now())
			if err != nil {
				t.Errorf("concurrent ClaimAttempt %d: %v", i, err)
			}
			claimed[i] = c.Attempt
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for _, a := range claimed {
		if seen[a] || a < 4 {
			t.Errorf("concurrent claims got attempts %v, want 4 distinct numbers from 4 on", claimed)
			break
		}
		seen[a] = true
	}
}
