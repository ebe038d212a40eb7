package web

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/internal/chromium"
)

// basics lists what a page lacks of keyboard and screen-reader basics:
// one h1, the main and navigation landmarks, a label for every field,
// headers in every table, a name for every button and link, a word for
// every state mark.
const basics = `(() => {
  const p = [];
  if (document.querySelectorAll("h1").length !== 1) p.push("not one h1");
  if (!document.querySelector("main")) p.push("no main landmark");
  if (!document.querySelector("nav[aria-label]")) p.push("no labelled navigation");
  if (!document.querySelector("a.skip[href='#main']")) p.push("no skip link");
  document.querySelectorAll("input:not([type=hidden]), select").forEach(el => {
    if (!el.labels || !el.labels.length) p.push("no label: " + el.name);
  });
  document.querySelectorAll("table").forEach(t => { if (!t.querySelector("th")) p.push("a table without headers"); });
  document.querySelectorAll("button, a").forEach(el => {
    if (!el.textContent.trim() && !el.getAttribute("aria-label")) p.push("no name: " + el.outerHTML.slice(0, 80));
  });
  document.querySelectorAll(".st").forEach(el => {
    if (!/[a-z]/.test(el.textContent)) p.push("a state by its mark alone: " + el.outerHTML);
  });
  return p;
})()`

// TestPagesInChromium opens every page in a real browser: it renders with
// the basics of access, it shows a change to the history without a
// reload (live.js), and a screenshot of it is kept as a test artifact.
func TestPagesInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium")
	}
	d := newDash(t)
	cfg := d.config()
	cfg.Auth = &fakeAuth{user: "github:alice", csrf: "tok"}
	srv := httptest.NewServer(New(cfg))
	t.Cleanup(srv.Close)
	b := chromium.Start(t)
	shaNew := "dddd000000000000000000000000000000000004"
	at := 58 * time.Minute
	pages := []struct {
		name, path string
		// change records what the page must then show, and shows is a
		// JavaScript expression true once it does.
		change func()
		shows  string
	}{{
		name: "now", path: "/",
		change: func() {
			d.event(turtles.EventQueued, task("octo/hello", shaNew, "refs/heads/main", 0, "docs-live"), at, "", nil)
		},
		shows: `document.getElementById("now").innerText.includes("docs-live")`,
	}, {
		name: "commit", path: commitURL("octo/hello", shaPR2),
		change: func() {
			d.event(turtles.EventFinished, d.tasks["pr2/unit"], at, "bot-a", &turtles.Outcome{Class: turtles.Success})
		},
		shows: `document.getElementById("contexts").innerText.includes("1 success")`,
	}, {
		name: "history", path: "/history",
		change: func() {
			d.event(turtles.EventQueued, task("octo/hello", shaNew, "refs/heads/main", 0, "history-live"), at, "", nil)
		},
		shows: `document.getElementById("history").innerText.includes("history-live")`,
	}, {
		name: "flaky-tests", path: "/tests",
		change: func() {
			x := task("octo/hello", shaNew, "refs/heads/main", 0, "unit")
			d.tests(x, at, fail("TestDB"))
			x.Attempt = 2
			d.tests(x, at+time.Minute, pass("TestDB"))
		},
		shows: `document.getElementById("flaky").innerText.includes("TestDB")`,
	}, {
		name: "test-history", path: testURL("octo/hello", "TestLogin", ""),
		change: func() {
			d.tests(task("octo/hello", "eeee000000000000000000000000000000000005", "refs/heads/main", 0, "unit"), at, fail("TestLogin"))
		},
		shows: `document.getElementById("test").innerText.includes("eeee00000000")`,
	}, {
		name: "attempt", path: "/tasks/" + d.tasks["pr2/integration"].ID(),
		change: func() {
			x := d.tasks["pr2/integration"]
			x.Attempt = 2
			d.event(turtles.EventStarted, x, at, "bot-a", nil)
			d.event(turtles.EventFinished, x, at+time.Minute, "bot-a", &turtles.Outcome{Class: turtles.Failure, Reason: "exit status 2"})
		},
		shows: `document.getElementById("task-state").innerText.includes("exit status 2")`,
	}}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			sep := "?"
			if strings.Contains(p.path, "?") {
				sep = "&"
			}
			b.Navigate(t, srv.URL+p.path+sep+"poll=200")
			var problems []string
			b.Eval(t, basics, &problems)
			if len(problems) > 0 {
				t.Errorf("%s lacks the basics: %q", p.path, problems)
			}
			// A mark that a reload would lose, and a poll that must come
			// after it (the barrier: what the page shows before is what it
			// was rendered with).
			b.Eval(t, `(window.__kept = true, document.body.dataset.polls = 0, true)`, new(bool))
			b.WaitFor(t, "a poll of the unchanged page", `Number(document.body.dataset.polls) >= 1`)
			var before bool
			b.Eval(t, p.shows, &before)
			if before {
				t.Fatalf("%s shows the change before it was made", p.path)
			}
			p.change()
			b.WaitFor(t, "the change, live", p.shows+` && window.__kept === true`)
			b.Screenshot(t, p.name+".png")
		})
	}
	// An attempt that ended with tests: the summary, failed tests first.
	t.Run("attempt with tests", func(t *testing.T) {
		b.Navigate(t, srv.URL+"/tasks/"+d.tasks["pr1/unit"].ID()+"/1?poll=200")
		b.WaitFor(t, "the log viewer to finish", `document.body.dataset.state === "done"`)
		var problems []string
		b.Eval(t, basics, &problems)
		if len(problems) > 0 {
			t.Errorf("the attempt page lacks the basics: %q", problems)
		}
		var got struct{ Summary, First string }
		b.Eval(t, `({summary: document.getElementById("summary").textContent,
			first: document.querySelector("#tests details tbody tr").textContent})`, &got)
		if got.Summary != "1 passed, 1 failed, 0 skipped · 1 retry" || !strings.Contains(got.First, "TestLogin") {
			t.Errorf("attempt page: summary %q, first test %q; want the counts and the failed test first", got.Summary, got.First)
		}
		b.Eval(t, `(document.querySelector("#tests details").open = true)`, new(bool))
		b.Screenshot(t, "attempt-with-tests.png")
	})
}

// TestKeyboardInChromium: the first Tab reaches the skip link, visibly;
// Enter on it moves focus to the main content; and a live update keeps
// focus on the link that had it.
func TestKeyboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium")
	}
	d := newDash(t)
	srv := httptest.NewServer(New(d.config()))
	t.Cleanup(srv.Close)
	b := chromium.Start(t)
	b.Navigate(t, srv.URL+"/?poll=200")
	b.Press(t, "Tab")
	var focus struct{ Class, Outline string }
	b.Eval(t, `({class: document.activeElement.className, outline: getComputedStyle(document.activeElement).outlineStyle})`, &focus)
	if focus.Class != "skip" || focus.Outline == "none" {
		t.Errorf("after Tab: focus on %q with outline %q, want the skip link, outlined", focus.Class, focus.Outline)
	}
	b.Press(t, "Enter")
	b.WaitFor(t, "focus on main", `document.activeElement === document.getElementById("main")`)

	// Focus a link inside the live region, then change the page.
	link := fmt.Sprintf(`a[href="/tasks/%s/1"]`, d.tasks["pr2/unit"].ID())
	b.Eval(t, `(document.querySelector('`+link+`').focus(), document.activeElement.getAttribute("href"))`, new(string))
	b.Eval(t, `(document.body.dataset.updates = 0, true)`, new(bool))
	d.event(turtles.EventQueued, task("octo/hello", shaMain, "refs/heads/main", 0, "focus-live"), 58*time.Minute, "", nil)
	b.WaitFor(t, "the update", `document.getElementById("now").innerText.includes("focus-live")`)
	var href string
	b.Eval(t, `document.activeElement.getAttribute("href") || ""`, &href)
	if want := fmt.Sprintf("/tasks/%s/1", d.tasks["pr2/unit"].ID()); href != want {
		t.Errorf("after a live update, focus is on %q, want still on %q", href, want)
	}
}
