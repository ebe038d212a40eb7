package web

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// TestTaskPageTriage: the page of a triaged attempt shows its verdict,
// the issue it links and the lines that matched, where they are; a
// matched line is the task's output and is shown as text, never markup.
func TestTaskPageTriage(t *testing.T) {
	res, st := historyAndStore(t)
	ctx := context.Background()
	task := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: "octo/hello", CloneURL: "https://github.com/octo/hello.git"},
		SHA:  strings.Repeat("cd", 20), Context: "unit", Pool: "public", Attempt: 1}
	o := turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Verdict: turtles.VerdictKnownIssue,
		Reason: "Known issue frobnicator times out (https://github.com/octo/hello/issues/77), log line 2"}
	for i, ev := range []turtles.Event{
		{Type: turtles.EventStarted, Task: task, Bot: "bot-a"},
		{Type: turtles.EventFinished, Task: task, Bot: "bot-a", Outcome: &o},
	} {
		ev.ID, ev.Time = string(rune('a'+i)), time.Date(2026, 12, 3, 4, 0, i, 0, time.UTC)
		if err := res.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	prefix := store.AttemptPrefix(task)
	hostile := `frobnicator timed out after 2.1s <script>alert(1)</script>`
	r := turtles.Result{Task: task, Outcome: o, Bot: "bot-a", Triage: []turtles.TriageMatch{{Pattern: "77-frob.yaml",
		Issue: "https://github.com/octo/hello/issues/77", Title: "frobnicator times out", Action: "known-issue", Blocking: true,
		File: "log", Offset: 20, Line: 2, Lines: []string{hostile}}}}
	b, _ := json.Marshal(r)
	for key, body := range map[string]string{prefix + store.LogName: "ok 1\n" + hostile + "\n", prefix + store.ResultName: string(b)} {
		if err := st.Put(ctx, key, strings.NewReader(body), "text/plain"); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(New(Config{History: res, Store: st}))
	t.Cleanup(srv.Close)
	code, _, page := get(t, srv.URL+"/tasks/"+task.ID()+"/1")
	if code != 200 {
		t.Fatalf("GET: %d\n%s", code, page)
	}
	for _, want := range []string{
		`<strong class="verdict" id="verdict">known-issue</strong>`,
		`<a href="https://github.com/octo/hello/issues/77">frobnicator times out</a> · known-issue, blocking`,
		`<a href="#L2">log line 2</a> · pattern 77-frob.yaml`,
		`frobnicator timed out after 2.1s &lt;script&gt;alert(1)&lt;/script&gt;`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Error("a matched line reached the page as markup")
	}
}
