package attack

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

// TestAttackWebhookLostOnPowerLoss: a power cut right after turtles
// answered a push 2xx must not lose the push; GitHub does not redeliver
// by itself. A power cut cannot be played here, so the test watches the
// real server's system calls (strace) and asks what would survive one:
// the embedded queue's WAL must have been synced (fdatasync) between the
// push arriving and its answer. At HEAD, with synchronous=NORMAL, the WAL
// was synced only at checkpoints.
func TestAttackWebhookLostOnPowerLoss(t *testing.T) {
	attack(t, "queue: a push answered 2xx is not yet on disk when the power goes")
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("needs strace to see the server's syncs")
	}
	gh := githubtest.NewServer(t, e2e.Token)
	repoDir := filepath.Join(t.TempDir(), "octo", "durable.git")
	os.MkdirAll(repoDir, 0o755)
	dataDir := t.TempDir()
	s := e2e.Serve(t, gh, dataDir)
	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": hookMatrix})
	gh.SetFile("octo/durable", sha, ".turtles.yaml", []byte(hookMatrix))

	trace := filepath.Join(t.TempDir(), "strace")
	st := exec.Command("strace", "-f", "-p", strconv.Itoa(s.Cmd.Process.Pid), "-e", "trace=fdatasync,fsync", "-y", "-ttt", "-T", "-o", trace)
	stderr, _ := st.StderrPipe()
	if err := st.Start(); err != nil {
		t.Skipf("strace: %v", err)
	}
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "attached") {
				ok = true
				attached <- true
			}
		}
		if !ok {
			attached <- false
		}
	}()
	select {
	case ok := <-attached:
		if !ok {
			t.Skip("strace could not attach to the server")
		}
	case <-time.After(10 * time.Second):
		st.Process.Kill()
		t.Skip("strace did not attach within 10 s")
	}

	push, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"full_name": "octo/durable", "clone_url": "file://" + repoDir}})
	sent := time.Now()
	code, out := s.Webhook("push", "durable-1", push, e2e.Sign(push))
	answered := time.Now()
	if code != 200 {
		t.Fatalf("push: %d %s", code, out)
	}
	// strace detaches on SIGINT and writes out its trace; on a loaded
	// machine detaching from every thread of the server once took minutes,
	// so it gets 10 s, then SIGKILL (the kernel detaches its tracees).
	st.Process.Signal(syscall.SIGINT)
	stopped := time.AfterFunc(10*time.Second, func() { st.Process.Kill() })
	st.Wait()
	stopped.Stop()

	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	// PID SECONDS.MICROS fdatasync(FD</path/queue.db-wal>) = 0 <DURATION>
	line := regexp.MustCompile(`^\d+\s+(\d+\.\d+) f(?:data)?sync\(\d+<([^>]*)>\)\s+= 0 <(\d+\.\d+)>`)
	var syncs []string
	for _, l := range strings.Split(string(b), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil || filepath.Base(m[2]) != "queue.db-wal" {
			continue
		}
		start, _ := strconv.ParseFloat(m[1], 64)
		dur, _ := strconv.ParseFloat(m[3], 64)
		end := time.Unix(0, int64((start+dur)*1e9))
		syncs = append(syncs, fmt.Sprintf("%s (ended %v after the push was sent)", l, end.Sub(sent)))
		if end.After(sent) && end.Before(answered) {
			return // held
		}
	}
	t.Errorf("no sync of the queue's WAL ended between the push (%v) and its 2xx (%v later); the push would not survive a power cut. WAL syncs seen:\n%s\nwhole trace:\n%s",
		sent.Format(time.StampMicro), answered.Sub(sent), strings.Join(syncs, "\n"), b)
}
