package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
	"github.com/turtles-ci/turtles/state/statetest"
)

func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Open {
		path := filepath.Join(t.TempDir(), "state.db")
		return func(opts state.Options) (state.DB, error) {
			return sqlite.Open(context.Background(), path, opts)
		}
	})
}

// versions reads schema_migrations of the file at path.
func versions(t *testing.T, path string) []int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestConcurrentMigrations opens 8 handles on a new file at once: all
// open, and each migration ran exactly once.
func TestConcurrentMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			db, err := sqlite.Open(t.Context(), path, state.Options{})
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	got := versions(t, path)
	if want := sqlite.SchemaVersion(); len(got) != want || got[len(got)-1] != want {
		t.Errorf("schema_migrations = %v, want versions 1..%d once each", got, want)
	}
}

// TestNewerSchema refuses a file migrated by a newer binary.
func TestNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sqlite.Open(t.Context(), path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO schema_migrations (version, applied) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	_, err = sqlite.Open(t.Context(), path, state.Options{})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema = %v, want an error saying it is newer", err)
	}
}

// TestUnavailable opens a file where none can be: the error names the
// path and is ErrUnavailable.
func TestUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "state.db")
	_, err := sqlite.Open(t.Context(), path, state.Options{})
	if !errors.Is(err, state.ErrUnavailable) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open in a missing directory = %v, want ErrUnavailable naming %s", err, path)
	}
}

// BenchmarkReserveFree measures the dedupe a hook and a recorder add per
// task: Reserve before the publish, Free at the final event, from 8
// goroutines on one handle.
func BenchmarkReserveFree(b *testing.B) {
	db, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "state.db"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var n atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Sprintf("octo/hello@%d:unit", n.Add(1))
			if ok, _, err := db.Reserve(b.Context(), key, "tok"); err != nil || !ok {
				b.Errorf("Reserve = %v, %v", ok, err)
				return
			}
			if ok, err := db.Free(b.Context(), key, "tok"); err != nil || !ok {
				b.Errorf("Free = %v, %v", ok, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// TestFlakesMigration opens a file whose test results were recorded
// before flakes were kept apart: the migration finds the flakes in them.
func TestFlakesMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := sqlite.MigrateTo(t.Context(), path, 2); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		task    string
		attempt int
		name    string
		outcome string
	}{
		{"t1", 1, "login", "failed"}, {"t1", 2, "login", "passed"}, // a flake
		{"t1", 1, "db", "passed"}, {"t1", 2, "db", "failed"}, // not one: the failure came last
		{"t2", 1, "login", "failed"}, {"t2", 2, "login", "failed"},
	} {
		if _, err := raw.Exec(`INSERT INTO test_results (task_id, attempt, repo, sha, context, name, outcome, finished)
			VALUES (?, ?, 'octo/hello', 'abc', 'unit', ?, ?, ?)`, r.task, r.attempt, r.name, r.outcome, 1000*r.attempt); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	db, err := sqlite.Open(t.Context(), path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Tests(t.Context(), state.TestFilter{FlakyOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "login" || got[0].RetriedThenPassed != 1 || got[0].Runs != 4 {
		t.Errorf("flaky tests after the migration: %+v, want login: 4 runs, 1 flake", got)
	}
}
