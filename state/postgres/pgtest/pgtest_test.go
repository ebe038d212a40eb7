package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestServer starts a server, keeps a row across a restart and a crash,
// and checks that it runs as someone other than root.
func TestServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short starts no PostgreSQL")
	}
	s, err := Start(Options{Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after NewDatabase's cleanup
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
			t.Errorf("Stop left %s behind (%v)", s.Dir, err)
		}
	})
	ctx := t.Context()
	url := s.NewDatabase(t)
	exec := func(q string) {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	count := func() int {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	exec(`CREATE TABLE t (x INTEGER)`)
	exec(`INSERT INTO t VALUES (1)`)

	info, err := os.Stat(filepath.Join(s.Dir, "data", "PG_VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := info.Sys().(*syscall.Stat_t).Uid; uid == 0 {
		t.Errorf("the data directory belongs to root; the server must run unprivileged")
	}

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO t VALUES (2)`)
	// A connection open across the crash: its backend dies with the
	// server, it does not answer once more.
	held, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	kids := childrenOf(s.cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("found no children of the postmaster")
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range kids {
		if _, state, ok := procStat(fmt.Sprintf("/proc/%d/stat", pid)); ok && state != 'Z' {
			t.Errorf("process %d of the server outlived its crash", pid)
		}
	}
	if _, err := held.Exec(ctx, `INSERT INTO t VALUES (3)`); err == nil {
		t.Error("a connection made before the crash still works after it")
	}
	if _, err := pgx.Connect(ctx, url); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Errorf("rows after a restart and a crash = %d, want 2", n)
	}
}
