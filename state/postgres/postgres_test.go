package postgres_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/postgres"
	"github.com/turtles-ci/turtles/state/postgres/pgtest"
	"github.com/turtles-ci/turtles/state/statetest"
)

// server is the test binary's PostgreSQL; nil under -short.
var server *pgtest.Server

func TestMain(m *testing.M) {
	flag.Parse()
	// Fuzzing (the coordinator and each worker run TestMain) needs no
	// server.
	fuzzing := flag.Lookup("test.fuzz").Value.String() != "" || flag.Lookup("test.fuzzworker").Value.String() == "true"
	if !testing.Short() && !fuzzing {
		s, err := pgtest.Start(pgtest.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "start PostgreSQL:", err)
			os.Exit(1)
		}
		server = s
	}
	code := m.Run()
	if server != nil {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// newDatabase returns the URL of an empty database for t, or skips t
// under -short.
func newDatabase(t *testing.T) string {
	t.Helper()
	if server == nil {
		t.Skip("-short starts no PostgreSQL")
	}
	return server.NewDatabase(t)
}

func open(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), url, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// template is a database migrated once, which TestContract's databases
// copy (TestConcurrentMigrations migrates empty ones).
var template struct {
	once sync.Once
	name string
	err  error
}

// newMigrated returns the URL of a migrated database for t, or skips t
// under -short.
func newMigrated(t *testing.T) string {
	t.Helper()
	if server == nil {
		t.Skip("-short starts no PostgreSQL")
	}
	template.once.Do(func() {
		ctx := context.Background()
		name, url, err := server.CreateDatabase(ctx, "")
		if err == nil {
			var db *postgres.DB
			if db, err = postgres.Open(ctx, url, state.Options{}); err == nil {
				err = db.Close()
			}
		}
		template.name, template.err = name, err
	})
	if template.err != nil {
		t.Fatalf("make the template database: %v", template.err)
	}
	return server.NewDatabaseFrom(t, template.name)
}

func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Open {
		url := newMigrated(t)
		return func(opts state.Options) (state.DB, error) {
			return postgres.Open(context.Background(), url, opts)
		}
	})
}

// TestConcurrentMigrations opens 16 handles on a new database at once:
// all open, and each migration ran exactly once.
func TestConcurrentMigrations(t *testing.T) {
	url := newDatabase(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			db, err := postgres.Open(t.Context(), url, state.Options{})
			if err == nil {
				_, err = db.FirstDelivery(t.Context(), fmt.Sprint(i))
				db.Close()
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
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if want := postgres.SchemaVersion(); len(versions) != want || versions[len(versions)-1] != want {
		t.Errorf("schema_migrations = %v, want versions 1..%d once each", versions, want)
	}
}

// TestBadURL opens URLs that are wrong or lead nowhere: each is an error
// that says what is wrong and where, and never shows the password.
func TestBadURL(t *testing.T) {
	const secret = "s3cret-Pa55word"
	closed := closedPort(t)
	tests := []struct {
		name        string
		url         string
		want        []string // in the error text
		unavailable bool
	}{
		{"not a URL", "postgres://turtles:" + secret + "@db.example:notaport/turtles", []string{"bad database URL", "invalid port"}, false},
		{"a space in the password", "postgres://turtles:" + secret + " x@db.example/turtles", []string{"bad database URL", "spaces"}, false},
		{"bad keyword form", "host=db.example password='" + secret, []string{"bad database URL", "unterminated"}, false},
		{"nothing listens", fmt.Sprintf("postgres://turtles:%s@127.0.0.1:%d/turtles?connect_timeout=5", secret, closed),
			[]string{fmt.Sprintf("PostgreSQL at 127.0.0.1:%d", closed), `database "turtles"`, "unavailable", "refused"}, true},
		{"keyword form, nothing listens", fmt.Sprintf("host=127.0.0.1 port=%d user=turtles password=%s dbname=x", closed, secret),
			[]string{fmt.Sprintf("PostgreSQL at 127.0.0.1:%d", closed), "unavailable"}, true},
	}
	if server != nil {
		tests = append(tests, struct {
			name        string
			url         string
			want        []string
			unavailable bool
		}{"wrong password", fmt.Sprintf("postgres://%s:%s@%s:%d/postgres", pgtest.Superuser, secret, server.Host, server.Port),
			[]string{fmt.Sprintf("PostgreSQL at %s:%d", server.Host, server.Port), "password authentication failed"}, false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := postgres.Open(t.Context(), tt.url, state.Options{})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, secret) || strings.Contains(msg, "s3cret") {
				t.Errorf("the error shows the password: %s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if got := errors.Is(err, state.ErrUnavailable); got != tt.unavailable {
				t.Errorf("errors.Is(err, ErrUnavailable) = %v, want %v", got, tt.unavailable)
			}
		})
	}
}

// TestServerAway stops the server under an open handle: every call fails
// with ErrUnavailable while it is away, and the same handle works again
// once it is back. It stops the shared server, so it must not run in
// parallel with other tests.
func TestServerAway(t *testing.T) {
	url := newDatabase(t)
	db := open(t, url)
	ctx := t.Context()
	if _, _, err := db.Reserve(ctx, "before", "t"); err != nil {
		t.Fatal(err)
	}
	for _, stop := range []struct {
		name string
		stop func() error
	}{{"clean shutdown", server.Down}, {"crash", server.Kill}} {
		t.Run(stop.name, func(t *testing.T) {
			if err := stop.stop(); err != nil {
				t.Fatal(err)
			}
			calls := map[string]func(ctx context.Context) error{
				"FirstDelivery": func(ctx context.Context) error { _, err := db.FirstDelivery(ctx, "d-"+stop.name); return err },
				"Reserve":       func(ctx context.Context) error { _, _, err := db.Reserve(ctx, "k-"+stop.name, "t"); return err },
				"Live":          func(ctx context.Context) error { _, _, err := db.Live(ctx, "before"); return err },
				"List":          func(ctx context.Context) error { _, err := db.List(ctx, state.Filter{}); return err },
			}
			for name, call := range calls {
				ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := call(ctx)
				cancel()
				if !errors.Is(err, state.ErrUnavailable) {
					t.Errorf("%s with the server away = %v, want ErrUnavailable", name, err)
				}
			}
			if err := server.Up(); err != nil {
				t.Fatal(err)
			}
			for name, call := range calls {
				if err := call(ctx); err != nil {
					t.Errorf("%s once the server is back: %v", name, err)
				}
			}
			if r, live, err := db.Live(ctx, "before"); err != nil || !live || r.Token != "t" {
				t.Errorf("Live(before) = %+v, %v, %v; want the reservation made before", r, live, err)
			}
		})
	}
}

// closedPort returns a TCP port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// BenchmarkReserveFree measures the dedupe a hook and a recorder add per
// task: Reserve before the publish, Free at the final event, from 8
// goroutines on one handle.
func BenchmarkReserveFree(b *testing.B) {
	if server == nil {
		b.Skip("-short starts no PostgreSQL")
	}
	name, url, err := server.CreateDatabase(b.Context(), "")
	if err != nil {
		b.Fatal(err)
	}
	defer server.DropDatabase(context.Background(), name)
	db, err := postgres.Open(b.Context(), url, state.Options{})
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
