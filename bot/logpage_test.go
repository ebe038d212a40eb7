package bot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/turtles-ci/turtles/internal/chromium"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

var screenshot = flag.Bool("screenshot", false, "write docs/log-page.png from the finished log page")

// TestLogPageInChromium follows a live attempt's log on the static page
// served from a plain file server over the store (as S3 serves it), while
// the real live log uploads chunks; then checks the finished page lists the
// failures with links to their log lines and the artifacts.
func TestLogPageInChromium(t *testing.T) {
	old := chunkEvery
	chunkEvery = 100 * time.Millisecond
	t.Cleanup(func() { chunkEvery = old })
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := putOnly{d} // chunks, as on S3
	srv := httptest.NewServer(http.FileServer(http.Dir(d.Root())))
	defer srv.Close()
	task := turtles.Task{Repo: turtles.Repo{Name: "cockpit/app"}, SHA: strings.Repeat("ab", 20), Context: "debian-12/unit", Attempt: 1}
	prefix := store.AttemptPrefix(task)
	l, err := newLiveLog(st, prefix+store.LogName, filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := chromium.Start(t)
	c.Call(t, "Page.enable", map[string]any{})

	fmt.Fprintf(l, "bot bot-1: test attempt 1 of cockpit/app\nrunning: make check\nTAP version 13\n1..4\n\x1b[32mok 1 - boots\x1b[0m\n")
	c.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/" + prefix + "index.html?poll=150"})
	c.WaitFor(t, "the first lines", "Number(document.body.dataset.lines) >= 5")
	var n1 int
	c.Eval(t, "Number(document.body.dataset.lines)", &n1)
	for i := 0; i < 20; i++ {
		fmt.Fprintf(l, "progress %d\n", i)
	}
	fmt.Fprintf(l, "\x1b[1;31mnot ok 2 - logs in\x1b[0m\n  ---\n  message: wrong password\n  ...\nok 3 - logs out # SKIP no session\n")
	c.WaitFor(t, "the log grow", fmt.Sprintf("Number(document.body.dataset.lines) >= %d", n1+24))
	c.WaitFor(t, "a coloured span", `document.querySelector('#log span[style*="color"]')`)
	c.WaitFor(t, "the live test list", `document.getElementById("tests").innerText.includes("(so far)")`)
	c.WaitFor(t, "the live failure", `document.querySelector('#failures a[href="#L26"]')`)
	var state string
	c.Eval(t, "document.body.dataset.state", &state)
	if state != "live" {
		t.Errorf("page state %q while the task runs, want live", state)
	}

	// The end: the bot stores result.json, then the whole log.
	fmt.Fprintf(l, "not ok 4 - saves settings\noutcome: failure (exit status 1)\n")
	if err := st.Put(context.Background(), prefix+"artifacts/journal.txt", strings.NewReader("journal"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	res := turtles.Result{Task: task, Outcome: turtles.Outcome{Class: turtles.Failure, ExitCode: 1, Reason: "exit status 1"},
		Triage: []turtles.TriageMatch{{Pattern: "5.yaml", Issue: "https://x.example/5", Title: "passwords expire", Action: "known-issue",
			File: "log", Line: 28, Lines: []string{"  message: wrong password"}}},
		Tests: l.tests.results(), Artifacts: []turtles.Artifact{{Name: "artifacts/journal.txt", Size: 7, ContentType: "text/plain"}}}
	b, _ := json.Marshal(res)
	if err := st.Put(context.Background(), prefix+store.ResultName, bytes.NewReader(b), "application/json"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, "the end", `document.body.dataset.state === "done"`)
	checkFinished := func() {
		t.Helper()
		var failures []string
		c.Eval(t, `Array.from(document.querySelectorAll("#failures a")).map(a => a.textContent + " " + a.getAttribute("href"))`, &failures)
		if want := []string{"logs in #L26", "saves settings #L31"}; fmt.Sprint(failures) != fmt.Sprint(want) {
			t.Errorf("failures listed %q, want %q", failures, want)
		}
		var lines int
		var status, arts string
		c.Eval(t, "document.querySelectorAll('#log .line').length", &lines)
		c.Eval(t, "document.getElementById('status').textContent", &status)
		c.Eval(t, "document.getElementById('artifacts').innerText", &arts)
		var marked []string
		c.Eval(t, `Array.from(document.querySelectorAll("#log .line.triage")).map(l => l.id + " " + l.title)`, &marked)
		if want := []string{"L28 known issue: passwords expire"}; fmt.Sprint(marked) != fmt.Sprint(want) {
			t.Errorf("lines marked as matched by a known issue: %q, want %q", marked, want)
		}
		if lines != 32 || status != "failure: exit status 1" || !strings.Contains(arts, "journal.txt") {
			t.Errorf("finished page: %d lines, status %q, artifacts %q; want 32 lines, failure, journal.txt", lines, status, arts)
		}
	}
	checkFinished()

	// A fresh visit after the end reads only the files the store keeps.
	c.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/" + prefix + "index.html?poll=150#L26"})
	c.WaitFor(t, "the finished page", `document.body.dataset.state === "done" && document.getElementById("L26")`)
	checkFinished()
	if *screenshot {
		c.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/" + prefix + "index.html"})
		c.WaitFor(t, "the finished page", `document.body.dataset.state === "done"`)
		c.Eval(t, `(document.querySelector("details").open = true, window.scrollTo(0, 0), true)`, new(bool))
		raw := c.Call(t, "Page.captureScreenshot", map[string]any{"format": "png"})
		var shot struct{ Data string }
		json.Unmarshal(raw, &shot)
		png, _ := base64.StdEncoding.DecodeString(shot.Data)
		if err := os.WriteFile("../docs/log-page.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
