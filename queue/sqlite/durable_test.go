package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
)

// TestDurableWrites: what the queue accepts from outside (a webhook's
// task and inbox message) returns only after a sync of the
// WAL that started once the write was committed, so that a power loss
// cannot take back a webhook already answered 2xx. The fake sync reads
// the table on its own connection, which sees only committed rows: so a
// sync that "covers" the write cannot have run before its commit.
func TestDurableWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts, _ := testOpts()
	db := openT(t, path, opts)
	peek, err := Open(path, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peek.Close()
	ctx := context.Background()
	writes := []struct {
		name  string
		query string // counts the rows the write adds
		write func() error
	}{
		{name: "Publish", query: `SELECT COUNT(*) FROM tasks WHERE key IS NOT NULL`, write: func() error { return db.Publish(ctx, durableTask(1)) }},
		{name: "PublishRaw", query: `SELECT COUNT(*) FROM tasks WHERE key IS NULL`, write: func() error { return db.PublishRaw(ctx, "public", []byte("not a task")) }},
		{name: "Inbox.Put", query: `SELECT COUNT(*) FROM inbox`, write: func() error { return db.Put(ctx, []byte(`{}`)) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			var synced atomic.Int64 // rows the last finished sync saw committed
			synced.Store(-1)
			db.wal.syncFile = func(f *os.File) error {
				if filepath.Base(f.Name()) != "queue.db-wal" {
					t.Errorf("synced %s, want the WAL", f.Name())
				}
				var n int64
				if err := peek.sql.QueryRow(w.query).Scan(&n); err != nil {
					return err
				}
				if err := fdatasync(f); err != nil {
					return err
				}
				synced.Store(n)
				return nil
			}
			if err := w.write(); err != nil {
				t.Fatal(err)
			}
			if got := synced.Load(); got != 1 {
				t.Errorf("%s returned after a sync that saw %d rows of it committed, want a sync after its commit (1 row)", w.name, got)
			}
		})
	}
}

// TestDurableSyncFails: a write whose sync fails is reported as failed,
// so the forge is not told it was accepted.
func TestDurableSyncFails(t *testing.T) {
	opts, _ := testOpts()
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), opts)
	broken := errors.New("disk gone")
	db.wal.syncFile = func(*os.File) error { return broken }
	if err := db.Publish(context.Background(), durableTask(1)); !errors.Is(err, broken) {
		t.Errorf("Publish with a failing sync = %v, want %v", err, broken)
	}
}

// TestGroupSync: concurrent publishes share syncs (never more syncs than
// publishes), and each still returns only after one.
func TestGroupSync(t *testing.T) {
	opts, _ := testOpts()
	db := openT(t, filepath.Join(t.TempDir(), "queue.db"), opts)
	var syncs atomic.Int64
	db.wal.syncFile = func(f *os.File) error {
		syncs.Add(1)
		return fdatasync(f)
	}
	ctx := context.Background()
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = db.Publish(ctx, durableTask(i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publish %d: %v", i, err)
		}
	}
	if s := syncs.Load(); s < 1 || s > n {
		t.Errorf("%d publishes made %d syncs, want 1 to %d", n, s, n)
	}
	t.Logf("%d publishes, %d syncs", n, syncs.Load())
}

func durableTask(i int) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion,
		Kind:    turtles.KindTest,
		Repo:    turtles.Repo{Name: "owner/durable", CloneURL: "file:///dev/null"},
		SHA:     fmt.Sprintf("%040x", i),
		Context: "unit",
		Command: "true",
		Pool:    "public",
		Attempt: 1,
		Created: time.Now(),
	}
}
