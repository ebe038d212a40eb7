package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// TestArtifactsCannotRunScript is the attack of a task that leaves an
// active artifact (SVG or HTML with a script, XML, PDF, JavaScript) and
// links people to it: every file is served sandboxed and unsniffed, and
// all but plain text, JSON and raster images are downloads.
func TestArtifactsCannotRunScript(t *testing.T) {
	srv, task := fixture(t)
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = New(Config{Store: st})
	prefix := store.AttemptPrefix(task)
	const script = `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>`
	tests := []struct {
		key, contentType string
		attachment       bool
	}{
		{key: "artifacts/evil.svg", contentType: "image/svg+xml", attachment: true},
		{key: "artifacts/evil.html", contentType: "text/html; charset=utf-8", attachment: true},
		{key: "artifacts/evil.xhtml", contentType: "application/xhtml+xml", attachment: true},
		{key: "artifacts/evil.xml", contentType: "text/xml; charset=utf-8", attachment: true},
		{key: "artifacts/evil.pdf", contentType: "application/pdf", attachment: true},
		{key: "artifacts/evil.js", contentType: "text/javascript; charset=utf-8", attachment: true},
		{key: "artifacts/evil.bin", contentType: "application/octet-stream", attachment: true},
		{key: "artifacts/a b\".svg", contentType: "image/svg+xml", attachment: true},
		{key: store.LogName, contentType: "text/plain; charset=utf-8"},
		{key: "artifacts/out.txt", contentType: "text/plain; charset=utf-8"},
		{key: "artifacts/shot.png", contentType: "image/png"},
		{key: store.ResultName, contentType: "application/json"},
	}
	for _, missing := range []string{"/logs/" + prefix + "artifacts/none.svg", "/logs/a/../b.svg"} {
		if code, h, _ := get(t, srv.URL+missing); code < 400 || h.Get("Content-Security-Policy") != fileCSP {
			t.Errorf("GET %s = %d with CSP %q, want an error, sandboxed", missing, code, h.Get("Content-Security-Policy"))
		}
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if err := st.Put(context.Background(), prefix+tt.key, strings.NewReader(script), tt.contentType); err != nil {
				t.Fatal(err)
			}
			for _, rng := range []string{"", "bytes=0-"} {
				var header []string
				if rng != "" {
					header = []string{"Range", rng}
				}
				code, h, _ := get(t, srv.URL+"/logs/"+prefix+tt.key, header...)
				if code != http.StatusOK && code != http.StatusPartialContent {
					t.Fatalf("GET %s: %d", tt.key, code)
				}
				if got := h.Get("Content-Security-Policy"); !strings.Contains(got, "sandbox") || !strings.Contains(got, "default-src 'none'") {
					t.Errorf("%s: Content-Security-Policy %q, want a sandbox that loads nothing", tt.key, got)
				}
				if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("%s: X-Content-Type-Options %q, want nosniff", tt.key, got)
				}
				if got := h.Get("Content-Disposition"); strings.HasPrefix(got, "attachment") != tt.attachment {
					t.Errorf("%s (%s): Content-Disposition %q, want attachment: %v", tt.key, tt.contentType, got, tt.attachment)
				}
				if ct := h.Get("Content-Type"); strings.Contains(ct, "html") {
					t.Errorf("%s: served as %q", tt.key, ct)
				}
			}
		})
	}
}

// TestPagesEscapeTaskText is the attack of a pull request whose context
// name, repository, failure reason, log lines and artifact names are
// markup: the pages show them as text, in HTML and in the inline script.
func TestPagesEscapeTaskText(t *testing.T) {
	res, st := historyAndStore(t)
	const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>"';alert(3)`
	task := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: "octo/x" + evil, CloneURL: "file:///x"}, SHA: strings.Repeat("ab", 20),
		Ref: "refs/heads/" + evil, Context: "unit" + evil, Pool: "public", Attempt: 1}
	ctx := context.Background()
	now := time.Now()
	for _, ev := range []turtles.Event{
		{ID: "1", Type: turtles.EventQueued, Task: task, Time: now},
		{ID: "2", Type: turtles.EventStarted, Task: task, Bot: "bot" + evil, Time: now},
		{ID: "3", Type: turtles.EventFinished, Task: task, Bot: "bot" + evil, Time: now,
			Outcome: &turtles.Outcome{Class: turtles.Failure, Reason: "not ok 1 - " + evil}},
	} {
		if err := res.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	prefix := store.AttemptPrefix(task)
	for key, body := range map[string]string{
		store.LogName:                    "not ok 1 - " + evil + "\n</pre>" + evil + "\n",
		"artifacts/" + evil + ".svg":     evil,
		store.ResultName:                 `{"tests":[{"name":"` + strings.ReplaceAll(evil, `"`, `\"`) + `","outcome":"failed"}]}`,
		"artifacts/x" + evil + "/y.html": evil,
	} {
		if err := st.Put(ctx, prefix+key, strings.NewReader(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	srv := New(Config{History: res, Store: st})
	for _, path := range []string{"/", "/tasks/" + task.ID(), "/tasks/" + task.ID() + "/1"} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body := rec.Body.String()
		if rec.Code != 200 || !strings.Contains(body, "onerror=alert(2)") {
			t.Fatalf("GET %s = %d; want a page that shows the text:\n%s", path, rec.Code, body)
		}
		for _, raw := range []string{"<script>alert", "<img", `"';alert(3)`, "</pre><script"} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: %q is in the page unescaped:\n%s", path, raw, body)
			}
		}
	}
}

// TestDashboardEscapes is the attack of markup in every field the
// dashboard shows: repository, ref, context, pool, bot names, reasons,
// test names and messages, dead letters, who did what, the signed-in
// user, and the query parameters a page echoes in its form or heading.
// Each page shows them as text.
func TestDashboardEscapes(t *testing.T) {
	const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>"';alert(3)`
	d := newDash(t)
	repo := "octo/x" + evil
	sha := strings.Repeat("e1", 20)
	tk := task(repo, sha, "refs/heads/"+evil, 9, "unit"+evil)
	tk.Pool = "pool" + evil
	queued := tk
	queued.Context = "queued" + evil
	d.event(turtles.EventQueued, tk, 50*time.Minute, "", nil)
	d.event(turtles.EventQueued, queued, 50*time.Minute, "", nil)
	d.event(turtles.EventStarted, tk, 51*time.Minute, "bot"+evil, nil)
	failed := tk
	failed.Attempt = 2
	d.tests(tk, 52*time.Minute, turtles.TestResult{Name: "test" + evil, Outcome: turtles.TestFailed, Line: 3, Message: "message" + evil})
	d.tests(failed, 53*time.Minute, turtles.TestResult{Name: "test" + evil, Outcome: turtles.TestPassed})
	d.event(turtles.EventRetrying, tk, 52*time.Minute, "bot"+evil, &turtles.Outcome{Class: turtles.Infra, Reason: "reason" + evil})
	d.event(turtles.EventStarted, failed, 53*time.Minute, "bot"+evil, nil)
	d.bots.bots = append(d.bots.bots, state.Bot{Name: "bot" + evil, Pool: "pool" + evil, Slots: 1, Busy: 1, Tasks: []string{tk.ID()}, Seen: t0.Add(time.Hour)})
	d.dead = append(d.dead, queue.DeadLetter{Task: tk, Reason: "dead" + evil, Pool: "pool" + evil, Time: t0})
	d.acts[tk.ID()] = []state.Action{{Task: tk.ID(), Kind: "rerun" + evil, User: "github:" + evil, At: t0, Result: "result" + evil}}
	cfg := d.config()
	cfg.Queue = fakeQueue{dead: d.dead}
	cfg.Auth = &fakeAuth{user: "user" + evil, csrf: "csrf" + evil}
	q := url.QueryEscape
	for _, path := range []string{
		"/", "/api/v1/now",
		commitURL(repo, sha),
		"/history", "/history?repo=" + q(repo) + "&context=" + q(tk.Context) + "&branch=" + q(evil),
		"/history?repo=" + q(evil) + "&pr=1&context=" + q(evil), // echoed in the form
		"/tests", "/tests?repo=" + q(repo) + "&context=" + q(evil),
		testURL(repo, "test"+evil, ""), testURL(repo, "test"+evil, tk.Context),
		"/tasks/" + tk.ID(), "/tasks/" + tk.ID() + "/1",
		"/history?since=" + q(evil), // echoed in the reason of a 400
		"/commits/octo/x/" + q(evil),
	} {
		rec := serve(cfg, path)
		body := rec.Body.String()
		if rec.Code >= 500 {
			t.Errorf("GET %s = %d", path, rec.Code)
		}
		if rec.Code == 200 && strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "/api/") && !strings.Contains(body, "onerror=alert(2)") {
			t.Errorf("GET %s: the page does not show the text:\n%s", path, body)
		}
		raws := []string{"<script>alert", "<img", `"';alert(3)`}
		if strings.HasPrefix(path, "/api/") {
			raws = raws[:2] // JSON escapes quotes its own way
		}
		for _, raw := range raws {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: %q is in the page unescaped:\n%s", path, raw, body)
			}
		}
	}
}
