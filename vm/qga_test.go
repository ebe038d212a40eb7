package vm

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAgent serves the guest agent's protocol on a unix socket: stale
// bytes of an earlier client first (a client must sync past them), the
// 0xFF delimiter before the reply to guest-sync-delimited, guest-exec of
// "/bin/echo" (exit 0, its arguments as output) and of anything else (exit
// 3, "boom" on stderr), and a guest-exec-status that says "running" once.
func fakeAgent(t *testing.T) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, `{"return": {"pid": 7}}`+"\n") // left from an earlier client
				procs := map[int]struct {
					code int
					out  string
				}{}
				polled := map[int]bool{}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var req struct {
						Execute   string          `json:"execute"`
						Arguments json.RawMessage `json:"arguments"`
					}
					json.Unmarshal(sc.Bytes(), &req)
					switch req.Execute {
					case "guest-sync-delimited":
						var a struct{ ID int64 }
						json.Unmarshal(req.Arguments, &a)
						fmt.Fprintf(c, "\xff{\"return\": %d}\n", a.ID)
					case "guest-exec":
						var a struct {
							Path string   `json:"path"`
							Arg  []string `json:"arg"`
						}
						json.Unmarshal(req.Arguments, &a)
						pid := 100 + len(procs)
						if a.Path == "/bin/echo" {
							procs[pid] = struct {
								code int
								out  string
							}{0, strings.Join(a.Arg, " ") + "\n"}
						} else {
							procs[pid] = struct {
								code int
								out  string
							}{3, ""}
						}
						fmt.Fprintf(c, "{\"return\": {\"pid\": %d}}\n", pid)
					case "guest-exec-status":
						var a struct{ PID int }
						json.Unmarshal(req.Arguments, &a)
						if !polled[a.PID] {
							polled[a.PID] = true
							io.WriteString(c, `{"return": {"exited": false}}`+"\n")
							continue
						}
						p := procs[a.PID]
						fmt.Fprintf(c, "{\"return\": {\"exited\": true, \"exitcode\": %d, \"out-data\": %q, \"err-data\": %q}}\n",
							p.code, base64.StdEncoding.EncodeToString([]byte(p.out)), base64.StdEncoding.EncodeToString([]byte("boom")))
					default:
						fmt.Fprintf(c, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"%s\"}}\n", req.Execute)
					}
				}
			}()
		}
	}()
	return socket
}

func TestQGA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := DialQGA(ctx, fakeAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if out, err := g.Run(ctx, "/bin/echo", "hello", "guest"); err != nil || out != "hello guest\n" {
		t.Errorf("Run echo = %q, %v", out, err)
	}
	if _, err := g.Run(ctx, "/bin/false"); !errors.Is(err, errAgentExec) || !strings.Contains(err.Error(), "exit 3") ||
		!strings.Contains(err.Error(), "boom") {
		t.Errorf("Run false = %v, want errAgentExec with the exit code and stderr", err)
	}
	if _, err := g.Execute(ctx, "guest-shutdown", nil); err == nil || !strings.Contains(err.Error(), "CommandNotFound") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestQGANoAgent: a socket nobody answers on ends the dial at the
// context's deadline, saying the agent did not answer.
func TestQGANoAgent(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent, as a guest whose agent is not up
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := DialQGA(ctx, socket); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("DialQGA to a silent agent = %v", err)
	}
}
