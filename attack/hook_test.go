package attack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

const hookRepo = "octo/pushed"

// hookMatrix has one context, whose final status shows the push ran.
const hookMatrix = "contexts:\n  - name: ok\n    command: echo ran\n"

// hookWorld is a repository pushed to by its maintainers and a server
// whose webhook receiver strangers attack.
type hookWorld struct {
	gh      *githubtest.Server
	s       *e2e.Server
	repoDir string
}

func newHookWorld(t *testing.T, extra ...string) *hookWorld {
	gh := githubtest.NewServer(t, e2e.Token)
	w := &hookWorld{gh: gh, repoDir: filepath.Join(t.TempDir(), "octo", "pushed.git")}
	os.MkdirAll(w.repoDir, 0o755)
	w.s = e2e.Serve(t, gh, t.TempDir(), extra...)
	return w
}

// commit makes a new commit the fake GitHub knows the matrix of, and
// returns the signed push payload that announces it.
func (w *hookWorld) commit(t *testing.T, name string) (sha string, push []byte) {
	t.Helper()
	sha = e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": hookMatrix, name: name})
	w.gh.SetFile(hookRepo, sha, ".turtles.yaml", []byte(hookMatrix))
	push, _ = json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"full_name": hookRepo, "clone_url": "file://" + w.repoDir}})
	return sha, push
}

// TestAttackHookReplay: a stranger who saw one signed push (a proxy's
// log, a leaked delivery) sends it again under new delivery IDs, before
// and after a restart. At HEAD each reran the push as attempt 1 and
// overwrote the first run's log.
func TestAttackHookReplay(t *testing.T) {
	attack(t, "hook: a signed push replayed under a new delivery ID runs again")
	w := newHookWorld(t)
	sha, push := w.commit(t, "first")
	if code, out := w.s.Webhook("push", "d-1", push, e2e.Sign(push)); code != 200 || !strings.Contains(out, "queued 1") {
		t.Fatalf("the push itself: %d %s, want 200 and a queued task", code, out)
	}
	e2e.WaitFinal(t, w.gh, hookRepo, sha, 60*time.Second, "ok")
	before := w.s.Tasks(sha)
	statuses := w.statusesOf(sha)

	replay := func(delivery string) {
		t.Helper()
		code, out := w.s.Webhook("push", delivery, push, e2e.Sign(push))
		if code/100 != 2 || !strings.Contains(out, "already handled") {
			t.Errorf("replay as %s: %d %s, want 2xx \"already handled\"", delivery, code, out)
		}
	}
	replay("evil-1")
	replay("evil-2")
	// Anything a replay queued would be ahead of this push's plan; its
	// result is the barrier.
	sha2, push2 := w.commit(t, "barrier")
	if code, out := w.s.Webhook("push", "d-2", push2, e2e.Sign(push2)); code != 200 {
		t.Fatalf("barrier push: %d %s", code, out)
	}
	e2e.WaitFinal(t, w.gh, hookRepo, sha2, 60*time.Second, "ok")

	// The delivery log outlives the process.
	w.s.Stop(syscall.SIGTERM)
	w.s.Start()
	replay("evil-3")

	after := w.s.Tasks(sha)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("the first push's tasks changed after the replays (-before +after):\n%s", diff)
	}
	for _, task := range after {
		if len(task.Attempts) != 1 {
			t.Errorf("task %s has %d attempts, want the first push's one", task.ID, len(task.Attempts))
		}
	}
	if diff := cmp.Diff(statuses, w.statusesOf(sha)); diff != "" {
		t.Errorf("statuses of the replayed commit changed (-before +after):\n%s", diff)
	}
}

// statusesOf is every status posted for sha, in order.
func (w *hookWorld) statusesOf(sha string) []githubtest.Status {
	var out []githubtest.Status
	for _, st := range w.gh.Statuses() {
		if st.SHA == sha {
			out = append(out, st)
		}
	}
	return out
}

// TestAttackHookRefusedFromHeaders: a stranger announces a 25 MB body
// with no signature, or a larger one: the answer comes at once, before
// the body is sent.
func TestAttackHookRefusedFromHeaders(t *testing.T) {
	attack(t, "hook: an unsigned or oversized body is read before it is refused")
	w := newHookWorld(t)
	addr := strings.TrimPrefix(w.s.URL, "http://")
	for _, tt := range []struct {
		name, signature string
		length          int
		want            string
	}{
		{name: "no signature", length: 25 << 20, want: "401"},
		{name: "malformed signature", signature: "sha256=zz", length: 25 << 20, want: "401"},
		{name: "over 25 MB", signature: "sha256=" + strings.Repeat("00", 32), length: 25<<20 + 1, want: "413"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		sig := ""
		if tt.signature != "" {
			sig = "X-Hub-Signature-256: " + tt.signature + "\r\n"
		}
		fmt.Fprintf(c, "POST /hook/github HTTP/1.1\r\nHost: turtles\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: evil\r\n%sContent-Length: %d\r\n\r\n",
			sig, tt.length)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.Contains(line, " "+tt.want+" ") {
			t.Errorf("%s: answer %q (%v) before any body was sent, want %s", tt.name, line, err, tt.want)
		}
	}
}

// TestAttackHookSlowBodies: strangers trickle unsigned bodies that claim
// 25 MB on 30 connections, reconnecting when cut off, as in issue 13 (at
// HEAD: 28 MB to 1.4 GB RSS, every connection still open after 75 s).
// The server's memory stays flat, it cuts each connection at the read
// timeout, and it answers a signed push meanwhile.
func TestAttackHookSlowBodies(t *testing.T) {
	attack(t, "hook: slow unsigned 25 MB bodies exhaust memory and connections")
	const (
		readTimeout = 3 * time.Second
		attackers   = 30
		duration    = 15 * time.Second
		maxGrowth   = 150 << 20
	)
	w := newHookWorld(t, "--http-read-timeout", readTimeout.String())
	pid := w.s.Cmd.Process.Pid
	// One signed push first, so that what it costs is in the baseline.
	sha, push := w.commit(t, "warm-up")
	if code, out := w.s.Webhook("push", "warm-up", push, e2e.Sign(push)); code != 200 {
		t.Fatalf("warm-up push: %d %s", code, out)
	}
	e2e.WaitFinal(t, w.gh, hookRepo, sha, 60*time.Second, "ok")
	base := rss(t, pid)

	addr := strings.TrimPrefix(w.s.URL, "http://")
	stop := make(chan struct{})
	var mu sync.Mutex
	var conns int
	var longest time.Duration
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				// One still open at the end counts for as long as it lived.
				lived := trickle(addr, fmt.Sprintf("evil-%d-%d", i, j), stop)
				mu.Lock()
				conns++
				longest = max(longest, lived)
				mu.Unlock()
			}
		})
	}

	var peak int64
	var answered []time.Duration
	start := time.Now()
	for pushes := 0; time.Since(start) < duration; {
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, rss(t, pid))
		if time.Since(start) > time.Duration(pushes+1)*duration/3 {
			pushes++
			_, push := w.commit(t, fmt.Sprintf("during-%d", pushes))
			t0 := time.Now()
			code, out := w.s.Webhook("push", fmt.Sprintf("during-%d", pushes), push, e2e.Sign(push))
			answered = append(answered, time.Since(t0))
			if code != 200 || time.Since(t0) > 3*time.Second {
				t.Errorf("signed push during the attack: %d %s after %s, want 200 within 3s", code, out, time.Since(t0))
			}
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("RSS %d MB before, peak %d MB during %s of attack by %d connections (%d in all); longest-lived attacking connection %s (read timeout %s); signed pushes answered in %v",
		base>>20, peak>>20, duration, attackers, conns, longest.Round(time.Millisecond), readTimeout, answered)
	if peak-base > maxGrowth {
		t.Errorf("RSS grew by %d MB during the attack, want under %d", (peak-base)>>20, maxGrowth>>20)
	}
	if longest > readTimeout+2*time.Second {
		t.Errorf("an attacking connection stayed open %s, want it cut within the read timeout %s", longest, readTimeout)
	}
	if len(answered) < 2 {
		t.Errorf("%d signed pushes sent during the attack, want 2", len(answered))
	}
	if resp, _ := w.s.Get("/healthz"); resp.StatusCode != 200 {
		t.Errorf("after the attack: /healthz %d", resp.StatusCode)
	}
}

// trickle sends one unsigned body (a well-formed, wrong signature, so the
// server must read it to know) that claims 25 MB, at about 320 kB/s, until
// the server closes the connection or stop. It reports how long the
// connection lived.
func trickle(addr, delivery string, stop <-chan struct{}) time.Duration {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		return 0
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST /hook/github HTTP/1.1\r\nHost: turtles\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\n"+
		"X-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n", delivery, strings.Repeat("00", 32), 25<<20)
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c) // until the server closes
		close(closed)
	}()
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := c.Write(chunk); err != nil {
			<-closed
			return time.Since(start)
		}
		select {
		case <-closed:
		case <-stop:
		case <-tick.C:
			continue
		}
		return time.Since(start)
	}
}

// rss is the resident set size of process pid, in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}
