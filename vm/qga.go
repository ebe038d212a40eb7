package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// QGA is a minimal client of the QEMU guest agent (qemu-ga in the guest,
// over a virtio-serial port that QEMU exposes as a unix socket here): the
// channel a warm start uses to make a restored machine its own before
// anyone logs in. One command at a time.
type QGA struct {
	conn net.Conn
	r    *bufio.Reader
}

// agentPort is the virtio-serial port name qemu-ga listens on.
const agentPort = "org.qemu.guest_agent.0"

// DialQGA connects to the agent's socket and synchronizes with the agent
// (guest-sync-delimited), so that no reply to an earlier client's command
// is taken for one of ours. It waits for the agent up to ctx's deadline:
// in a guest that is still booting it is not there yet.
func DialQGA(ctx context.Context, socket string) (*QGA, error) {
	conn, err := dialUnix(ctx, socket)
	if err != nil {
		return nil, fmt.Errorf("qga dial: %w", err)
	}
	g := &QGA{conn: conn, r: bufio.NewReader(conn)}
	for {
		err := g.sync(ctx)
		if err == nil {
			return g, nil
		}
		if ctx.Err() != nil {
			conn.Close()
			return nil, fmt.Errorf("qga: the guest agent did not answer: %w (last: %v)", ctx.Err(), err)
		}
	}
}

// sync sends guest-sync-delimited with a random id and reads until the
// agent's 0xFF delimiter and the reply with that id, waiting at most a
// second for it: the agent may not be up, and then nothing comes.
func (g *QGA) sync(ctx context.Context) error {
	id := rand.Int64N(1 << 40)
	dl := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	g.conn.SetDeadline(dl)
	defer g.conn.SetDeadline(time.Time{})
	b, _ := json.Marshal(map[string]any{"execute": "guest-sync-delimited", "arguments": map[string]any{"id": id}})
	if _, err := g.conn.Write(append(b, '\n')); err != nil {
		return err
	}
	if _, err := g.r.ReadBytes(0xff); err != nil {
		return err
	}
	for {
		line, err := g.r.ReadBytes('\n')
		if err != nil {
			return err
		}
		var resp struct {
			Return *int64 `json:"return"`
		}
		if json.Unmarshal(bytes.TrimLeft(line, "\xff"), &resp) == nil && resp.Return != nil && *resp.Return == id {
			return nil
		}
	}
}

// Execute runs an agent command and returns its "return" value.
func (g *QGA) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	if dl, ok := ctx.Deadline(); ok {
		g.conn.SetDeadline(dl)
		defer g.conn.SetDeadline(time.Time{})
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := g.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qga %s: %w", cmd, err)
	}
	line, err := g.r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("qga %s: %w", cmd, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *QMPError       `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("qga %s: bad reply: %w", cmd, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("qga %s: %w", cmd, resp.Error)
	}
	return resp.Return, nil
}

// errAgentExec is a guest command that ran and failed.
var errAgentExec = errors.New("guest command failed")

// Run runs argv in the guest through the agent, waits for it (polling)
// and returns its output; a non-zero exit is errAgentExec with the
// output.
func (g *QGA) Run(ctx context.Context, argv ...string) (string, error) {
	raw, err := g.Execute(ctx, "guest-exec", map[string]any{"path": argv[0], "arg": argv[1:], "capture-output": true})
	if err != nil {
		return "", err
	}
	var started struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(raw, &started); err != nil {
		return "", fmt.Errorf("qga guest-exec: %w", err)
	}
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		raw, err := g.Execute(ctx, "guest-exec-status", map[string]any{"pid": started.PID})
		if err != nil {
			return "", err
		}
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int    `json:"exitcode"`
			Signal   int    `json:"signal"`
			Out      string `json:"out-data"`
			Err      string `json:"err-data"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return "", fmt.Errorf("qga guest-exec-status: %w", err)
		}
		if st.Exited {
			out, _ := base64.StdEncoding.DecodeString(st.Out)
			errOut, _ := base64.StdEncoding.DecodeString(st.Err)
			if st.ExitCode != 0 || st.Signal != 0 {
				return string(out), fmt.Errorf("%w: %s: exit %d, signal %d: %s", errAgentExec, argv[0], st.ExitCode, st.Signal,
					bytes.TrimSpace(append(out, errOut...)))
			}
			return string(out), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("qga %s: %w", argv[0], ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Close closes the connection.
func (g *QGA) Close() error { return g.conn.Close() }
