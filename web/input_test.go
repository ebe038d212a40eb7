package web

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// TestBadInput: a parameter a page does not take, or a value that does
// not parse, is a 400 that says why, on the pages (as a page) and the API
// (as JSON) alike; never a page that ignores the filter.
func TestBadInput(t *testing.T) {
	d := newDash(t)
	cfg := d.config()
	id := d.tasks["main/unit"].ID()
	tests := []struct {
		path   string // the page; the API at apiOf(path) answers the same
		reason string
	}{
		{"/history?bogus=1", `unknown parameter "bogus": this takes repo, branch, pr, sha, context, state, outcome, verdict, since, until, after, limit`},
		{"/history?repo=a&repo=b", `parameter "repo" is given 2 times`},
		{"/history?%zz", "the query string does not parse"},
		{"/history?sha=xyz", `sha must be 4 to 64 hexadecimal digits, not "xyz"`},
		{"/history?sha=abc", `sha must be 4 to 64 hexadecimal digits`},
		{"/history?pr=7", "pr needs repo"},
		{"/history?pr=-1&repo=octo/hello", `pr must be a pull request's number, not "-1"`},
		{"/history?state=done", `unknown state "done"`},
		{"/history?outcome=meh", `unknown outcome "meh": want success, failure, infra or cancelled`},
		{"/history?verdict=meh", `unknown verdict "meh"`},
		{"/history?since=yesterday", `since must be a date (2025-03-14), a time (2025-03-14T15:09:26Z) or an age (14d, 36h), not "yesterday"`},
		{"/history?until=2025-13-01", `until must be a date`},
		{"/history?since=2025-03-14&until=2025-03-01", "since must come before until"},
		{"/history?after=zzz", "after must be the cursor a previous page gave"},
		{"/history?after=12.x-y", "after must be the cursor"},
		{"/history?limit=0", "limit must be a number from 1 to 1000"},
		{"/history?limit=5000", "limit must be a number from 1 to 1000"},
		{"/history?poll=5", "poll must be a number of milliseconds"},
		{"/?x=1", `unknown parameter "x": this takes none`},
		{"/now?repo=octo/hello", `unknown parameter "repo"`},
		{"/commits/octo", "a commit's address is /commits/OWNER/NAME/SHA"},
		{"/commits/octo/hello/main", `sha must be 4 to 64 hexadecimal digits, not "main"`},
		{"/commits/octo/hello/" + shaMain + "?x=1", `unknown parameter "x"`},
		{"/tests?since=soon", "since must be a date"},
		{"/tests?name=x", `unknown parameter "name"`},
		{"/tests/history?repo=octo/hello", "a test's history needs repo and name"},
		{"/tests/history?repo=octo/hello&name=x&limit=1", `unknown parameter "limit"`},
		{"/tasks/" + id + "?x=1", `unknown parameter "x"`},
	}
	for _, tt := range tests {
		for _, path := range []string{tt.path, apiOf(tt.path)} {
			if path == "" {
				continue
			}
			t.Run(path, func(t *testing.T) {
				rec := serve(cfg, path)
				body := rec.Body.String()
				if rec.Code != 400 {
					t.Fatalf("GET %s = %d, want 400:\n%s", path, rec.Code, body)
				}
				if strings.HasPrefix(path, "/api/") {
					var e struct{ Error string }
					if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.reason) {
						t.Errorf("GET %s = %s; want JSON with an error containing %q", path, body, tt.reason)
					}
					return
				}
				if !strings.Contains(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(body, htmlEscape(tt.reason)) {
					t.Errorf("GET %s: want a page that says %q:\n%s", path, tt.reason, body)
				}
			})
		}
	}
	// A test API's own parameters.
	for path, reason := range map[string]string{
		"/api/v1/tests?flaky=maybe":       "flaky must be true or false",
		"/api/v1/tests?limit=99999":       "limit must be a number from 1 to 5000",
		"/api/v1/tests?context=a&bogus=b": `unknown parameter "bogus"`,
		"/api/v1/deadletters?x=1":         `unknown parameter "x"`,
		"/api/v1/bots?x=1":                `unknown parameter "x"`,
	} {
		rec := serve(cfg, path)
		var e struct{ Error string }
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, reason) {
			t.Errorf("GET %s = %d %s; want 400 saying %q", path, rec.Code, rec.Body, reason)
		}
	}
}

// apiOf is the JSON API beside a page, "" if none takes the same query.
func apiOf(path string) string {
	switch p, _, _ := strings.Cut(path, "?"); {
	case p == "/history":
		return "/api/v1/tasks" + strings.TrimPrefix(path, "/history")
	case p == "/" || p == "/now":
		return "/api/v1/now" + strings.TrimPrefix(strings.TrimPrefix(path, "/now"), "/")
	case strings.HasPrefix(p, "/commits/"):
		return "/api/v1" + path
	case p == "/tests/history":
		return "/api/v1" + path
	case strings.HasPrefix(p, "/tasks/"):
		return "/api/v1" + path
	}
	return ""
}

func htmlEscape(s string) string {
	return strings.NewReplacer(`&`, "&amp;", `'`, "&#39;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;").Replace(s)
}

// TestPrivate: with Auth, a repository the viewer may not read is absent
// from every page, list and file, and its pages are 404 as those of a
// repository that does not exist; the same requests by a viewer who may
// read it show it (so that the test cannot pass by showing nothing).
func TestPrivate(t *testing.T) {
	d := newDash(t)
	const repo = "octo/secret"
	sha := strings.Repeat("5e", 20)
	secret := task(repo, sha, "refs/pull/3/head", 3, "zqx-context")
	d.event(turtles.EventQueued, secret, 56*time.Minute, "", nil)
	d.event(turtles.EventStarted, secret, 57*time.Minute, "bot-a", nil)
	queued := task(repo, sha, "refs/pull/3/head", 3, "zqx-queued")
	d.event(turtles.EventQueued, queued, 57*time.Minute, "", nil)
	d.tests(secret, 58*time.Minute, fail("test_zqx"))
	again := secret
	again.Attempt = 2
	d.tests(again, 59*time.Minute, pass("test_zqx"))
	d.bots.bots[0].Tasks = append(d.bots.bots[0].Tasks, secret.ID())
	d.dead = append(d.dead, queue.DeadLetter{Task: task(repo, sha, "", 0, "zqx-dead"), Reason: "zqx reason", Pool: "public", Time: t0})
	logKey := "/logs/" + store.AttemptPrefix(secret) + store.LogName

	lists := []string{"/", "/api/v1/now", "/api/v1/bots", "/history", "/api/v1/tasks", "/api/v1/tasks?state=running",
		"/history?repo=" + repo, "/api/v1/tasks?repo=" + repo, "/api/v1/deadletters", "/tests", "/api/v1/tests",
		"/api/v1/tests?flaky=1&repo=" + repo, "/tests?repo=" + repo}
	pages := []string{"/commits/" + repo + "/" + sha, "/api/v1/commits/" + repo + "/" + sha, "/tasks/" + secret.ID(),
		"/tasks/" + secret.ID() + "/1", "/api/v1/tasks/" + secret.ID(), logKey,
		"/tests/history?repo=" + repo + "&name=test_zqx", "/api/v1/tests/history?repo=" + repo + "&name=test_zqx"}
	marks := []string{"zqx", secret.ID()} // not the name, which a form may echo
	for _, private := range []bool{true, false} {
		cfg := d.config()
		cfg.Queue = fakeQueue{dead: d.dead}
		cfg.Auth = &fakeAuth{user: "github:mallory", csrf: "tok", private: map[string]bool{repo: private}}
		for _, path := range lists {
			rec := serve(cfg, path)
			body := rec.Body.String()
			if rec.Code != 200 {
				t.Errorf("GET %s = %d", path, rec.Code)
				continue
			}
			shown := false
			for _, m := range marks {
				shown = shown || strings.Contains(body, m)
			}
			if shown == private {
				t.Errorf("private %v: GET %s shows the repository: %v, want %v:\n%s", private, path, shown, !private, body)
			}
		}
		for _, path := range pages {
			rec := serve(cfg, path)
			body := rec.Body.String()
			// "zqx-": the contexts, not the test's name, which is in the URL.
			if private && (rec.Code != 404 || strings.Contains(body, "zqx-")) {
				t.Errorf("GET %s of a repository the viewer may not read = %d, want 404 without its content:\n%s", path, rec.Code, body)
			}
			if !private && rec.Code != 200 {
				t.Errorf("GET %s of a repository the viewer may read = %d, want 200:\n%s", path, rec.Code, body)
			}
		}
	}
	// The stats of a private repository's test are as those of none.
	cfg := d.config()
	cfg.Auth = &fakeAuth{private: map[string]bool{repo: true}}
	rec := serve(cfg, "/api/v1/tests?repo="+repo)
	var out struct{ Tests []state.TestStats }
	if json.Unmarshal(rec.Body.Bytes(), &out) != nil || len(out.Tests) != 0 {
		t.Errorf("tests of a private repository: %s", rec.Body)
	}
}
