package bot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

// pidFromFile waits for a command to write its pid to path.
func pidFromFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("pid file %s: %v", path, err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitDead polls until pid is gone; the kernel may take a moment after
// SIGKILL.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("process %d outlived its command", pid)
}

func TestExecute(t *testing.T) {
	tests := []struct {
		name    string
		command string
		timeout time.Duration
		want    turtles.Outcome
		wantLog []string
		// pidFile: the command writes a grandchild's pid there; it must be
		// dead when execute returns.
		pidFile bool
		// escapes: the grandchild leaves the process group on purpose; the
		// test kills it.
		escapes bool
		maxTime time.Duration
	}{
		{
			name:    "success",
			command: "echo out; echo err >&2",
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"out\n", "err\n", "turtles: exit status 0 after"},
		},
		{
			name:    "exit code",
			command: "echo failing; exit 3",
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: 3, Reason: "exit status 3"},
			wantLog: []string{"failing\n", "turtles: exit status 3 after"},
		},
		{
			name:    "killed by signal",
			command: "kill -SEGV $$",
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "killed by signal segmentation fault"},
		},
		{
			name:    "stdin is empty",
			command: "read x; echo read=$?",
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"read=1\n"},
		},
		{
			name:    "timeout kills a grandchild that ignores SIGTERM",
			command: `sh -c 'trap "" TERM; echo $$ > "$PIDFILE"; exec sleep 60' & sleep 60`,
			timeout: 500 * time.Millisecond,
			pidFile: true,
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "timed out after 500ms"},
			wantLog: []string{"turtles: timed out after 500ms"},
			maxTime: 3 * time.Second,
		},
		{
			name:    "background process left behind is killed",
			command: `sh -c 'echo $$ > "$PIDFILE"; exec sleep 60' & while [ ! -s "$PIDFILE" ]; do sleep 0.01; done; echo done`,
			pidFile: true,
			want:    turtles.Outcome{Class: turtles.Success},
			maxTime: 3 * time.Second,
		},
		{
			name:    "grandchild outside the group keeps stdout open",
			command: `setsid sh -c 'echo $$ > "$PIDFILE"; exec sleep 60' & while [ ! -s "$PIDFILE" ]; do sleep 0.01; done; echo started`,
			pidFile: true,
			escapes: true,
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"started\n", "still holds its output"},
			maxTime: 3 * time.Second,
		},
	}
	outputWait = 300 * time.Millisecond
	t.Cleanup(func() { outputWait = 2 * time.Second })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "pid")
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Minute
			}
			var out bytes.Buffer
			start := time.Now()
			got, err := execute(context.Background(), execSpec{
				Command:   tt.command,
				Dir:       dir,
				Env:       []string{"PATH=" + defaultPath, "PIDFILE=" + pidFile},
				Timeout:   timeout,
				KillGrace: 200 * time.Millisecond,
				Out:       &out,
			})
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("execute: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\nlog:\n%s", diff, out.String())
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(out.String(), w) {
					t.Errorf("log does not contain %q:\n%s", w, out.String())
				}
			}
			if tt.maxTime > 0 && elapsed > tt.maxTime {
				t.Errorf("execute took %s, want at most %s", elapsed, tt.maxTime)
			}
			if tt.pidFile {
				pid := pidFromFile(t, pidFile)
				if tt.escapes {
					syscall.Kill(pid, syscall.SIGKILL)
					return
				}
				waitDead(t, pid)
			}
		})
	}
}

func TestExecuteCancelled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancelCause(context.Background())
	errDrain := errors.New("draining")
	done := make(chan struct{})
	var (
		got turtles.Outcome
		err error
		out bytes.Buffer
	)
	go func() {
		defer close(done)
		got, err = execute(ctx, execSpec{
			Command:   `echo $$ > "$PIDFILE"; sleep 60`,
			Dir:       dir,
			Env:       []string{"PATH=" + defaultPath, "PIDFILE=" + pidFile},
			Timeout:   time.Minute,
			KillGrace: time.Second,
			Out:       &out,
		})
	}()
	pid := pidFromFile(t, pidFile)
	start := time.Now()
	cancel(errDrain)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("execute did not return after cancel")
	}
	// The shell dies of SIGTERM: no waiting for the grace period.
	if elapsed := time.Since(start); elapsed > 800*time.Millisecond {
		t.Errorf("execute took %s to stop a command that obeys SIGTERM", elapsed)
	}
	if !errors.Is(err, errDrain) {
		t.Errorf("execute error = %v, want the cancel cause %v", err, errDrain)
	}
	if o := turtles.OutcomeOf(err); got != (turtles.Outcome{}) || o.Class != turtles.Cancelled {
		t.Errorf("execute = %+v, %v (outcome %+v); want no outcome and a cancelled error", got, err, o)
	}
	waitDead(t, pid)
}
