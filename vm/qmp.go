package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// QMP is a minimal client of the QEMU Machine Protocol: one command at a
// time over a unix socket, asynchronous events skipped. It is all that
// turtles needs (status and shutdown); go-qemu is not available here.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
}

// maxSocketPath is the longest path a unix socket address holds (108
// bytes with the terminating NUL).
const maxSocketPath = 107

// oPath opens a file for its name only, which sockets allow.
const oPath = 0x200000

// QMPError is an error reply from QEMU.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// DialQMP connects to a QMP socket, reads the greeting and negotiates
// capabilities, so that the returned client accepts commands.
func DialQMP(ctx context.Context, socket string) (*QMP, error) {
	conn, err := dialUnix(ctx, socket)
	if err != nil {
		return nil, fmt.Errorf("qmp dial: %w", err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	line, err := q.r.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &greeting)
	}
	if err == nil && greeting.QMP == nil {
		err = fmt.Errorf("not a QMP greeting: %.100s", line)
	}
	if err == nil {
		_, err = q.execute("qmp_capabilities", nil)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return q, nil
}

// dialUnix connects to a unix socket of any path length: addresses are
// limited to 108 bytes, and a longer path is dialled through an O_PATH
// descriptor of the socket file, whose /proc path is short.
func dialUnix(ctx context.Context, socket string) (net.Conn, error) {
	if len(socket) > maxSocketPath {
		f, err := os.OpenFile(socket, oPath, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		socket = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", socket)
}

// Execute runs a command and returns its "return" value. A context
// deadline bounds the round trip.
func (q *QMP) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(dl)
		defer q.conn.SetDeadline(time.Time{})
	}
	return q.execute(cmd, args)
}

func (q *QMP) execute(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *QMPError       `json:"error"`
			Event  string          `json:"event"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("qmp %s: bad reply: %w", cmd, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("qmp %s: %w", cmd, resp.Error)
		case resp.Return != nil:
			return resp.Return, nil
		}
		return nil, fmt.Errorf("qmp %s: reply without return: %.100s", cmd, line)
	}
}

// Status is the reply of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus asks whether the guest CPUs run ("running", "paused", ...).
func (q *QMP) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	raw, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("qmp query-status: %w", err)
	}
	return s, nil
}

// Powerdown presses the ACPI power button; the guest may ignore it.
func (q *QMP) Powerdown(ctx context.Context) error {
	_, err := q.Execute(ctx, "system_powerdown", nil)
	return err
}

// Quit makes QEMU exit at once. QEMU may close the socket before its
// reply arrives, which is success too.
func (q *QMP) Quit(ctx context.Context) error {
	_, err := q.Execute(ctx, "quit", nil)
	if err != nil && isClosed(err) {
		return nil
	}
	return err
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
