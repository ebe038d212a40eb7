package bot

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/sandbox"
	"github.com/turtles-ci/turtles/store"
)

const testConfig = `contexts:
  - name: ok
    command: echo hello from $TURTLES_CONTEXT
  - name: fail
    command: echo failing; exit 3
    pool: other
`

// newRepo makes a real git repository with one commit holding files and
// returns its directory and the commit.
func newRepo(t *testing.T, files map[string]string) (dir, sha string) {
	t.Helper()
	dir = t.TempDir()
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"commit", "-q", "--allow-empty", "-m", "test"},
	} {
		gitT(t, dir, args...)
	}
	return dir, gitT(t, dir, "rev-parse", "HEAD")
}

func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// harness is a bot with a real queue, store and repository.
type harness struct {
	t       *testing.T
	repo    string
	sha     string
	db      *sqlite.DB
	st      *store.Dir
	workDir string
	reg     *prometheus.Registry
	cfg     Config
}

func newHarness(t *testing.T, files map[string]string, opts queue.Options) *harness {
	t.Helper()
	if files == nil {
		files = map[string]string{".turtles.yaml": testConfig}
	}
	repo, sha := newRepo(t, files)
	// What cmd/turtles would pass, where a test sets nothing else.
	opts.Poll, opts.Clock = 10*time.Millisecond, clockwork.NewRealClock()
	if opts.Lease == 0 {
		opts.Lease = 2 * time.Minute
	}
	if opts.MaxDeliveries == 0 {
		opts.MaxDeliveries = 5
	}
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "queue.db"), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, repo: repo, sha: sha, db: db, st: st, workDir: t.TempDir(), reg: prometheus.NewRegistry()}
	h.cfg = Config{
		Name:        "bot-1",
		Queue:       db,
		Events:      db,
		Store:       st,
		WorkDir:     h.workDir,
		LogURL:      func(t turtles.Task) string { return "https://ci.example/logs/" + store.AttemptPrefix(t) },
		Pool:        turtles.DefaultPool,
		Slots:       1,
		RetryDelays: []time.Duration{10 * time.Millisecond}, MaxDeliveries: 5,
		Heartbeat:  time.Second,
		Clock:      clockwork.NewRealClock(),
		KillGrace:  300 * time.Millisecond,
		VM:         testVM("", h.workDir),
		Registerer: h.reg,
		// Tasks here are untrusted and image-less: they run isolated,
		// as on a pool the operator dedicated to such work.
		Sandbox:       testSandbox(t),
		UntrustedHost: true,
		Policy:        config.Policy{HostPools: []string{turtles.DefaultPool, "other"}},
	}
	return h
}

var (
	sandboxOnce sync.Once
	sandboxBox  *sandbox.Sandbox
	sandboxErr  error
)

// visibleDir is a directory an isolated task can see (not write): the
// tests' gates live there.
func visibleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o005)
		}
	}
	return dir
}

// testSandbox is one sandbox for the package's tests (bubblewrap is
// installed by scripts/deps.sh, so its absence fails the test).
func testSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sandboxOnce.Do(func() {
		sandboxBox, sandboxErr = sandbox.New(sandbox.Config{UIDBase: 1879048192, UIDs: 8, HostTmp: true})
	})
	if sandboxErr != nil {
		t.Fatalf("sandbox: %v", sandboxErr)
	}
	return sandboxBox
}

func (h *harness) task(kind turtles.Kind, context, command string) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion,
		Kind:    kind,
		Repo:    turtles.Repo{Name: "owner/repo", CloneURL: "file://" + h.repo},
		SHA:     h.sha,
		Context: context,
		Command: command,
		Pool:    turtles.DefaultPool,
		Attempt: 1,
		Created: time.Now(),
	}
}

func (h *harness) publish(t turtles.Task) {
	h.t.Helper()
	if err := h.db.Publish(context.Background(), t); err != nil {
		h.t.Fatalf("Publish: %v", err)
	}
}

// running is a bot under test.
type running struct {
	cancel, drain context.CancelFunc
	done          chan error
}

// start runs a bot with h.cfg; it is stopped at the end of the test.
func (h *harness) start() *running {
	h.t.Helper()
	b, err := New(h.cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	drain, cancelDrain := context.WithCancel(context.Background())
	r := &running{cancel: cancel, drain: cancelDrain, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx, drain) }()
	h.t.Cleanup(func() { r.stop(h.t, true) })
	return r
}

// stop stops claiming (and with drain, running) and waits for Run.
func (r *running) stop(t *testing.T, drain bool) error {
	r.cancel()
	if drain {
		r.drain()
	}
	select {
	case err := <-r.done:
		r.done <- err // for a second stop
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("bot did not stop")
		return nil
	}
}

// events receives events until one satisfies until, failing after a
// deadline.
func (h *harness) events(until func(turtles.Event) bool) []turtles.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var evs []turtles.Event
	for {
		d, err := h.db.Receive(ctx)
		if err != nil {
			h.t.Fatalf("after events %v: Receive: %v", summarize(evs), err)
		}
		if err := d.Ack(ctx); err != nil {
			h.t.Fatal(err)
		}
		// Heartbeats come as often as a task lasts longer than the
		// heartbeat interval on a loaded machine: no test counts them.
		if d.Event().Type == turtles.EventHeartbeat {
			continue
		}
		evs = append(evs, d.Event())
		if until(d.Event()) {
			return evs
		}
	}
}

// quiet checks that the event log holds no event but heartbeats and
// those of the types allowed. Call it once the bot emits no more (its Run
// returned, or waitIdle saw its slots idle): it emits a barrier event of
// its own and receives up to it, so what came before is all there is, and
// no wait can pass for an event that comes late.
func (h *harness) quiet(allowed ...turtles.EventType) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	barrier := turtles.Event{ID: "barrier-" + strconv.FormatInt(time.Now().UnixNano(), 10), Type: turtles.EventHeartbeat,
		Task: h.task(turtles.KindTest, "barrier", ""), Bot: "test", Time: time.Now()}
	if err := h.db.Emit(ctx, barrier); err != nil {
		h.t.Fatal(err)
	}
	for {
		d, err := h.db.Receive(ctx)
		if err != nil {
			h.t.Fatalf("the barrier event never came: %v", err)
		}
		ev := d.Event()
		if err := d.Ack(ctx); err != nil {
			h.t.Fatal(err)
		}
		if ev.ID == barrier.ID {
			return
		}
		if ev.Type != turtles.EventHeartbeat && !slices.Contains(allowed, ev.Type) {
			h.t.Errorf("unexpected event %s of %s", ev.Type, ev.Task.Key())
		}
	}
}

func finishedFor(key string) func(turtles.Event) bool {
	return func(ev turtles.Event) bool { return ev.Type == turtles.EventFinished && ev.Task.Key() == key }
}

// summarize is the events as "type context attempt [class]" for diffs.
func summarize(evs []turtles.Event) []string {
	var s []string
	for _, ev := range evs {
		x := string(ev.Type) + " " + ev.Task.Context + " " + string(rune('0'+ev.Task.Attempt))
		if ev.Outcome != nil {
			x += " " + string(ev.Outcome.Class)
		}
		s = append(s, x)
	}
	return s
}

func (h *harness) object(key string) (string, bool) {
	h.t.Helper()
	rc, _, err := h.st.Get(context.Background(), key)
	if errors.Is(err, store.ErrNotExist) {
		return "", false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b), true
}

func (h *harness) result(t turtles.Task) turtles.Result {
	h.t.Helper()
	data, ok := h.object(store.AttemptPrefix(t) + store.ResultName)
	if !ok {
		h.t.Fatalf("no result.json for %s attempt %d", t.Key(), t.Attempt)
	}
	var res turtles.Result
	if err := json.Unmarshal([]byte(data), &res); err != nil {
		h.t.Fatal(err)
	}
	return res
}

func (h *harness) log(t turtles.Task) string {
	h.t.Helper()
	data, ok := h.object(store.AttemptPrefix(t) + store.LogName)
	if !ok {
		h.t.Fatalf("no log for %s attempt %d", t.Key(), t.Attempt)
	}
	return data
}

// waitIdle waits until the bot removed every workspace.
func (h *harness) waitIdle() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, _ := filepath.Glob(filepath.Join(h.workDir, workspacePrefix+"*"))
		// The busy gauge drops in handle's first deferred call, which runs
		// last: once it is 0 the task's metrics are final too.
		busy := testutil.ToFloat64(h.metrics().busy)
		if len(ws) == 0 && busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("bot not idle: workspaces %v, busy slots %v", ws, busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metrics are the collectors of the harness's bots, which share them.
func (h *harness) metrics() *botMetrics {
	h.t.Helper()
	m, err := newMetrics(h.reg)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// taskCount is turtles_bot_tasks_total{pool="public",class=label}.
func (h *harness) taskCount(label string) float64 {
	return testutil.ToFloat64(h.metrics().tasks.WithLabelValues(turtles.DefaultPool, label))
}

// queued is how many tasks the queue holds in any state but dead.
func (h *harness) queued() int {
	h.t.Helper()
	stats, err := h.db.Stats(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, s := range stats {
		if s.State != "dead" {
			n += s.Count
		}
	}
	return n
}

func TestTestTaskOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		context string
		command string
		want    turtles.Outcome
		wantLog []string
	}{
		{
			name:    "success from .turtles.yaml",
			context: "ok",
			want:    turtles.Outcome{Class: turtles.Success},
			wantLog: []string{"turtles: checking out file://", "turtles: running: echo hello from $TURTLES_CONTEXT", "hello from ok\n", "turtles: exit status 0 after"},
		},
		{
			name:    "failure with exit code",
			context: "fail",
			command: "echo failing; exit 3",
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: 3, Reason: "exit status 3", Verdict: turtles.VerdictRegression},
			wantLog: []string{"failing\n", "turtles: exit status 3 after"},
		},
		{
			name:    "context missing from .turtles.yaml",
			context: "nope",
			want:    turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "context nope is not in .turtles.yaml", Verdict: turtles.VerdictRegression},
			wantLog: []string{"context nope is not in .turtles.yaml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil, queue.Options{})
			task := h.task(turtles.KindTest, tt.context, tt.command)
			h.publish(task)
			h.start()
			evs := h.events(finishedFor(task.Key()))
			if diff := cmp.Diff([]string{"started " + tt.context + " 1", "finished " + tt.context + " 1 " + string(tt.want.Class)}, summarize(evs)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, *evs[len(evs)-1].Outcome); diff != "" {
				t.Errorf("finished outcome (-want +got):\n%s", diff)
			}
			wantURL := "https://ci.example/logs/" + store.AttemptPrefix(task)
			if evs[0].LogURL != wantURL || evs[0].Bot != "bot-1" {
				t.Errorf("started event has log URL %q and bot %q, want %q and bot-1", evs[0].LogURL, evs[0].Bot, wantURL)
			}
			res := h.result(task)
			if diff := cmp.Diff(tt.want, res.Outcome); diff != "" {
				t.Errorf("result.json outcome (-want +got):\n%s", diff)
			}
			if res.Bot != "bot-1" || res.LogURL != wantURL || res.Task.Key() != task.Key() || res.Finished.Before(res.Started) {
				t.Errorf("result.json = %+v", res)
			}
			log := h.log(task)
			for _, w := range tt.wantLog {
				if !strings.Contains(log, w) {
					t.Errorf("log does not contain %q:\n%s", w, log)
				}
			}
			h.waitIdle()
			if n := h.queued(); n != 0 {
				t.Errorf("queue holds %d tasks after the ack, want 0", n)
			}
			if got := h.taskCount(string(tt.want.Class)); got != 1 {
				t.Errorf("turtles_bot_tasks_total{class=%q} = %v, want 1", tt.want.Class, got)
			}
		})
	}
}

// TestTimeoutKillsProcessGroup is about the bot that cannot isolate
// tasks (trusted work only): its process group is all it has. The
// sandbox's own tests show that an isolated task leaves nothing.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	h.cfg.Sandbox = nil
	pidFile := filepath.Join(t.TempDir(), "pid")
	task := h.task(turtles.KindTest, "slow",
		`sh -c 'trap "" TERM; echo $$ > `+pidFile+`; exec sleep 60' & echo waiting; sleep 60`)
	task.Timeout = turtles.Duration(time.Second)
	task.Trusted = true
	h.publish(task)
	h.start()
	start := time.Now()
	evs := h.events(finishedFor(task.Key()))
	if elapsed := time.Since(start); elapsed > 8*time.Second {
		t.Errorf("timed-out task took %s to finish", elapsed)
	}
	want := turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: "timed out after 1s", Verdict: turtles.VerdictRegression}
	if diff := cmp.Diff(want, *evs[len(evs)-1].Outcome); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
	waitDead(t, pidFromFile(t, pidFile))
	if log := h.log(task); !strings.Contains(log, "waiting\n") || !strings.Contains(log, "timed out after 1s") {
		t.Errorf("log:\n%s", log)
	}
	h.waitIdle()
}

func TestPlan(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
	plan.PR = 7
	h.publish(plan)
	h.start()
	evs := h.events(finishedFor(plan.Key()))
	want := []string{"started turtles 1", "queued ok 1", "queued fail 1", "finished turtles 1 success"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// "fail" went to pool other, which this bot does not serve.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := h.db.Claim(ctx, "other")
	if err != nil {
		t.Fatalf("Claim(other): %v", err)
	}
	got := d.Task()
	wantTask := plan
	wantTask.Kind, wantTask.Context, wantTask.Command, wantTask.Pool = turtles.KindTest, "fail", "echo failing; exit 3", "other"
	wantTask.Timeout = turtles.Duration(time.Hour)
	if diff := cmp.Diff(wantTask, got, cmpIgnoreCreated); diff != "" {
		t.Errorf("published task (-want +got):\n%s", diff)
	}
	d.AckWithTasks(ctx, nil, nil)
	// "ok" went to this bot's pool and runs there.
	h.events(finishedFor(wantTask.Key()[:len(wantTask.Key())-len("fail")] + "ok"))
	if log := h.log(plan); !strings.Contains(log, "turtles: queuing ok in pool public") {
		t.Errorf("plan log:\n%s", log)
	}
	h.waitIdle()
}

var cmpIgnoreCreated = cmp.Transformer("noCreated", func(t turtles.Task) turtles.Task {
	t.Created = time.Time{}
	return t
})

func TestPlanFailures(t *testing.T) {
	tests := []struct {
		name   string
		files  map[string]string
		reason string
	}{
		{
			name:   "config error names file and line",
			files:  map[string]string{".turtles.yaml": "contexts:\n  - name: a\n    comand: make\n"},
			reason: `.turtles.yaml:3: unknown key "comand"`,
		},
		{
			name:   "no config",
			files:  map[string]string{"README": "hi\n"},
			reason: "no .turtles.yaml in this commit",
		},
		{
			name:   "config is a symlink",
			files:  map[string]string{},
			reason: ".turtles.yaml is a symbolic link; it must be a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.files, queue.Options{})
			if len(tt.files) == 0 {
				os.Symlink("/etc/passwd", filepath.Join(h.repo, ".turtles.yaml"))
				gitT(t, h.repo, "add", "-A")
				gitT(t, h.repo, "commit", "-q", "-m", "link")
				h.sha = gitT(t, h.repo, "rev-parse", "HEAD")
			}
			plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
			h.publish(plan)
			h.start()
			evs := h.events(finishedFor(plan.Key()))
			want := turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: tt.reason}
			if diff := cmp.Diff(want, *evs[len(evs)-1].Outcome); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if len(evs) != 2 {
				t.Errorf("events %v, want started and finished only", summarize(evs))
			}
			if log := h.log(plan); !strings.Contains(log, tt.reason) {
				t.Errorf("log does not contain %q:\n%s", tt.reason, log)
			}
		})
	}
}

func TestUnknownCommitIsInfraThenDead(t *testing.T) {
	h := newHarness(t, nil, queue.Options{MaxDeliveries: 2})
	task := h.task(turtles.KindTest, "ok", "")
	task.SHA = strings.Repeat("ab", 20)
	h.publish(task)
	h.start()
	evs := h.events(finishedFor(task.Key()))
	want := []string{"started ok 1", "retrying ok 1 infra", "started ok 2", "finished ok 2 infra"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// The status says what failed in turtles' words; git's own are in
	// the task's log, where it wrote them, and in the bot's log.
	if r, want := evs[len(evs)-1].Outcome.Reason, "gave up after 2 deliveries: the repository has no commit abababababab in any branch or pull request"; r != want {
		t.Errorf("final reason %q, want %q", r, want)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		a := task
		a.Attempt = attempt
		if res := h.result(a); res.Outcome.Class != turtles.Infra {
			t.Errorf("attempt %d result %+v, want infra", attempt, res.Outcome)
		}
		if log := h.log(a); !strings.Contains(log, "not a test failure") || !strings.Contains(log, "not our ref") {
			t.Errorf("attempt %d log:\n%s", attempt, log)
		}
	}
	dead, err := h.db.DeadLetters(context.Background())
	if err != nil || len(dead) != 1 || dead[0].Task.Key() != task.Key() {
		t.Errorf("dead letters = %+v, %v; want the task", dead, err)
	}
	h.waitIdle()
}

// TestRenumberedDeadLetterReportsItsAttempt: a task published again after
// a run took attempt 1's prefix runs as later attempts than the queue
// counts. When it is dead-lettered, the queue's final event names the
// queue's count, older than the attempt that started; the bot's own final
// event must name the attempt that ran, or the reporter drops the end.
func TestRenumberedDeadLetterReportsItsAttempt(t *testing.T) {
	h := newHarness(t, nil, queue.Options{MaxDeliveries: 2})
	task := h.task(turtles.KindTest, "ok", "")
	task.SHA = strings.Repeat("ab", 20)
	if _, err := store.ClaimAttempt(context.Background(), h.st, task, "earlier-bot", time.Now()); err != nil {
		t.Fatal(err)
	}
	h.publish(task)
	h.start()
	last := func(ev turtles.Event) bool { return finishedFor(task.Key())(ev) && ev.Task.Attempt == 3 }
	evs := h.events(last)
	want := []string{"started ok 2", "retrying ok 2 infra", "started ok 3", "finished ok 2 infra", "finished ok 3 infra"}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if r, want := evs[len(evs)-1].Outcome.Reason, "gave up after 2 deliveries: the repository has no commit abababababab in any branch or pull request"; r != want {
		t.Errorf("final reason %q, want %q", r, want)
	}
	h.waitIdle()
}

// startedAndLogging publishes a task that prints a line and then blocks,
// and waits until the bot runs it and the line is in the stored log.
func (h *harness) startedAndLogging(command string) turtles.Task {
	h.t.Helper()
	task := h.task(turtles.KindTest, "long", command)
	h.publish(task)
	h.events(func(ev turtles.Event) bool { return ev.Type == turtles.EventStarted })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if log, _ := h.object(store.AttemptPrefix(task) + store.LogName); strings.Contains(log, "running now\n") {
			return task
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("log of a running task never showed its output")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLiveLog(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	gate := filepath.Join(visibleDir(t), "gate")
	h.start()
	task := h.startedAndLogging(`echo running now; while [ ! -e ` + gate + ` ]; do sleep 0.05; done; echo after the gate`)
	if log := h.log(task); strings.Contains(log, "\nafter the gate") {
		t.Fatalf("log shows output the command has not printed yet:\n%s", log)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.events(finishedFor(task.Key()))
	if log := h.log(task); !strings.Contains(log, "running now\nafter the gate\nturtles: exit status 0") {
		t.Errorf("final log:\n%s", log)
	}
}

func TestDrainReleasesRunningTask(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	r := h.start()
	task := h.startedAndLogging("echo running now; sleep 60")
	start := time.Now()
	if err := r.stop(t, true); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("drain took %s", elapsed)
	}
	h.quiet() // Run returned: the bot emitted all it will
	if _, ok := h.object(store.AttemptPrefix(task) + store.ResultName); ok {
		t.Errorf("a drained attempt stored a result")
	}
	// Released without counting: the next bot runs the same attempt.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := h.db.Claim(ctx, turtles.DefaultPool)
	if err != nil {
		t.Fatalf("Claim after drain: %v", err)
	}
	if d.Count() != 1 || d.Task().Attempt != 1 {
		t.Errorf("after drain: delivery %d, attempt %d; want 1 and 1", d.Count(), d.Task().Attempt)
	}
	h.waitIdle()
	h.wantTaskCounts(`turtles_bot_tasks_total{class="released",pool="public"} 1`)
}

// wantTaskCounts compares turtles_bot_tasks_total with want, its samples
// in the text exposition format: a label not in want must not be there.
func (h *harness) wantTaskCounts(want ...string) {
	h.t.Helper()
	exp := "# HELP turtles_bot_tasks_total " + tasksHelp + "\n# TYPE turtles_bot_tasks_total counter\n" + strings.Join(want, "\n") + "\n"
	if err := testutil.CollectAndCompare(h.metrics().tasks, strings.NewReader(exp)); err != nil {
		h.t.Error(err)
	}
}

func TestStopWaitsForRunningTask(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	gate := filepath.Join(visibleDir(t), "gate")
	r := h.start()
	task := h.startedAndLogging(`echo running now; while [ ! -e ` + gate + ` ]; do sleep 0.05; done`)
	r.cancel() // stop claiming, keep running
	os.WriteFile(gate, nil, 0o644)
	if err := r.stop(t, false); err != nil {
		t.Fatal(err)
	}
	// Run returned only after the task finished: its finished event is
	// in the log already, before any event emitted now. A Run that
	// returned at the cancel would have left the task to finish later.
	barrier := h.task(turtles.KindTest, "barrier", "")
	if err := h.db.Emit(context.Background(), turtles.Event{ID: "barrier", Type: turtles.EventQueued, Task: barrier}); err != nil {
		t.Fatal(err)
	}
	evs := h.events(func(ev turtles.Event) bool { return finishedFor(task.Key())(ev) || ev.ID == "barrier" })
	if last := evs[len(evs)-1]; last.ID == "barrier" {
		t.Fatalf("Run returned before its running task finished: events %v", summarize(evs))
	} else if c := last.Outcome.Class; c != turtles.Success {
		t.Errorf("outcome %s, want success", c)
	}
}

func TestLeaseLostReportsNothing(t *testing.T) {
	h := newHarness(t, nil, queue.Options{Lease: 300 * time.Millisecond})
	// The bot's clock stands still, so it sends no heartbeat and the
	// queue's lease runs out; the test then makes it beat once.
	clock := clockwork.NewFakeClock()
	h.cfg.Clock = clock
	r := h.start()
	task := h.startedAndLogging("echo running now; sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := h.db.Claim(ctx, turtles.DefaultPool)
	if err != nil {
		t.Fatalf("Claim of the expired lease: %v", err)
	}
	if d.Task().Attempt != 2 {
		t.Errorf("taken-over task has attempt %d, want 2", d.Task().Attempt)
	}
	// Stop claiming (the test's own lease will run out too), but do not
	// drain: the bot must give up at its next heartbeat by itself.
	r.cancel()
	heartbeat(t, clock, h.cfg.Heartbeat)
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup's stop
	case <-time.After(5 * time.Second):
		t.Fatal("the bot kept running a task whose lease it lost")
	}
	h.waitIdle()
	// The only event is the queue's, which ended attempt 1 at the takeover.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	for {
		ed, err := h.db.Receive(ctx2)
		if err != nil {
			t.Fatalf("no lost event from the queue: %v", err)
		}
		ev := ed.Event()
		ed.Ack(ctx2)
		if ev.Type == turtles.EventLost && ev.Task.Attempt == 1 {
			break
		}
		if ev.Type != turtles.EventStarted && ev.Type != turtles.EventHeartbeat {
			t.Errorf("unexpected event %s of %s", ev.Type, ev.Task.Key())
		}
	}
	h.quiet() // Run returned: the bot emitted all it will
	if _, ok := h.object(store.AttemptPrefix(task) + store.ResultName); ok {
		t.Errorf("the bot that lost its lease stored a result")
	}
	// Lost, not cancelled: the attempt goes on with the new holder.
	h.wantTaskCounts(`turtles_bot_tasks_total{class="lost",pool="public"} 1`)
	if _, err := d.AckWithTasks(ctx, nil, nil); err != nil {
		t.Errorf("Ack by the new holder: %v", err)
	}
}

// heartbeat makes a bot on clock send the heartbeat of its one running
// task: it waits for the task's ticker, then moves the clock past it.
func heartbeat(t *testing.T, clock *clockwork.FakeClock, every time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("no running task waits for its heartbeat: %v", err)
	}
	clock.Advance(every)
}

func TestEnvironment(t *testing.T) {
	t.Setenv("TURTLES_TEST_BOT_SECRET", "hunter2")
	h := newHarness(t, nil, queue.Options{})
	h.cfg.Env = []string{"EXTRA=1", "TURTLES_SHA=fake", "PATH=/usr/bin:/bin"}
	task := h.task(turtles.KindTest, "env", `env > "$TURTLES_ARTIFACTS/env.txt"; pwd > "$TURTLES_ARTIFACTS/pwd.txt";
mkdir -p "$TURTLES_ARTIFACTS/sub"; echo nested > "$TURTLES_ARTIFACTS/sub/a.json"; ln -s /etc/passwd "$TURTLES_ARTIFACTS/link"`)
	task.PR = 42
	h.publish(task)
	h.start()
	evs := h.events(finishedFor(task.Key()))
	if c := evs[len(evs)-1].Outcome.Class; c != turtles.Success {
		t.Fatalf("outcome %+v\n%s", evs[len(evs)-1].Outcome, h.log(task))
	}
	prefix := store.AttemptPrefix(task) + store.ArtifactsName
	list, err := h.st.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, info := range list {
		keys = append(keys, strings.TrimPrefix(info.Key, prefix))
	}
	if diff := cmp.Diff([]string{"env.txt", "pwd.txt", "sub/a.json"}, keys); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	envTxt, _ := h.object(prefix + "env.txt")
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(envTxt), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	if _, ok := env["TURTLES_TEST_BOT_SECRET"]; ok {
		t.Errorf("the task saw the bot's environment:\n%s", envTxt)
	}
	pwd, _ := h.object(prefix + "pwd.txt")
	ws := filepath.Dir(strings.TrimSpace(pwd))
	for k, want := range map[string]string{
		"PATH": "/usr/bin:/bin", "EXTRA": "1", "CI": "true", "TURTLES": "1", "LANG": "C.UTF-8",
		"TURTLES_REPO": "owner/repo", "TURTLES_SHA": h.sha, "TURTLES_CONTEXT": "env",
		"TURTLES_ATTEMPT": "1", "TURTLES_PR": "42",
		"HOME": filepath.Join(ws, "home"), "TURTLES_ARTIFACTS": filepath.Join(ws, "artifacts"),
	} {
		if env[k] != want {
			t.Errorf("$%s = %q, want %q", k, env[k], want)
		}
	}
	if ws != sandbox.Root {
		t.Errorf("command ran in %s, want its isolated workspace %s", pwd, sandbox.Root)
	}
	if info, err := h.st.Stat(context.Background(), prefix+"sub/a.json"); err != nil || info.ContentType != "application/json" {
		t.Errorf("artifact sub/a.json: %+v, %v; want application/json", info, err)
	}
	h.waitIdle()
}

func TestSweepAndLock(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	old := filepath.Join(h.workDir, workspacePrefix+"left-behind")
	if err := os.MkdirAll(filepath.Join(old, "src", "ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(old, "src", "ro", "f"), []byte("x"), 0o444)
	os.Chmod(filepath.Join(old, "src", "ro"), 0o555)
	keep := filepath.Join(h.workDir, "not-a-workspace")
	os.WriteFile(keep, nil, 0o644)
	h.start()
	h.waitIdle()
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("sweep removed a file that is not a workspace: %v", err)
	}
	// A second bot on the same work directory is refused.
	b, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Run(ctx, ctx); err == nil || !strings.Contains(err.Error(), "in use by another bot") {
		t.Errorf("second Run on the same work directory = %v, want an in-use error", err)
	}
}

func TestNewValidates(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{name: "no name", change: func(c *Config) { c.Name = "" }},
		{name: "no queue", change: func(c *Config) { c.Queue = nil }},
		{name: "no store", change: func(c *Config) { c.Store = nil }},
		{name: "no work dir", change: func(c *Config) { c.WorkDir = "" }},
		{name: "bad env", change: func(c *Config) { c.Env = []string{"NOEQUALS"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := h.cfg
			tt.change(&cfg)
			if _, err := New(cfg); err == nil {
				t.Errorf("New accepted a config with %s", tt.name)
			}
		})
	}
}

// TestNewNamesWhatIsMissing: the bot decides no setting itself; New
// refuses a Config that lacks one and says which.
func TestNewNamesWhatIsMissing(t *testing.T) {
	h := newHarness(t, nil, queue.Options{})
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "complete", change: func(*Config) {}},
		{name: "no pool", change: func(c *Config) { c.Pool = "" }, wantErr: "no pool"},
		{name: "no slots", change: func(c *Config) { c.Slots = 0 }, wantErr: "Slots is 0"},
		{name: "no retry delays", change: func(c *Config) { c.RetryDelays = nil }, wantErr: "RetryDelays"},
		{name: "negative retry delay", change: func(c *Config) { c.RetryDelays = []time.Duration{-time.Second} }, wantErr: "RetryDelays"},
		{name: "no heartbeat", change: func(c *Config) { c.Heartbeat = 0 }, wantErr: "Heartbeat"},
		{name: "no clock", change: func(c *Config) { c.Clock = nil }, wantErr: "no clock"},
		{name: "no kill grace", change: func(c *Config) { c.KillGrace = 0 }, wantErr: "KillGrace"},
		{name: "no work dir", change: func(c *Config) { c.WorkDir = "" }, wantErr: "no work directory"},
		{name: "no VM dir", change: func(c *Config) { c.VM.Dir = "" }, wantErr: "VM: no machines directory"},
		{name: "no VM CPUs", change: func(c *Config) { c.VM.CPUs = 0 }, wantErr: "VM.CPUs is 0"},
		{name: "no VM memory", change: func(c *Config) { c.VM.MemoryMB = 0 }, wantErr: "VM.MemoryMB is 0"},
		{name: "no VM boot timeout", change: func(c *Config) { c.VM.BootTimeout = 0 }, wantErr: "VM.BootTimeout is 0s"},
		{name: "no VM stop grace", change: func(c *Config) { c.VM.StopGrace = 0 }, wantErr: "VM.StopGrace is 0s"},
		{name: "no QEMU", change: func(c *Config) { c.VM.QEMU = "" }, wantErr: "VM: no QEMU binary"},
		{name: "no images dir is allowed", change: func(c *Config) { c.VM.ImagesDir = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := h.cfg
			cfg.Registerer = nil
			tt.change(&cfg)
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
