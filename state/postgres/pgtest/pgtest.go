// Package pgtest starts a private PostgreSQL 15 server for tests and
// benchmarks, from Debian's packages (postgresql-15): its own data
// directory in a temporary directory, its own port on 127.0.0.1 and its
// own unix socket directory, so that it never touches (or depends on) a
// system-wide server. Starting one costs about a second, so a test binary
// starts one in TestMain and gives each test a fresh database of it
// (NewDatabase).
//
// PostgreSQL refuses to run as root. When the tests run as root, the
// server runs as the unprivileged user "nobody": the harness makes the
// data directory that user's and starts initdb and postgres with its
// credentials (no setuid helper: the kernel switches user at exec). When
// the tests run as anyone else, the server runs as that user.
//
// The server trusts connections on its unix socket and asks for a
// password (SCRAM) on TCP, so that URLs carry a password as real ones do.
// It runs with fsync off: a crash of the server (Kill) loses nothing, a
// crash of the machine is no concern of a test.
//
// Only tests and bench/ import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binDir holds the Debian package's server programs.
const binDir = "/usr/lib/postgresql/15/bin"

// Superuser is the name of the server's superuser.
const Superuser = "turtles"

// Options configure a server. Zero values get defaults.
type Options struct {
	// Log, if set, gets progress lines ("postgres started in 900ms").
	Log func(format string, args ...any)
}

// Server is a private PostgreSQL server.
type Server struct {
	// Dir holds the data directory, the socket directory and the log;
	// removed by Stop.
	Dir string
	// Host and Port are where the server listens for TCP.
	Host string
	Port int
	// Password is the superuser's, for URLs over TCP.
	Password string

	opts Options
	cred *syscall.Credential // nil: run as ourselves

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan error

	dbs atomic.Int64
}

// Install installs the postgresql-15 package if it is missing, as
// scripts/deps.sh does for a fresh machine.
func Install() error {
	if _, err := os.Stat(filepath.Join(binDir, "postgres")); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s/postgres is missing and we are not root: run scripts/deps.sh", binDir)
	}
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "postgresql-15"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The package may start a system-wide cluster (systemd); we never use
	// it, and it does not disturb ours (another port and socket).
	return nil
}

// Start installs PostgreSQL if needed, creates a cluster in a temporary
// directory and starts its server, returning once it accepts
// connections.
func Start(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	if err := Install(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempRoot(), "turtles-postgres-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Host: "127.0.0.1", opts: opts}
	if err := s.create(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Up(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// create runs initdb as the server's user.
func (s *Server) create() error {
	began := time.Now()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("PostgreSQL refuses to run as root and there is no user nobody to run it as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			return err
		}
	}
	var r [12]byte
	rand.Read(r[:])
	s.Password = hex.EncodeToString(r[:])
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = port
	pwfile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		return err
	}
	for _, sub := range []string{"sock"} {
		if err := os.Mkdir(filepath.Join(s.Dir, sub), 0o700); err != nil {
			return err
		}
	}
	if s.cred != nil {
		for _, p := range []string{pwfile, filepath.Join(s.Dir, "sock")} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return err
			}
		}
	}
	cmd := exec.Command(filepath.Join(binDir, "initdb"),
		"--pgdata="+filepath.Join(s.Dir, "data"), "--username="+Superuser, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.Dir = s.Dir
	cmd.Env = s.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	os.Remove(pwfile)
	s.opts.Log("initdb in %s took %s", s.Dir, time.Since(began).Round(time.Millisecond))
	return nil
}

// env is the server's environment: none of ours (PG* variables of the
// test's caller must not reach it).
func (s *Server) env() []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=" + s.Dir, "LC_ALL=C", "TZ=UTC"}
}

// Up starts the server on its data directory and port, and returns once
// it accepts connections. Starting a running server is an error.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("postgres is running already")
	}
	began := time.Now()
	logf, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(binDir, "postgres"),
		"-D", filepath.Join(s.Dir, "data"),
		"-c", "listen_addresses="+s.Host,
		"-c", "port="+strconv.Itoa(s.Port),
		"-c", "unix_socket_directories="+filepath.Join(s.Dir, "sock"),
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
		"-c", "dynamic_shared_memory_type=mmap", // no /dev/shm needed
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
	)
	cmd.Dir = s.Dir
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	s.exit = make(chan error, 1)
	go func() { s.exit <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.exit:
			s.cmd = nil
			return fmt.Errorf("postgres exited during start: %v\n%s", err, s.tail())
		case <-time.After(50 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			s.opts.Log("postgres on %s:%d started in %s", s.Host, s.Port, time.Since(began).Round(time.Millisecond))
			return nil
		}
	}
	return fmt.Errorf("postgres did not accept connections within 60s\n%s", s.tail())
}

// Down stops the server cleanly (a fast shutdown: clients are
// disconnected, data is kept) and returns once it has exited. Clients get
// errors until Up. Stopping a stopped server does nothing.
func (s *Server) Down() error { return s.signal(syscall.SIGINT) }

// Kill stops the server abruptly (SIGKILL to it and every backend), as a
// crash would; Up recovers the data from the WAL.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	// Every child of the postmaster makes itself a process group leader
	// (setsid), so a signal to the postmaster's group misses them. A
	// crash kills them all at once: a backend left behind would answer
	// a query or two before it noticed, and hold the shared memory a
	// new postmaster needs.
	var children []int
	if sig == syscall.SIGKILL {
		syscall.Kill(pid, syscall.SIGSTOP) // no new children meanwhile
		children = childrenOf(pid)
		for _, c := range children {
			syscall.Kill(c, syscall.SIGKILL)
		}
	}
	syscall.Kill(pid, sig) // on SIGINT, the postmaster stops its children
	var err error
	select {
	case err = <-s.exit:
	case <-time.After(30 * time.Second):
		children = childrenOf(pid)
		for _, c := range children {
			syscall.Kill(c, syscall.SIGKILL)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		err = <-s.exit
	}
	for _, c := range children {
		waitGone(c)
	}
	s.cmd = nil
	var ee *exec.ExitError
	if sig == syscall.SIGKILL && errors.As(err, &ee) {
		err = nil // killed by our signal: expected
	}
	if err != nil {
		return fmt.Errorf("postgres: %w\n%s", err, s.tail())
	}
	return nil
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range stats {
		if ppid, _, ok := procStat(p); ok && ppid == pid {
			c, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, c)
		}
	}
	return out
}

// procStat reads the parent and state of a process from its stat file.
func procStat(path string) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// waitGone waits up to 10s for process pid to end (or be a zombie).
func waitGone(pid int) {
	for range 500 {
		_, state, ok := procStat(fmt.Sprintf("/proc/%d/stat", pid))
		if !ok || state == 'Z' {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops the server cleanly and starts it again on the same data
// and port: data survives, connections do not.
func (s *Server) Restart() error {
	if err := s.Down(); err != nil {
		return err
	}
	return s.Up()
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() error {
	err := s.Down()
	os.RemoveAll(s.Dir)
	return err
}

// URL is the URL of database db on the server, over TCP with the
// superuser's password.
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(Superuser, s.Password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db}
	return u.String()
}

// CreateDatabase creates a database, a copy of database template (""
// for an empty one), and returns its name and URL. Nobody may be
// connected to template meanwhile.
func (s *Server) CreateDatabase(ctx context.Context, template string) (name, url string, err error) {
	name = fmt.Sprintf("test_%d", s.dbs.Add(1))
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", "", fmt.Errorf("connect to create a database: %w", err)
	}
	defer c.Close(context.Background())
	q := "CREATE DATABASE " + name
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := c.Exec(ctx, q); err != nil {
		return "", "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, s.URL(name), nil
}

// DropDatabase drops database name, disconnecting its clients.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to drop database %s: %w", name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// NewDatabase creates an empty database for t and returns its URL; it is
// dropped when t ends (if the server is up then).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	return s.NewDatabaseFrom(t, "")
}

// NewDatabaseFrom is NewDatabase with a copy of database template: a
// schema made once costs a copy per test instead of a migration.
func (s *Server) NewDatabaseFrom(t testing.TB, template string) string {
	t.Helper()
	name, u, err := s.CreateDatabase(t.Context(), template)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	return u
}

// tail returns the end of the server's log, for errors.
func (s *Server) tail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return "== postgres.log\n" + string(data)
}

// tempRoot is where the server's directory goes: the temporary
// directory, unless we are root and "nobody" could not reach a directory
// in it (TMPDIR=/root/tmp), then /tmp.
func tempRoot() string {
	root := os.TempDir()
	if os.Geteuid() != 0 {
		return root
	}
	for p := root; ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil || info.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == filepath.Dir(p) {
			return root
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
