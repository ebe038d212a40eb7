package web

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/internal/golden"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/web/logpage"
)

// TestTaskPageGolden renders the page of a task whose first attempt
// failed on our side (retried) and whose second failed its tests, and
// compares each attempt's page with testdata/task-page-ATTEMPT.html. The
// page shows each outcome's reason, never an error's text. The viewer's
// script (web/logpage, tested in a browser by package bot) is left out.
func TestTaskPageGolden(t *testing.T) {
	res, st := historyAndStore(t)
	ctx := context.Background()
	at := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	task := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: "octo/hello", CloneURL: "https://github.com/octo/hello.git"},
		SHA:  strings.Repeat("ab", 20), Ref: "refs/heads/main", Context: "debian-12/unit", Pool: "public", Attempt: 1}
	second := task
	second.Attempt = 2
	infra := &turtles.Outcome{Class: turtles.Infra, ExitCode: -1, Reason: "the VM did not boot within 5m0s"}
	failed := &turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Reason: "exit status 1"}
	for i, ev := range []turtles.Event{
		{Type: turtles.EventQueued, Task: task},
		{Type: turtles.EventStarted, Task: task, Bot: "bot-a"},
		{Type: turtles.EventRetrying, Task: task, Bot: "bot-a", Outcome: infra},
		{Type: turtles.EventStarted, Task: second, Bot: "bot-b"},
		{Type: turtles.EventFinished, Task: second, Bot: "bot-b", Outcome: failed},
	} {
		ev.ID, ev.Time = string(rune('a'+i)), at.Add(time.Duration(i)*time.Minute)
		if err := res.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	put := func(key, body, ct string) {
		t.Helper()
		if err := st.Put(ctx, key, strings.NewReader(body), ct); err != nil {
			t.Fatal(err)
		}
	}
	result := func(tk turtles.Task, o *turtles.Outcome, bot string, began time.Time, seconds float64) string {
		fin := began.Add(time.Duration(seconds * float64(time.Second)))
		b, err := json.MarshalIndent(turtles.Result{Task: tk, Outcome: *o, Bot: bot, Started: began, Finished: fin, Duration: seconds}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := store.AttemptPrefix(task)
	put(first+store.LogName, "turtles: bot bot-a: test attempt 1 (delivery 1) of octo/hello@abab:debian-12/unit\n"+
		"turtles: not a test failure: turtles could not complete this attempt (the cause is in the log of bot bot-a)\n"+
		"turtles: outcome: infra (the VM did not boot within 5m0s)\n", "text/plain; charset=utf-8")
	put(first+store.ResultName, result(task, infra, "bot-a", at.Add(time.Minute), 300.4), "application/json")
	prefix := store.AttemptPrefix(second)
	put(prefix+store.LogName, "turtles: running: go test ./...\n\x1b[31m--- FAIL: TestParse (0.00s)\x1b[0m\n    parse_test.go:12: got <nil>, want \"&amp;\"\nFAIL\n"+
		"turtles: exit status 1 after 2.3s\nturtles: outcome: failure (exit status 1)\n", "text/plain; charset=utf-8")
	put(prefix+"artifacts/junit.xml", `<testsuite><testcase name="TestParse"><failure/></testcase></testsuite>`, "application/xml")
	res2 := result(second, failed, "bot-b", at.Add(3*time.Minute), 2.3)
	var r2 turtles.Result
	json.Unmarshal([]byte(res2), &r2)
	r2.Tests = []turtles.TestResult{
		{Name: "TestLex", Outcome: turtles.TestPassed, Duration: 0.01, Source: "log", Line: 1},
		{Name: "TestParse", Outcome: turtles.TestFailed, Source: "log", Line: 2, Message: `got <nil>, want "&amp;"`},
		{Name: "TestNet", Outcome: turtles.TestSkipped, Source: "artifacts/junit.xml", Message: "no network"},
	}
	b2, _ := json.MarshalIndent(r2, "", "  ")
	put(prefix+store.ResultName, string(b2), "application/json")

	srv := httptest.NewServer(New(Config{History: res, Store: st}))
	t.Cleanup(srv.Close)
	for _, attempt := range []string{"1", "2"} {
		t.Run("attempt "+attempt, func(t *testing.T) {
			code, _, page := get(t, srv.URL+"/tasks/"+task.ID()+"/"+attempt)
			if code != 200 {
				t.Fatalf("GET attempt %s: %d\n%s", attempt, code, page)
			}
			if !strings.Contains(page, logpage.Script) {
				t.Fatal("the page does not embed the log viewer")
			}
			page = strings.Replace(page, logpage.Script, "/* web/logpage/viewer.js */", 1)
			golden.Check(t, filepath.Join("testdata", "task-page-"+attempt+".html"), page)
		})
	}
}
