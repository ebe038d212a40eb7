package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// The dashboard's fixture: a history with a pushed commit, a pull request
// with two pushes (the second one queued, running and retrying), flaky
// and failing tests, bots, a dead letter and an action, and fakes of what
// other packages provide (bots, actions, login).

// t0 is the fixture's clock: pages are read an hour after it.
var t0 = time.Date(2025, 3, 14, 15, 0, 0, 0, time.UTC)

const (
	shaMain = "aaaa000000000000000000000000000000000001"
	shaPR1  = "bbbb000000000000000000000000000000000002"
	shaPR2  = "cccc000000000000000000000000000000000003"
)

// fakeBots is Config.Bots.
type fakeBots struct {
	mu   sync.Mutex
	bots []state.Bot
}

func (f *fakeBots) Bots(context.Context) ([]state.Bot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]state.Bot(nil), f.bots...), nil
}

// fakeActions is Config.Actions.
type fakeActions map[string][]state.Action

func (f fakeActions) Actions(_ context.Context, task string) ([]state.Action, error) {
	return f[task], nil
}

// fakeQueue answers DeadLetters; nothing else of a queue is asked.
type fakeQueue struct {
	queue.Queue
	dead []queue.DeadLetter
}

func (f fakeQueue) DeadLetters(context.Context) ([]queue.DeadLetter, error) { return f.dead, nil }
func (f fakeQueue) RemoveDead(context.Context, queue.DeadLetter) (bool, error) {
	return false, errors.New("fakeQueue: RemoveDead is not faked")
}

// fakeAuth is Config.Auth: user is signed in, and may read every
// repository but those in private.
type fakeAuth struct {
	user, csrf string
	private    map[string]bool
	mu         sync.Mutex
	served     []string // paths it was asked to serve
}

func (a *fakeAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.served = append(a.served, r.Method+" "+r.URL.Path)
	a.mu.Unlock()
	w.WriteHeader(http.StatusTeapot)
}

func (a *fakeAuth) Who(*http.Request) (string, string) { return a.user, a.csrf }

func (a *fakeAuth) CanRead(_ *http.Request, repo string) bool { return !a.private[repo] }

// dash is a dashboard under test.
type dash struct {
	t     testing.TB
	h     history
	st    *store.Dir
	bots  *fakeBots
	dead  []queue.DeadLetter
	acts  fakeActions
	tasks map[string]turtles.Task // by name: "main/unit", "pr2/lint"
	n     int
}

func task(repo, sha, ref string, pr int, context string) turtles.Task {
	return turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: repo, CloneURL: "https://example.com/" + repo + ".git"},
		SHA:  sha, Ref: ref, PR: pr, Context: context, Pool: "public", Attempt: 1}
}

// event records ev at t0+at.
func (d *dash) event(typ turtles.EventType, t turtles.Task, at time.Duration, bot string, o *turtles.Outcome) {
	d.t.Helper()
	d.n++
	ev := turtles.Event{ID: "ev" + string(rune('A'+d.n/26)) + string(rune('a'+d.n%26)), Type: typ, Task: t, Bot: bot, Outcome: o, Time: t0.Add(at)}
	if err := d.h.Handle(context.Background(), ev); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dash) tests(t turtles.Task, at time.Duration, tests ...turtles.TestResult) {
	d.t.Helper()
	res := turtles.Result{Task: t, Bot: "bot-a", Started: t0.Add(at - time.Minute), Finished: t0.Add(at), Duration: 60,
		LogURL: LogURL("", t), Tests: tests, Outcome: turtles.Outcome{Class: turtles.Success}}
	if err := d.h.RecordTests(context.Background(), res); err != nil {
		d.t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	prefix := store.AttemptPrefix(t)
	for key, body := range map[string]string{store.ResultName: string(b), store.LogName: "ok 1 - " + t.Context + "\n"} {
		if err := d.st.Put(context.Background(), prefix+key, strings.NewReader(body), "text/plain"); err != nil {
			d.t.Fatal(err)
		}
	}
}

func pass(name string) turtles.TestResult {
	return turtles.TestResult{Name: name, Outcome: turtles.TestPassed, Source: "log", Line: 1, Duration: 0.5}
}

func fail(name string) turtles.TestResult {
	return turtles.TestResult{Name: name, Outcome: turtles.TestFailed, Source: "log", Line: 2, Message: "wrong password"}
}

// newDash records the fixture.
func newDash(t testing.TB) *dash {
	h, st := historyAndStore(t)
	d := &dash{t: t, h: h, st: st, acts: fakeActions{}, tasks: map[string]turtles.Task{}}
	success := &turtles.Outcome{Class: turtles.Success}
	failure := &turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Reason: "exit status 1"}
	infra := &turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "the VM did not boot within 5m0s"}
	flaky := &turtles.Outcome{Class: turtles.Success, Verdict: turtles.VerdictFlake, Reason: "flaky: TestLogin failed, then passed"}

	// A push to main: unit passed, lint failed.
	mu, ml := task("octo/hello", shaMain, "refs/heads/main", 0, "unit"), task("octo/hello", shaMain, "refs/heads/main", 0, "lint")
	d.tasks["main/unit"], d.tasks["main/lint"] = mu, ml
	for _, x := range []turtles.Task{mu, ml} {
		d.event(turtles.EventQueued, x, 0, "", nil)
		d.event(turtles.EventStarted, x, time.Minute, "bot-a", nil)
	}
	d.event(turtles.EventFinished, mu, 3*time.Minute, "bot-a", success)
	d.tests(mu, 3*time.Minute, pass("TestLogin"), pass("TestDB"))
	d.event(turtles.EventFinished, ml, 4*time.Minute, "bot-a", failure)
	d.acts[ml.ID()] = []state.Action{{Task: ml.ID(), Kind: "rerun", User: "github:alice", At: t0.Add(5 * time.Minute), Result: "queued again"}}

	// Pull request 7, first push: unit failed TestLogin, passed on a retry.
	p1 := task("octo/hello", shaPR1, "refs/pull/7/head", 7, "unit")
	d.tasks["pr1/unit"] = p1
	d.event(turtles.EventQueued, p1, 10*time.Minute, "", nil)
	d.event(turtles.EventStarted, p1, 11*time.Minute, "bot-b", nil)
	d.tests(p1, 12*time.Minute, pass("TestDB"), fail("TestLogin"))
	d.event(turtles.EventRetrying, p1, 12*time.Minute, "bot-b", failure)
	p1b := p1
	p1b.Attempt = 2
	d.event(turtles.EventStarted, p1b, 13*time.Minute, "bot-b", nil)
	d.event(turtles.EventFinished, p1b, 14*time.Minute, "bot-b", flaky)
	d.tests(p1b, 14*time.Minute, pass("TestDB"), pass("TestLogin"))

	// Its second push: unit runs, lint is queued, integration waits to retry.
	pu, pl, pi := task("octo/hello", shaPR2, "refs/pull/7/head", 7, "unit"), task("octo/hello", shaPR2, "refs/pull/7/head", 7, "lint"),
		task("octo/hello", shaPR2, "refs/pull/7/head", 7, "integration")
	d.tasks["pr2/unit"], d.tasks["pr2/lint"], d.tasks["pr2/integration"] = pu, pl, pi
	for _, x := range []turtles.Task{pu, pl, pi} {
		d.event(turtles.EventQueued, x, 50*time.Minute, "", nil)
	}
	d.event(turtles.EventStarted, pu, 55*time.Minute, "bot-a", nil)
	d.event(turtles.EventStarted, pi, 51*time.Minute, "bot-b", nil)
	d.event(turtles.EventRetrying, pi, 52*time.Minute, "bot-b", infra)

	d.bots = &fakeBots{bots: []state.Bot{
		{Name: "bot-a", Pool: "public", Slots: 2, Busy: 1, Tasks: []string{pu.ID()}, Started: t0, Seen: t0.Add(59 * time.Minute)},
		{Name: "bot-b", Pool: "public", Slots: 1, Started: t0, Seen: t0.Add(40 * time.Minute)},
	}}
	dl := task("octo/hello", shaMain, "refs/heads/main", 0, "deploy")
	d.dead = []queue.DeadLetter{{Task: dl, Reason: "delivered 5 times without an outcome", Pool: "public", Time: t0.Add(30 * time.Minute)}}
	return d
}

// config is the server's configuration over the fixture.
func (d *dash) config() Config {
	return Config{History: d.h, Store: d.st, Queue: fakeQueue{dead: d.dead}, Bots: d.bots, Actions: d.acts,
		Now: func() time.Time { return t0.Add(time.Hour) }, BotTimeout: 3 * time.Minute}
}

// serve answers one request to a server of cfg.
func serve(cfg Config, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	New(cfg).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}
