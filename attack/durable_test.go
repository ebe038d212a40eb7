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
	var syncs []string
	for _, c := range walSyncs(string(b), "queue.db-wal") {
		syncs = append(syncs, fmt.Sprintf("%s (ended %v after the push was sent)", c.line, c.end.Sub(sent)))
		if c.end.After(sent) && c.end.Before(answered) {
			return // held
		}
	}
	t.Errorf("no sync of the queue's WAL ended between the push (%v) and its 2xx (%v later); the push would not survive a power cut. WAL syncs seen:\n%s\nwhole trace:\n%s",
		sent.Format(time.StampMicro), answered.Sub(sent), strings.Join(syncs, "\n"), b)
}

// A completedSync is one successful fsync or fdatasync of a file, from an
// strace -f -y -ttt -T trace.
type completedSync struct {
	end  time.Time
	line string
}

// walSyncs reads the syncs of files named base from an strace trace. With
// -f, a call another thread interrupts is split in two lines:
//
//	PID SECONDS.MICROS fdatasync(FD</path/queue.db-wal>) = 0 <DURATION>
//	PID SECONDS.MICROS fdatasync(FD</path/queue.db-wal> <unfinished ...>
//	PID SECONDS.MICROS <... fdatasync resumed>) = 0 <DURATION>
//
// and DURATION is the whole call's, from its start.
func walSyncs(trace, base string) []completedSync {
	whole := regexp.MustCompile(`^(\d+)\s+(\d+\.\d+) f(?:data)?sync\(\d+<([^>]*)>\)\s+= 0 <(\d+\.\d+)>`)
	begun := regexp.MustCompile(`^(\d+)\s+(\d+\.\d+) f(?:data)?sync\(\d+<([^>]*)> <unfinished \.\.\.>`)
	resumed := regexp.MustCompile(`^(\d+)\s+\d+\.\d+ <\.\.\. f(?:data)?sync resumed>\)\s+= 0 <(\d+\.\d+)>`)
	at := func(start, dur string) time.Time {
		s, _ := strconv.ParseFloat(start, 64)
		d, _ := strconv.ParseFloat(dur, 64)
		return time.Unix(0, int64((s+d)*1e9))
	}
	type pending struct{ start, path, line string }
	open := map[string]pending{} // by PID
	var out []completedSync
	for _, l := range strings.Split(trace, "\n") {
		if m := whole.FindStringSubmatch(l); m != nil {
			if filepath.Base(m[3]) == base {
				out = append(out, completedSync{at(m[2], m[4]), l})
			}
		} else if m := begun.FindStringSubmatch(l); m != nil {
			open[m[1]] = pending{m[2], m[3], l}
		} else if m := resumed.FindStringSubmatch(l); m != nil {
			p, ok := open[m[1]]
			delete(open, m[1])
			if ok && filepath.Base(p.path) == base {
				out = append(out, completedSync{at(p.start, m[2]), p.line + " ... " + l})
			}
		}
	}
	return out
}

func TestWalSyncs(t *testing.T) {
	trace := `28603 1796290398.872489 --- SIGURG {si_signo=SIGURG} ---
28603 1796290398.890036 fdatasync(16</tmp/x/queue.db-wal> <unfinished ...>
28591 1796290398.890316 --- SIGURG {si_signo=SIGURG} ---
28603 1796290398.903294 <... fdatasync resumed>) = 0 <0.013172>
28604 1796290399.000000 fdatasync(17</tmp/x/state.db-wal>) = 0 <0.001000>
28605 1796290399.500000 fsync(18</tmp/x/queue.db-wal>) = 0 <0.250000>
28606 1796290399.600000 fdatasync(19</tmp/x/queue.db-wal> <unfinished ...>
28606 1796290399.700000 <... fdatasync resumed>) = -1 EIO (Input/output error) <0.100000>
`
	got := walSyncs(trace, "queue.db-wal")
	want := []time.Time{
		time.Unix(0, int64((1796290398.890036+0.013172)*1e9)),
		time.Unix(0, int64((1796290399.5+0.25)*1e9)),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d syncs, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if d := got[i].end.Sub(want[i]); d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("sync %d ended at %v, want %v", i, got[i].end, want[i])
		}
	}
}
