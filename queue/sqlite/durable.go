package sqlite

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Durability.
//
// The connection runs with synchronous=NORMAL: in WAL mode a commit is
// safe from a crash of the process but not from a power loss, which may
// drop the last transactions. That is right for claims, acks, heartbeats
// and events: losing one on power loss delivers a task again (at least
// once, as always). It is wrong for what the queue accepts from outside
// (Publish, PublishRaw, Put): the webhook was already
// answered 2xx, and a forge does not redeliver by itself.
//
// Those writes return only once the WAL that holds their commit is on
// disk (fdatasync), which is what synchronous=FULL does at each commit.
// The sync is taken outside SQLite's write lock, so other writers go on
// while it runs, and one sync covers every commit made before it started
// (group commit): the WAL is appended in order, so syncing the file syncs
// every frame in it. A checkpoint that copied the frames back into the
// database first syncs the database (as NORMAL does), so frames a later
// writer overwrote were on disk already.
//
// Measured: FULL on the one connection held the write lock through each
// fsync and took the queue-embedded benchmark from 1,569 to 632 tasks/s on
// a disk with 0.8 ms syncs; see docs/benchmarks.md.

// durable runs write (one autocommitted statement: no BEGIN and COMMIT
// to pay for on the one connection) and returns once its commit is on
// disk. A failed sync returns an error although the row may be
// committed: the caller answers the forge with an error and the forge
// (or a person) redelivers, which queue.Dedupe lets through (a failed
// publish frees its reservation): the task may run twice, never not.
func (db *DB) durable(ctx context.Context, write func(ctx context.Context) error) error {
	if err := write(ctx); err != nil {
		return err
	}
	return db.wal.sync()
}

// walSync syncs the queue's WAL file, one sync for all who ask while one
// runs.
type walSync struct {
	path string
	// syncFile is fdatasync, or a fake in tests.
	syncFile func(f *os.File) error

	mu        sync.Mutex
	cond      *sync.Cond
	requested uint64 // tickets handed out, one per sync asked for
	completed uint64 // every ticket up to this one is covered by a sync done
	running   bool
	err       error // of the last sync
}

func newWALSync(dbPath string) *walSync {
	s := &walSync{path: dbPath + "-wal", syncFile: fdatasync}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// sync returns once a sync that started after the call has finished: its
// error if it failed.
func (s *walSync) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requested++
	ticket := s.requested
	for s.completed < ticket {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		covers := s.requested // everyone who asked so far committed before now
		s.mu.Unlock()
		err := s.syncWAL()
		s.mu.Lock()
		s.running = false
		s.completed, s.err = covers, err
		s.cond.Broadcast()
	}
	return s.err
}

func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

func (s *walSync) syncWAL() error {
	// Opened each time: SQLite may delete and recreate the file, and an
	// open costs microseconds next to the sync.
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("sync queue journal: %w", err)
	}
	defer f.Close()
	if err := s.syncFile(f); err != nil {
		return fmt.Errorf("sync queue journal %s: %w", s.path, err)
	}
	return nil
}
