package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// The history web-pages reads: 100,000 tasks of 10 repositories, 5
// contexts per commit, over 60 days, with about a million test results.
// Tasks and attempts are written in bulk (a table at a time, many rows
// per statement) rather than event by event, which would take minutes;
// the test results go through state.DB.RecordTests, an attempt at a
// time as the recorder writes them, so that what the history derives
// from them (flakes, each test's days) is the real code's.

const (
	benchRepos    = 10
	benchCommits  = 20000 // × 5 contexts = 100,000 tasks
	benchSpan     = 60 * 24 * time.Hour
	benchTestsPer = 10 // tests per context
)

var benchContexts = []string{"unit", "lint", "integration", "debian-12/e2e", "fedora-40/e2e"}

// benchTestNames are the tests of a context; both e2e contexts run the
// same scenarios, so that a test's grid has several rows.
func benchTestNames(ctx string) []string {
	prefix := map[string]string{"unit": "TestUnit", "lint": "lint/check", "integration": "TestIntegration"}[ctx]
	if prefix == "" {
		prefix = "e2e/scenario_"
	}
	names := make([]string, benchTestsPer)
	for i := range names {
		names[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return names
}

// benchTable is the rows of one table, in column order.
type benchTable struct {
	name string
	cols []string
	rows [][]any
}

// benchData is the generated history.
type benchData struct {
	now      time.Time
	tasks    benchTable
	attempts benchTable
	// results are each attempt's test results, for RecordTests.
	results []turtles.Result
	// samples for the pages: commits (repo, sha), pull requests, tests,
	// tasks with stored files.
	commits [][2]string
	prs     []struct {
		repo string
		pr   int
	}
	testNames [][2]string // repo, test
	pageTasks []turtles.Task
	tests     int // results in all
}

func benchSHA(i int) string {
	sum := sha1.Sum([]byte(fmt.Sprintf("commit %d", i)))
	return hex.EncodeToString(sum[:])
}

// generate makes the history, ending at now, the same every time.
func generate(now time.Time) *benchData {
	rng := rand.New(rand.NewPCG(17, 4))
	start := now.Add(-benchSpan)
	step := benchSpan / benchCommits
	d := &benchData{now: now,
		tasks: benchTable{name: "tasks", cols: []string{"id", "key", "kind", "repo", "sha", "ref", "pr", "context", "pool",
			"state", "class", "exit_code", "reason", "log_url", "attempt", "created", "updated", "verdict"}},
		attempts: benchTable{name: "attempts", cols: []string{"task_id", "number", "bot", "state", "class", "exit_code",
			"reason", "log_url", "started", "finished", "verdict"}},
	}
	type openPR struct{ number, left int }
	prs := make([]openPR, benchRepos)
	nextPR := make([]int, benchRepos)
	for i := range benchCommits {
		r := i % benchRepos
		repo := fmt.Sprintf("org/repo-%d", r)
		sha := benchSHA(i)
		ref, pr := "refs/heads/main", 0
		switch x := rng.Float64(); {
		case x < 0.3: // a push to a pull request, 1 to 6 pushes each
			if prs[r].left == 0 {
				nextPR[r]++
				prs[r] = openPR{number: nextPR[r], left: 1 + rng.IntN(6)}
			}
			prs[r].left--
			ref, pr = fmt.Sprintf("refs/pull/%d/head", prs[r].number), prs[r].number
		case x < 0.4:
			ref = "refs/heads/release-1"
		}
		created := start.Add(time.Duration(i) * step)
		if i%97 == 0 {
			d.commits = append(d.commits, [2]string{repo, sha})
		}
		if pr > 0 && i%89 == 0 {
			d.prs = append(d.prs, struct {
				repo string
				pr   int
			}{repo, pr})
		}
		for _, ctx := range benchContexts {
			t := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: repo},
				SHA: sha, Ref: ref, PR: pr, Context: ctx, Pool: "public", Attempt: 1}
			d.task(rng, t, created, benchCommits-i)
			if i%331 == 0 && ctx == "unit" {
				d.pageTasks = append(d.pageTasks, t)
			}
		}
	}
	for r := range benchRepos {
		for _, ctx := range benchContexts {
			names := benchTestNames(ctx)
			d.testNames = append(d.testNames, [2]string{fmt.Sprintf("org/repo-%d", r), names[r%len(names)]})
		}
	}
	return d
}

// task adds one task of a commit created at created, fromEnd commits from
// the newest: the newest are queued, running or waiting to retry.
func (d *benchData) task(rng *rand.Rand, t turtles.Task, created time.Time, fromEnd int) {
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	logURL := func(n int) string { return fmt.Sprintf("https://ci.example.com/tasks/%s/%d", t.ID(), n) }
	addTask := func(st state.TaskState, o turtles.Outcome, attempt int, updated time.Time) {
		d.tasks.rows = append(d.tasks.rows, []any{t.ID(), t.Key(), string(t.Kind), t.Repo.Name, t.SHA, t.Ref, t.PR, t.Context,
			t.Pool, string(st), string(o.Class), o.ExitCode, o.Reason, logURL(max(attempt, 1)), attempt, ms(created), ms(updated),
			string(turtles.VerdictOf(o))})
	}
	bot := fmt.Sprintf("bot-%d", rng.IntN(20))
	began := created.Add(time.Duration(rng.IntN(120)) * time.Second)
	ran := time.Duration(60+rng.IntN(840)) * time.Second
	addAttempt := func(n int, st state.TaskState, o turtles.Outcome, from, to time.Time) {
		var fin any
		if !to.IsZero() {
			fin = ms(to)
		}
		d.attempts.rows = append(d.attempts.rows, []any{t.ID(), n, bot, string(st), string(o.Class), o.ExitCode, o.Reason,
			logURL(n), ms(from), fin, string(turtles.VerdictOf(o))})
	}
	names := benchTestNames(t.Context)
	results := func(failed int) []turtles.TestResult {
		out := make([]turtles.TestResult, len(names))
		for k, name := range names {
			out[k] = turtles.TestResult{Name: name, Outcome: turtles.TestPassed, Source: "log", Line: 10 + 3*k,
				Duration: float64(1+rng.IntN(3000)) / 100}
			if k == failed {
				out[k].Outcome, out[k].Message = turtles.TestFailed, "assertion failed: want 200, got 500"
			}
		}
		return out
	}
	addTests := func(n int, tests []turtles.TestResult, fin time.Time) {
		x := t
		x.Attempt = n
		d.results = append(d.results, turtles.Result{Task: x, Finished: fin, LogURL: logURL(n), Tests: tests})
		d.tests += len(tests)
	}
	success := turtles.Outcome{Class: turtles.Success}
	failure := turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Reason: "exit status 1"}
	infra := turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "the VM did not boot within 5m0s"}
	switch {
	case fromEnd <= 20: // queued
		addTask(state.Queued, turtles.Outcome{}, 0, created)
		return
	case fromEnd <= 28 && t.Context == "integration": // waiting to retry
		addAttempt(1, state.Retrying, infra, began, began.Add(time.Minute))
		addTask(state.Retrying, infra, 1, began.Add(time.Minute))
		return
	case fromEnd <= 28: // running
		addAttempt(1, state.Running, turtles.Outcome{}, began, time.Time{})
		addTask(state.Running, turtles.Outcome{}, 1, began)
		return
	}
	end := began.Add(ran)
	switch x := rng.Float64(); {
	case x < 0.05: // a flake: a test failed, then passed on the retry
		mid := began.Add(ran / 2)
		addAttempt(1, state.Retrying, failure, began, mid)
		addTests(1, results(rng.IntN(len(names))), mid)
		flaky := turtles.Outcome{Class: turtles.Success, Verdict: turtles.VerdictFlake, Reason: "flaky"}
		addAttempt(2, state.Finished, flaky, mid, end)
		addTests(2, results(-1), end)
		addTask(state.Finished, flaky, 2, end)
	case x < 0.09: // a regression
		addAttempt(1, state.Finished, failure, began, end)
		addTests(1, results(rng.IntN(len(names))), end)
		addTask(state.Finished, failure, 1, end)
	case x < 0.095: // infra, then a pass
		mid := began.Add(2 * time.Minute)
		addAttempt(1, state.Retrying, infra, began, mid)
		addAttempt(2, state.Finished, success, mid, end)
		addTests(2, results(-1), end)
		addTask(state.Finished, success, 2, end)
	case x < 0.1: // cancelled by a newer push
		o := turtles.Outcome{Class: turtles.Cancelled, ExitCode: -1, Reason: "superseded"}
		addAttempt(1, state.Finished, o, began, began.Add(time.Minute))
		addTask(state.Finished, o, 1, began.Add(time.Minute))
	case x < 0.102:
		o := turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Verdict: turtles.VerdictKnownIssue, Reason: "known issue"}
		addAttempt(1, state.Finished, o, began, end)
		addTests(1, results(0), end)
		addTask(state.Finished, o, 1, end)
	default:
		addAttempt(1, state.Finished, success, began, end)
		addTests(1, results(-1), end)
		addTask(state.Finished, success, 1, end)
	}
}

// storeFiles puts a log and a result.json for each page task: what the
// attempt page reads from the store.
func (d *benchData) storeFiles(ctx context.Context, st store.Store) error {
	var log strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&log, "ok %d - TestUnit%02d step %d of the suite, with a line as long as real test output is\n", i+1, i%10, i)
	}
	for _, t := range d.pageTasks {
		names := benchTestNames(t.Context)
		res := turtles.Result{Task: t, Bot: "bot-1", Outcome: turtles.Outcome{Class: turtles.Success}, Finished: d.now}
		for k, n := range names {
			res.Tests = append(res.Tests, turtles.TestResult{Name: n, Outcome: turtles.TestPassed, Source: "log", Line: k + 1})
		}
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		prefix := store.AttemptPrefix(t)
		if err := st.Put(ctx, prefix+store.LogName, strings.NewReader(log.String()), "text/plain; charset=utf-8"); err != nil {
			return err
		}
		if err := st.Put(ctx, prefix+store.ResultName, strings.NewReader(string(b)), "application/json"); err != nil {
			return err
		}
	}
	return nil
}
