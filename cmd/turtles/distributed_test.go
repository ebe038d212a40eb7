package main

// Fault tests of distributed mode: the real binary as separate hook,
// reporter and bot processes on a private RabbitMQ node (amqptest) and a
// private PostgreSQL (pgtest), a fake GitHub; two of every process but
// the bots (four), every webhook delivered to both hooks, bots killed
// with SIGKILL, a reporter killed, the broker and the database restarted
// mid-run. One set of services and processes serves all the assertions
// (2-6 minutes, depending on how loaded the machine is).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/amqp/amqptest"
	"github.com/turtles-ci/turtles/state/postgres/pgtest"
	"github.com/turtles-ci/turtles/syncio"
)

// proc is one turtles process that the test may kill and start again.
type proc struct {
	t    *testing.T
	name string
	args []string
	logs *syncio.Buffer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, name string, args ...string) *proc {
	p := &proc{t: t, name: name, args: args, logs: &syncio.Buffer{}}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output (last 4000 bytes):\n%s", name, tail(p.logs.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(e2e.Bin(p.t), p.args...)
	cmd.Env = append(os.Environ(), "TURTLES_GITHUB_TOKEN="+e2e.Token, "TURTLES_WEBHOOK_SECRET="+e2e.Secret)
	fmt.Fprintf(p.logs, "=== start %s\n", p.name)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(p.done)
}

func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.cmd = nil
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	e2e.WaitFor(t, 20*time.Second, url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func postWebhook(t *testing.T, url, delivery string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", e2e.Sign(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestDistributed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a RabbitMQ node")
	}
	const (
		commits  = 50 // 500 test tasks, as the issue asks
		contexts = 10
		bots     = 4
	)
	broker, err := amqptest.Start(amqptest.Options{Log: t.Logf})
	// (t.Logf shows the URL: guest:guest on a private node, not a secret.)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { broker.Stop() })
	// Task keys are deduped in the state database, which every process
	// that publishes or ends tasks shares.
	pg, err := pgtest.Start(pgtest.Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { pg.Stop() })
	database := pg.NewDatabase(t)
	gh := githubtest.NewServer(t, e2e.Token)

	var yaml strings.Builder
	yaml.WriteString("contexts:\n")
	for i := range contexts {
		fmt.Fprintf(&yaml, "  - name: c%02d\n    command: echo ok %d\n", i, i)
	}
	repo := t.TempDir()
	var shas []string
	for range commits {
		shas = append(shas, e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": yaml.String()}))
	}

	store := t.TempDir() // shared by the processes, as NFS would be
	common := []string{"--queue", broker.URL, "--database", database, "--log-level", "debug", "--lease", "3s",
		"--max-deliveries", "10"}
	// Two of each, as behind a load balancer. Every webhook goes to both
	// hooks; both reporters take events and serve the API.
	var hookAddrs, repAddrs []string
	var hooks, reps []*proc
	for i := range 2 {
		addr := e2e.FreeAddr(t)
		hookAddrs = append(hookAddrs, addr)
		hooks = append(hooks, startProc(t, fmt.Sprintf("hook-%d", i), append([]string{"hook", "--data-dir", t.TempDir(), "--listen", addr}, common...)...))
		addr = e2e.FreeAddr(t)
		repAddrs = append(repAddrs, addr)
		reps = append(reps, startProc(t, fmt.Sprintf("reporter-%d", i), append([]string{"reporter", "--data-dir", t.TempDir(), "--listen", addr,
			"--github-api", gh.URL + "/", "--store-dir", store}, common...)...))
	}
	repAddr := repAddrs[0]
	var botProcs []*proc
	for i := range bots {
		botProcs = append(botProcs, startProc(t, fmt.Sprintf("bot-%d", i), append([]string{"bot", "--data-dir", t.TempDir(),
			"--bot-name", fmt.Sprintf("bot-%d", i), "--slots", "4", "--retry-delays", "200ms", "--store-dir", store}, common...)...))
	}
	for i := range 2 {
		waitHTTP(t, "http://"+hookAddrs[i]+"/metrics")
		waitHTTP(t, "http://"+repAddrs[i]+"/healthz")
	}

	// Malformed messages first: the bots must dead-letter them and go on.
	raw, err := amqp.Open(amqp.Config{URL: broker.URL, Prefix: brokerPrefix, ParkAfter: parkAfter,
		Options: queue.Options{Lease: time.Minute, MaxDeliveries: 5, Poll: queuePoll, Clock: clockwork.NewRealClock()}})
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	malformed := []string{"not json at all", `{"version":99,"kind":"test","repo":{"name":"a/b","clone_url":"x"}}`}
	for _, body := range malformed {
		if err := raw.PublishRaw(t.Context(), "public", []byte(body)); err != nil {
			t.Fatalf("PublishRaw: %v", err)
		}
	}
	raw.Close()

	// Chaos from the start, while webhooks arrive and plans queue their
	// tasks: a bot SIGKILLed and restarted every 3-6s. A plan's tasks go
	// with its ack; a bot killed right after that commit leaves tasks
	// without their dedupe locks, which their claimers take
	// (docs/distributed.md, "A plan's tasks go with its ack").
	stopChaos := make(chan struct{})
	chaosDone := make(chan struct{})
	var stopOnce sync.Once
	endChaos := func() {
		stopOnce.Do(func() { close(stopChaos) })
		<-chaosDone
	}
	t.Cleanup(endChaos) // before the processes' cleanups, on any failure
	var kills int
	go func() {
		defer close(chaosDone)
		for {
			select {
			case <-stopChaos:
				return
			case <-time.After(time.Duration(3000+rand.IntN(3000)) * time.Millisecond):
			}
			b := botProcs[rand.IntN(len(botProcs))]
			b.kill()
			kills++
			b.start()
		}
	}()
	// The broker and then the database restart while webhooks arrive and
	// plans publish their tasks: a publish during an outage waits for
	// the reconnect or fails with 5xx, and the forge (here: deliver) sends
	// the webhook again. Every webhook is sent to both hooks at once, as
	// a forge's redelivery can overtake a slow first delivery.
	start := time.Now()
	deliver := func(i int, body []byte) {
		var wg sync.WaitGroup
		for _, addr := range hookAddrs {
			wg.Go(func() {
				for try := 0; ; try++ {
					code := postWebhook(t, "http://"+addr+"/hook/github", fmt.Sprintf("push-%d", i), body)
					if code/100 == 2 {
						return
					}
					if try == 60 {
						t.Errorf("webhook %d to %s: status %d after %d tries", i, addr, code, try+1)
						return
					}
					time.Sleep(time.Second)
				}
			})
		}
		wg.Wait()
	}
	var brokerRestarted, databaseRestarted, reporterKilled bool
	for i, sha := range shas {
		deliver(i, e2e.PushPayload("octo/hello", repo, sha))
		switch i {
		case commits / 4:
			// A reporter dies; the other takes its events, and the
			// finals it claimed once the claims lapse. It comes back
			// later, as a supervisor would restart it.
			reps[1].kill()
			reporterKilled = true
			t.Logf("reporter-1 killed after %d of %d webhooks", i+1, commits)
		case commits / 2:
			began := time.Now()
			if err := broker.Restart(); err != nil {
				t.Fatalf("restart broker: %v", err)
			}
			brokerRestarted = true
			reps[1].start()
			t.Logf("broker restarted in %s, after %d of %d webhooks", time.Since(began).Round(time.Millisecond), i+1, commits)
		case 3 * commits / 4:
			// Down for a few seconds, so that every process meets it.
			if err := pg.Down(); err != nil {
				t.Fatalf("stop PostgreSQL: %v", err)
			}
			time.Sleep(3 * time.Second)
			if err := pg.Up(); err != nil {
				t.Fatalf("start PostgreSQL: %v", err)
			}
			databaseRestarted = true
			t.Logf("PostgreSQL down for 3s, after %d of %d webhooks", i+1, commits)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	finals := func() int {
		n := 0
		for _, sha := range shas {
			for c := range contexts {
				if st, ok := gh.Final("octo/hello", sha, fmt.Sprintf("c%02d", c)); ok && st.State != "pending" {
					n++
				}
			}
		}
		return n
	}
	// explain logs what every process said about one task: what a
	// failure below needs to be understood after the fact.
	explain := func(t *testing.T, sha, context string) {
		t.Helper()
		for _, p := range append(append(append([]*proc{}, hooks...), reps...), botProcs...) {
			for _, line := range strings.Split(p.logs.String(), "\n") {
				if strings.Contains(line, sha) && strings.Contains(line, context) {
					t.Logf("%s: %s", p.name, line)
				}
			}
		}
	}
	lastLog, deadline := time.Now(), time.Now().Add(480*time.Second)
	for n := finals(); n < commits*contexts; n = finals() {
		if time.Since(lastLog) > 15*time.Second {
			t.Logf("%s: %d of %d tasks final", time.Since(start).Round(time.Second), n, commits*contexts)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			endChaos()
			for _, sha := range shas {
				missing := 0
				for c := range contexts {
					if st, ok := gh.Final("octo/hello", sha, fmt.Sprintf("c%02d", c)); !ok || st.State == "pending" {
						t.Errorf("no final status for %s:c%02d (last: %+v)", sha, c, st)
						explain(t, sha, fmt.Sprintf("c%02d", c))
						missing++
					}
				}
				if missing == contexts {
					explain(t, sha, "") // the plan's story
				}
			}
			t.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
	endChaos()
	t.Logf("%d tasks final after %s, %d bot kills", commits*contexts, time.Since(start).Round(time.Second), kills)
	if !brokerRestarted || !databaseRestarted || !reporterKilled {
		t.Errorf("broker restarted %v, database restarted %v, reporter killed %v: the test did not test what it says",
			brokerRestarted, databaseRestarted, reporterKilled)
	}
	time.Sleep(3 * time.Second) // duplicates would come now

	t.Run("exactly one final status per task", func(t *testing.T) {
		type task struct{ sha, context string }
		count := map[task]int{}
		for _, st := range gh.Statuses() {
			if st.State != "pending" && st.Context != "turtles" {
				count[task{st.SHA, st.Context}]++
				if st.State != "success" {
					t.Errorf("%s %s: %s (%s), want success", st.SHA[:8], st.Context, st.State, st.Description)
				}
			}
		}
		for k, n := range count {
			if n != 1 {
				t.Errorf("%s %s: %d final statuses, want 1", k.sha, k.context, n)
				explain(t, k.sha, k.context)
			}
		}
		if len(count) != commits*contexts {
			t.Errorf("%d tasks with a final status, want %d", len(count), commits*contexts)
		}
	})
	// A killed bot's attempt ends as infra, saying which bot stopped
	// heart-beating (issue 22); the task then succeeds exactly once.
	t.Run("exactly one success per task; every lost attempt ends as infra", func(t *testing.T) {
		lost := 0
		for _, sha := range shas {
			tasks, err := fetchTasks(t.Context(), "http://"+repAddr+"/api/v1/tasks?sha="+sha)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, x := range tasks {
				if x.Context == "turtles" {
					continue
				}
				n++
				succeeded, other := 0, 0
				for _, a := range x.Attempts {
					switch {
					case a.Outcome == nil:
						t.Errorf("%s %s: attempt %d never ended (state %s)", sha[:8], x.Context, a.Number, a.State)
					case a.Outcome.Class == "success":
						succeeded++
					case a.Outcome.Class == "infra" && strings.Contains(a.Outcome.Reason, "stopped heart-beating"):
						lost++
					default:
						other++
						t.Errorf("%s %s: attempt %d ended %+v, want success or a lost bot", sha[:8], x.Context, a.Number, *a.Outcome)
					}
				}
				if x.Outcome == nil || x.Outcome.Class != "success" || succeeded != 1 {
					t.Errorf("%s %s: outcome %v with %d successful attempts, want success from exactly 1", sha[:8], x.Context, x.Outcome, succeeded)
					explain(t, sha, x.Context)
				}
			}
			if n != contexts {
				t.Errorf("%s: %d test tasks recorded, want %d", sha[:8], n, contexts)
			}
		}
		t.Logf("%d attempts lost with their bots ended as infra", lost)
	})
	t.Run("the history equals the forge's statuses on every reporter", func(t *testing.T) {
		want := map[turtles.Class]string{turtles.Success: "success", turtles.Failure: "failure", turtles.Infra: "error"}
		for _, sha := range shas {
			var first []byte
			for i, addr := range repAddrs {
				tasks, err := fetchTasks(t.Context(), "http://"+addr+"/api/v1/tasks?sha="+sha)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(tasks)
				if i == 0 {
					first = b
				} else if !bytes.Equal(first, b) {
					t.Errorf("%s: reporter-%d's history differs from reporter-0's:\n%s\n%s", sha[:8], i, b, first)
				}
				if i > 0 {
					continue
				}
				for _, x := range tasks {
					if x.Context == turtles.PlanContext {
						continue
					}
					st, ok := gh.Final("octo/hello", sha, x.Context)
					switch {
					case !ok || x.Outcome == nil:
						t.Errorf("%s %s: forge %+v (%v), history outcome %v", sha[:8], x.Context, st, ok, x.Outcome)
					case st.State != want[x.Outcome.Class] || st.TargetURL != x.LogURL:
						t.Errorf("%s %s: forge says %s at %s, the history %s at %s", sha[:8], x.Context, st.State, st.TargetURL,
							x.Outcome.Class, x.LogURL)
					}
				}
			}
		}
	})
	t.Run("malformed messages dead-lettered with a reason", func(t *testing.T) {
		resp, err := http.Get("http://" + repAddr + "/api/v1/deadletters")
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			DeadLetters []queue.DeadLetter `json:"dead_letters"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		dls := out.DeadLetters
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decode dead letters: %v", err)
		}
		got := map[string]bool{}
		for _, dl := range dls {
			got[dl.Body] = dl.Reason != ""
		}
		for _, body := range malformed {
			if !got[body] {
				t.Errorf("dead letters %+v lack %q with a reason", dls, body)
			}
		}
		logged := false
		for _, b := range botProcs {
			if strings.Contains(b.logs.String(), "dead-lettering a malformed message") {
				logged = true
			}
		}
		if !logged {
			t.Errorf("no bot logged the dead-lettering of a malformed message")
		}
	})
	t.Run("submit publishes to RabbitMQ", func(t *testing.T) {
		sha := e2e.GitRepo(t, repo, map[string]string{"submitted": "yes"})
		args := []string{"submit", "--queue", broker.URL, "--database", database, "--data-dir", t.TempDir(), "--repo-url", repo, "--sha", sha,
			"--repo", "octo/hello", "--context", "by-hand", "--command", "echo submitted"}
		code, out := runTurtles(t, args...)
		if code != 0 || !strings.Contains(out, "queued octo/hello@"+sha) {
			t.Fatalf("submit: exit %d: %s", code, out)
		}
		e2e.WaitFor(t, 60*time.Second, "a final status of the submitted task", func() bool {
			st, ok := gh.Final("octo/hello", sha, "by-hand")
			return ok && st.State == "success"
		})
	})
	for _, p := range append(append(append([]*proc{}, hooks...), reps...), botProcs...) {
		if strings.Contains(p.logs.String(), "guest:guest@") {
			t.Errorf("%s logged the broker password", p.name)
		}
	}
}
