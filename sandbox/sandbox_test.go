package sandbox

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newSandbox(t *testing.T, hide ...string) *Sandbox {
	t.Helper()
	s, err := New(Config{UIDBase: 1879048192, UIDs: 4, Hide: hide})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// run runs script isolated in a fresh workspace and returns its output.
func run(t *testing.T, s *Sandbox, script string, env ...string) (string, error) {
	t.Helper()
	ws := t.TempDir()
	os.Chmod(ws, 0o755)
	r, err := s.Start(Spec{Workspace: ws, Dir: Root, Env: append([]string{"PATH=/usr/bin:/bin"}, env...)}, "/bin/sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Cmd.Stdout, r.Cmd.Stderr = &out, &out
	if err := r.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Started()
	err = r.Cmd.Wait()
	r.Close()
	return out.String(), err
}

// TestAttacks plays a task that looks for what is not its own.
func TestAttacks(t *testing.T) {
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "queue.db"), []byte("the queue"), 0o644)
	creds := filepath.Join(t.TempDir(), "token")
	os.WriteFile(creds, []byte("ghp_secret_token"), 0o644) // even world-readable
	s := newSandbox(t, data, creds)
	t.Logf("cgroups: %s", s.Cgroups())

	tests := []struct {
		name, script string
		want         string // the output must contain it
		never        string // and never this
	}{
		{name: "hidden data dir", script: "ls -a " + data + "; cat " + data + "/queue.db", never: "the queue"},
		{name: "hidden credential file", script: "cat " + creds, never: "ghp_secret_token"},
		{name: "only its own processes", script: "cat /proc/[0-9]*/comm", want: "bwrap", never: "sandbox.test"},
		{name: "no parent environment", script: "cat /proc/1/environ /proc/$PPID/environ | tr '\\0' '\\n'", never: "HOME=/root"},
		{name: "read-only host", script: "touch /usr/pwned /etc/pwned && echo WROTE", never: "WROTE"},
		{name: "writes its workspace", script: "echo ok > f && cat f", want: "ok"},
		{name: "cannot unmount what hides", script: "umount " + data + " 2>&1; ls " + data, never: "queue.db"},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, struct{ name, script, want, never string }{
			name: "not root, but named", script: "id -u; id -un; cat /etc/shadow", want: "turtles-task", never: "root:"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := run(t, s, tt.script)
			if tt.want != "" && !strings.Contains(out, tt.want) {
				t.Errorf("output %q lacks %q", out, tt.want)
			}
			if tt.never != "" && strings.Contains(out, tt.never) {
				t.Errorf("the task got %q: %q", tt.never, out)
			}
		})
	}
}

// TestNoSurvivor: a daemon that left the process group dies with the
// task.
func TestNoSurvivor(t *testing.T) {
	s := newSandbox(t)
	marker := "turtles-survivor-" + strings.ReplaceAll(t.Name(), "/", "-")
	if _, err := run(t, s, "cp /bin/sleep ./"+marker+" && setsid ./"+marker+" 300 </dev/null >/dev/null 2>&1 & sleep 0.2; echo started"); err != nil {
		t.Fatal(err)
	}
	// Close waited for the cgroup to empty; the PID namespace went with
	// its first process. A survivor would be listed here.
	if out, _ := exec.Command("pgrep", "-a", "-f", marker).Output(); len(out) > 0 {
		t.Fatalf("a daemon outlived its task: %s", out)
	}
}

// TestDistinctUIDs: two tasks at once never share a uid.
func TestDistinctUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("per-task uids need a root bot")
	}
	s := newSandbox(t)
	a, err := s.Start(Spec{Workspace: t.TempDir(), Dir: Root, Env: nil}, "true")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Start(Spec{Workspace: t.TempDir(), Dir: Root, Env: nil}, "true")
	if err != nil {
		t.Fatal(err)
	}
	if a.UID() == b.UID() {
		t.Fatalf("both tasks run as uid %d", a.UID())
	}
	a.Close()
	b.Close()
	for range 4 { // as many as there are uids
		c, err := s.Start(Spec{Workspace: t.TempDir(), Dir: Root}, "true")
		if err != nil {
			t.Fatalf("a uid was not given back: %v", err)
		}
		defer c.Close()
	}
}

// TestTerminateGivesGrace: SIGTERM reaches the command, which may clean
// up, rather than bubblewrap taking it down at once.
func TestTerminateGivesGrace(t *testing.T) {
	s := newSandbox(t)
	ws := t.TempDir()
	os.Chmod(ws, 0o755)
	r, err := s.Start(Spec{Workspace: ws, Dir: Root, Env: []string{"PATH=/usr/bin:/bin"}},
		"/bin/sh", "-c", "trap 'echo cleaned > done; exit 3' TERM; echo ready > ready; while :; do sleep 0.1; done")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Started()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(ws, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Terminate()
	r.Cmd.Wait()
	r.Close()
	if b, err := os.ReadFile(filepath.Join(ws, "done")); err != nil || string(b) != "cleaned\n" {
		t.Fatalf("the TERM trap did not run: %q, %v", b, err)
	}
}
