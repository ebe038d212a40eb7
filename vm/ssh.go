package vm

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/turtles-ci/turtles"
)

// waitSSH dials until the guest accepts the machine's key, qemu exits or
// the timeout passes. User-mode networking accepts TCP at once, so only a
// completed SSH login counts as ready.
func (m *Machine) waitSSH(ctx context.Context, timeout time.Duration) error {
	c, err := m.redial(ctx, timeout)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	m.mu.Lock()
	m.client = c
	m.mu.Unlock()
	return nil
}

// Causes of a failed boot, told apart by bootFault.
var (
	errQEMUExited = errors.New("qemu exited")
	errNoSSH      = errors.New("no SSH")
)

// redial dials until a login succeeds, qemu exits or the timeout passes.
func (m *Machine) redial(ctx context.Context, timeout time.Duration) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if m.exited() {
			return nil, fmt.Errorf("%w: %v", errQEMUExited, m.waitErr)
		}
		c, err := m.dial(ctx)
		if err == nil {
			return c, nil
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w within %s (last: %v)", errNoSSH, timeout, last)
			}
			return nil, ctx.Err()
		case <-m.doneChan():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *Machine) doneChan() <-chan struct{} {
	if m.done != nil {
		return m.done
	}
	return nil
}

func (m *Machine) dial(ctx context.Context) (*ssh.Client, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.SSHPort))
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Bound the handshake: under TCG a half-booted guest may accept and
	// then say nothing for a long time.
	began := time.Now()
	dl := began.Add(time.Minute)
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	// Until sshd says its banner, a short deadline: through user-mode
	// networking a connection made before the guest listens can sit in
	// slirp's SYN retransmission backoff long after sshd is up, while a
	// fresh connection gets through at once. Measured: boots looked up to
	// 20 s slower than a bare qemu polling with fresh connections.
	bc := &bannerConn{Conn: conn, ctx: ctx, after: dl}
	first := began.Add(bannerWait)
	if dl.Before(first) {
		first = dl
	}
	conn.SetDeadline(first)
	// Cancellation must not wait for a slow handshake.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// A cold guest was booted by us a moment ago, on loopback, with host
	// keys we never saw before: there is nothing to verify against. A
	// restored one has the key turtles gave it, and only that one.
	hostKey := ssh.InsecureIgnoreHostKey()
	if m.hostKey != nil {
		hostKey = ssh.FixedHostKey(m.hostKey)
	}
	cc, chans, reqs, err := ssh.NewClientConn(bc, addr, &ssh.ClientConfig{
		User:            m.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(m.signer)},
		HostKeyCallback: hostKey,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !stop() {
		cc.Close()
		return nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	m.log.Debug("ssh handshake", "took", time.Since(began).Round(time.Millisecond))
	return ssh.NewClient(cc, chans, reqs), nil
}

// bannerWait is how long a new connection may take to show sshd's banner
// before it is dropped for a fresh one.
const bannerWait = 2 * time.Second

// bannerConn moves the connection's deadline from bannerWait to after
// once the server has said anything, unless ctx is already done.
type bannerConn struct {
	net.Conn
	ctx   context.Context
	after time.Time
	once  sync.Once
}

func (c *bannerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() {
			if c.ctx.Err() == nil {
				c.Conn.SetDeadline(c.after)
			}
		})
	}
	return n, err
}

// attachWait bounds how long an attached machine's first connection may
// take: a loaded host can keep a running guest's sshd from answering
// within bannerWait, and each try then starts afresh.
const attachWait = 30 * time.Second

// sshClient returns the connected client, dialing if needed (an attached
// machine).
func (m *Machine) sshClient(ctx context.Context) (*ssh.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client != nil {
		return m.client, nil
	}
	c, err := m.redial(ctx, attachWait)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, turtles.InfraFault("the bot could not connect to the VM over SSH", fmt.Errorf("ssh to %s: %w", m.Name, err))
	}
	m.client = c
	return c, nil
}

// ErrNoExitStatus means the connection ended before the command did.
var ErrNoExitStatus = errors.New("command ended without an exit status")

// Exec runs a shell command in the guest with stdin, stdout and stderr
// as given (nil is empty/discarded) and returns its exit code. A non-zero
// exit is not an error; an error is a failure to run it (an infra Fault)
// or ctx ending (ctx's error), in which case the remote command is killed.
func (m *Machine) Exec(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	c, err := m.sshClient(ctx)
	if err != nil {
		return -1, err
	}
	s, err := c.NewSession()
	if err != nil {
		return -1, turtles.InfraFault(reasonExec, fmt.Errorf("ssh session on %s: %w", m.Name, err))
	}
	defer s.Close()
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(cmd); err != nil {
		return -1, turtles.InfraFault(reasonExec, fmt.Errorf("ssh exec on %s: %w", m.Name, err))
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		return -1, ctx.Err()
	}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitStatus(), nil
	default:
		var me *ssh.ExitMissingError
		if errors.As(err, &me) {
			err = ErrNoExitStatus
		}
		return -1, turtles.InfraFault("the connection to the VM ended before the command did", fmt.Errorf("ssh exec on %s: %w", m.Name, err))
	}
}

// reasonExec is the reason of a command the guest never started.
const reasonExec = "the bot could not run a command in the VM"

// Output runs cmd and returns its stdout; a non-zero exit is an error
// carrying stderr.
func (m *Machine) Output(ctx context.Context, cmd string) (string, error) {
	var out, errb strings.Builder
	code, err := m.Exec(ctx, cmd, nil, &out, &errb)
	if err != nil {
		return out.String(), err
	}
	if code != 0 {
		return out.String(), fmt.Errorf("%q exited %d: %s", cmd, code, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Quote makes s one word for the guest's POSIX shell.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CopyTo copies a local file or directory into guestDir (created if
// needed): a directory's contents, or the file by its base name. It
// streams a tar archive into tar in the guest.
func (m *Machine) CopyTo(ctx context.Context, local, guestDir string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, local)) }()
	var errb strings.Builder
	code, err := m.Exec(ctx, "mkdir -p "+Quote(guestDir)+" && tar -x -m -C "+Quote(guestDir)+" -f -", pr, io.Discard, &errb)
	pr.Close()
	if err == nil && code != 0 {
		err = fmt.Errorf("tar in guest exited %d: %s", code, strings.TrimSpace(errb.String()))
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", local, m.Name, guestDir, err)
	}
	return nil
}

// CopyFrom copies a guest file or directory into localDir (created if
// needed), the mirror of CopyTo. A missing guest path is an error
// wrapping fs.ErrNotExist.
func (m *Machine) CopyFrom(ctx context.Context, guestPath, localDir string) error {
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		return err
	}
	q := Quote(guestPath)
	script := "if [ -d " + q + " ]; then tar -c -C " + q + " .; " +
		"elif [ -e " + q + " ]; then tar -c -C \"$(dirname " + q + ")\" \"$(basename " + q + ")\"; " +
		"else exit 44; fi"
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		err := readTar(pr, localDir)
		io.Copy(io.Discard, pr)
		extracted <- err
	}()
	var errb strings.Builder
	code, err := m.Exec(ctx, script, nil, pw, &errb)
	pw.Close()
	xerr := <-extracted
	switch {
	case err != nil:
	case code == 44:
		err = fmt.Errorf("%s: %w", guestPath, fs.ErrNotExist)
	case code != 0:
		err = fmt.Errorf("tar in guest exited %d: %s", code, strings.TrimSpace(errb.String()))
	default:
		err = xerr
	}
	if err != nil {
		return fmt.Errorf("copy %s:%s to %s: %w", m.Name, guestPath, localDir, err)
	}
	return nil
}

// writeTar archives a directory's contents, or one file, to w.
func writeTar(w io.Writer, local string) error {
	tw := tar.NewWriter(w)
	st, err := os.Stat(local)
	if err != nil {
		return err
	}
	root, prefix := local, ""
	if !st.IsDir() {
		root, prefix = filepath.Dir(local), filepath.Base(local)
	}
	err = filepath.WalkDir(filepath.Join(root, prefix), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil // sockets and the like: skip
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = "", "", 0, 0
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// readTar extracts regular files and directories into dir, refusing
// paths that leave it; links and devices from the guest are skipped.
func readTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("unsafe path %q in guest archive", hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644|fs.FileMode(hdr.Mode)&0o111)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
