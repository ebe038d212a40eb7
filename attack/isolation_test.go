package attack

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

// isolationWorld is a server whose public pool the operator dedicated to
// untrusted work outside VMs (the case where only the sandbox stands
// between a stranger and the bot), with a secret for trusted work.
type isolationWorld struct {
	*gateWorld
	dataDir, secretsDir string
}

const deployToken = "deploy-secret-7f3a9e"

func newIsolationWorld(t *testing.T, matrix string) *isolationWorld {
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	w := &isolationWorld{gateWorld: &gateWorld{gh: gh, repoDir: filepath.Join(base, "octo", "hello.git")}}
	os.MkdirAll(w.repoDir, 0o755)
	w.head1 = e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": matrix})
	gh.SetFile(gateRepo, w.head1, ".turtles.yaml", []byte(matrix))
	gh.SetPulls(gateRepo, githubtest.PullRequest{Number: 7, HeadSHA: w.head1, BaseRef: "main", Author: "stranger"})
	gh.AddMember("octo", "maint")
	w.dataDir = t.TempDir()
	w.secretsDir = t.TempDir()
	os.WriteFile(filepath.Join(w.secretsDir, "DEPLOY_TOKEN"), []byte(deployToken), 0o600)
	w.s = e2e.Serve(t, gh, w.dataDir, "--trusted-orgs", "octo", "--untrusted-host-pools", "public",
		"--secrets-dir", w.secretsDir, "--sandbox", "required")
	return w
}

// approve opens the stranger's pull request at sha and has a maintainer
// approve it.
func (w *isolationWorld) approve(t *testing.T, sha string) {
	t.Helper()
	w.gh.SetPulls(gateRepo, githubtest.PullRequest{Number: 7, HeadSHA: sha, BaseRef: "main", Author: "stranger"})
	w.pull(t, "pr-"+sha[:8], 7, "opened", "stranger", "CONTRIBUTOR", sha)
	w.waitPlanStatus(t, sha, "the pull request waits", waiting)
	w.comment(t, "ok-"+sha[:8], "maint", "MEMBER", "/ok-to-test "+sha)
}

// rawLog is the stored log of context's first attempt on sha.
func (w *isolationWorld) rawLog(t *testing.T, sha, context string) string {
	t.Helper()
	resp, b := w.s.Get(fmt.Sprintf("/logs/%s/%s/%s/1/log", gateRepo, sha, context))
	if resp.StatusCode != 200 {
		t.Fatalf("log of %s: %d %s", context, resp.StatusCode, b)
	}
	return string(b)
}

// TestAttackIsolation: an approved stranger's command runs on the bot (a
// dedicated pool) and looks for everything the issue found it could
// reach: the bot's environment and command line, the credential files,
// the queue, the secrets directory; it writes where it should not and
// leaves a daemon behind.
func TestAttackIsolation(t *testing.T) {
	attack(t, "isolation: an approved stranger's host command hunts for the bot's credentials, queue and secrets")
	marker := fmt.Sprintf("turtles-daemon-%d", time.Now().UnixNano())
	// The attacker knows turtles' defaults and reads what it can find.
	loot := `set +e
echo "== proc"; ls /proc | grep -c '^[0-9]'
for p in /proc/[0-9]*; do tr '\0' '\n' < $p/environ; tr '\0' ' ' < $p/cmdline; echo; done 2>&1
echo "== parent"; cat /proc/$PPID/environ 2>&1 | tr '\0' '\n'
echo "== files named on command lines"
for f in $(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep '^/'); do cat "$f" 2>&1 | head -c 300; ls -la "$f" 2>&1; done
echo "== known paths"
for f in DATA/queue.db DATA/webhook-secret SECRETS/DEPLOY_TOKEN; do cat "$f" 2>&1 | head -c 300; done
ls -la DATA SECRETS 2>&1
touch DATA/pwned 2>&1
echo "== daemon"
cp /bin/sleep ./MARKER && setsid ./MARKER 600 </dev/null >/dev/null 2>&1 &
echo done looting`
	loot = strings.NewReplacer("DATA", "", "SECRETS", "", "MARKER", marker).Replace(loot)
	matrix := "contexts:\n  - name: loot\n    command: |\n" + indent(loot, "      ") + "\n"
	w := newIsolationWorld(t, "contexts: []\n")
	// The paths are only known now; commit the script with them in.
	matrix = strings.NewReplacer("/queue.db", w.dataDir+"/queue.db", "/webhook-secret", w.dataDir+"/webhook-secret",
		"/DEPLOY_TOKEN", w.secretsDir+"/DEPLOY_TOKEN", "ls -la  ", "ls -la "+w.dataDir+" "+w.secretsDir, "touch /pwned", "touch "+w.dataDir+"/pwned").Replace(matrix)
	sha := e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": matrix})
	w.gh.SetFile(gateRepo, sha, ".turtles.yaml", []byte(matrix))
	w.approve(t, sha)
	st := e2e.WaitFinal(t, w.gh, gateRepo, sha, 90*time.Second, "loot")["loot"]
	log := w.rawLog(t, sha, "loot")
	if !strings.Contains(log, "done looting") {
		t.Fatalf("the attack did not run (status %+v):\n%s", st, log)
	}
	for what, v := range map[string]string{"the forge token": e2e.Token, "the webhook secret": e2e.Secret,
		"the deploy secret": deployToken, "the queue": "SQLite format"} {
		if strings.Contains(log, v) {
			t.Errorf("the stranger's command read %s", what)
		}
	}
	if _, err := os.Stat(filepath.Join(w.dataDir, "pwned")); err == nil {
		t.Error("the stranger's command wrote into the data directory")
	}
	if out, _ := exec.Command("pgrep", "-a", "-f", marker).Output(); len(out) > 0 {
		t.Errorf("a daemon outlived its task: %s", out)
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}

// TestAttackIsolationNeighbour: a stranger's command runs beside a
// trusted one with a secret, on the same bot, and scans every process it
// can see for it; the trusted task waits until the scan is over.
func TestAttackIsolationNeighbour(t *testing.T) {
	attack(t, "isolation: a stranger's command reads a concurrent trusted task's secret from /proc")
	var scanned atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !scanned.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// The trusted task holds its secret until the stranger's scan ended
	// (bounded: 3 minutes).
	trusted := fmt.Sprintf("contexts:\n  - name: deploy\n    secrets: [DEPLOY_TOKEN]\n    command: |\n"+
		"      echo holding\n      for i in $(seq 900); do curl -sf http://%s/ && break; sleep 0.2; done\n", ln.Addr())
	w := newIsolationWorld(t, trusted)
	mainSHA := w.head1
	push := e2e.PushPayload(gateRepo, w.repoDir, mainSHA)
	if code, out := w.s.Webhook("push", "push-main", push, e2e.Sign(push)); code/100 != 2 {
		t.Fatalf("push: %d %s", code, out)
	}
	e2e.WaitFor(t, 90*time.Second, "the trusted task holding its secret", func() bool {
		resp, b := w.s.Get(fmt.Sprintf("/logs/%s/%s/deploy/1/log", gateRepo, mainSHA))
		return resp.StatusCode == 200 && strings.Contains(string(b), "holding")
	})

	scan := "contexts:\n  - name: scan\n    command: |\n" +
		"      for i in $(seq 20); do cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep DEPLOY_TOKEN; ls /proc | grep -c '^[0-9]'; sleep 0.2; done\n      echo scanned\n"
	sha := e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": scan})
	w.gh.SetFile(gateRepo, sha, ".turtles.yaml", []byte(scan))
	w.approve(t, sha)
	e2e.WaitFinal(t, w.gh, gateRepo, sha, 90*time.Second, "scan")
	scanned.Store(true)
	if st := e2e.WaitFinal(t, w.gh, gateRepo, mainSHA, 90*time.Second, "deploy")["deploy"]; st.State != "success" {
		t.Errorf("the trusted task: %+v", st)
	}
	log := w.rawLog(t, sha, "scan")
	if !strings.Contains(log, "scanned") {
		t.Fatalf("the scan did not run:\n%s", log)
	}
	if strings.Contains(log, deployToken) || strings.Contains(log, "DEPLOY_TOKEN=") {
		t.Errorf("the stranger read the trusted task's secret:\n%s", log)
	}
}

// TestAttackCaps: a stranger's configuration asks for a trusted pool,
// a day-long timeout, the top priority, a huge VM; a push asks for 10,000
// contexts. Each is refused with a status that says why, and nothing
// boots.
func TestAttackCaps(t *testing.T) {
	attack(t, "caps: a stranger asks for pool release, 24h, priority 9, 64 CPUs, 256G; a push for 10,000 contexts")
	greedy := `contexts:
  - name: release
    command: echo release
    pool: release
  - name: long
    command: echo long
    timeout: 24h
  - name: urgent
    command: echo urgent
    priority: 9
  - name: big
    command: echo big
    image: debian-12
    cpus: 64
  - name: fat
    command: echo fat
    image: debian-12
    memory: 256G
  - name: fine
    command: echo fine
`
	w := newIsolationWorld(t, "contexts: []\n")
	sha := e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": greedy})
	w.gh.SetFile(gateRepo, sha, ".turtles.yaml", []byte(greedy))
	w.approve(t, sha)
	got := e2e.WaitFinal(t, w.gh, gateRepo, sha, 90*time.Second, "release", "long", "urgent", "big", "fat", "fine")
	for ctx, want := range map[string]string{"release": "pool release runs trusted work only", "long": "timeout 24h0m0s is over",
		"urgent": "priority 9 is over", "big": "cpus 64 is over", "fat": "memory 262144M is over"} {
		if st := got[ctx]; st.State == "success" || !strings.Contains(st.Description, want) {
			t.Errorf("%s: %+v, want a refusal saying %q", ctx, st, want)
		}
	}
	if st := got["fine"]; st.State != "success" {
		t.Errorf("the context within the caps: %+v", st)
	}
	for _, task := range w.s.Tasks(sha) {
		for _, a := range task.Attempts {
			if task.Context != "fine" && task.Context != "turtles" && a.Started != nil {
				t.Errorf("refused context %s ran (pool %s) on %s", task.Context, task.Pool, a.Bot)
			}
		}
	}

	// 10,000 contexts from a trusted push: one failing plan status, not
	// 10,000 tasks and statuses.
	var b strings.Builder
	b.WriteString("contexts:\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "  - name: c%d\n    command: echo %d\n", i, i)
	}
	many := e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": b.String()})
	before := len(w.gh.Statuses())
	push := e2e.PushPayload(gateRepo, w.repoDir, many)
	if code, out := w.s.Webhook("push", "push-many", push, e2e.Sign(push)); code/100 != 2 {
		t.Fatalf("push: %d %s", code, out)
	}
	st := e2e.WaitFinal(t, w.gh, gateRepo, many, 90*time.Second, "turtles")["turtles"]
	if st.State == "success" || !strings.Contains(st.Description, "10000 contexts") {
		t.Errorf("plan of 10,000 contexts: %+v", st)
	}
	if n := len(w.gh.Statuses()) - before; n > 5 {
		t.Errorf("10,000 contexts cost %d status posts", n)
	}
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(s, "\n", "\n"+by)
}
