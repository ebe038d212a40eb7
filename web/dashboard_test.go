package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// TestPages reads every page and its JSON over the fixture, as nobody
// and as a signed-in user: each shows what it is for, and the action
// buttons appear only for someone signed in.
func TestPages(t *testing.T) {
	d := newDash(t)
	id := func(name string) string { return d.tasks[name].ID() }
	tests := []struct {
		name      string
		path      string
		code      int
		want      []string
		wantNot   []string
		signedIn  []string // besides want, when signed in
		signedOut []string // besides wantNot, when signed out
	}{{
		name: "now",
		path: "/",
		code: 200,
		want: []string{"1 queued · 1 running · 1 waiting to retry · 1 dead letter · 1 of 2 bots alive",
			"<h2 id=\"pool-0\">Pool public", "Queued (1), longest waiting first", ">lint</a> · octo/hello #7", "<td>10m 00s</td>",
			"Running (1)", `href="/tasks/` + id("pr2/unit") + `/1">live log`, "<td>5m 00s</td>",
			"Waiting to retry (1)", "the VM did not boot within 5m0s",
			"delivered 5 times without an outcome", "bot-a", "1 of 2", "✓</span> alive", "✗</span> not alive", "20m 00s ago",
			"Finished last", `data-refresh`, `id="live-status"`},
		signedIn:  []string{`action="/actions/cancel"`, `action="/actions/requeue"`, `name="task" value="` + d.dead[0].Task.ID() + `"`, `name="csrf" value="tok"`, "Signed in as <strong>github:alice</strong>", `action="/logout"`},
		signedOut: []string{`action="/actions/`, "Signed in"},
	}, {
		name: "now again", path: "/now", code: 200, want: []string{"1 queued · 1 running"},
	}, {
		name: "now as JSON", path: "/api/v1/now", code: 200,
		want: []string{`"name": "public"`, `"alive": true`, `"alive": false`, `"reason": "delivered 5 times without an outcome"`},
	}, {
		name: "commit of a pull request",
		path: "/commits/octo/hello/" + shaPR2,
		code: 200,
		want: []string{"3 contexts: 1 running, 1 retrying, 1 queued", ">integration</a></th>", ">lint</a></th>", ">unit</a></th>",
			"pull request <a href=\"/history?repo=octo%2fhello&amp;pr=7\">#7</a>", "Earlier pushes of pull request #7",
			`<a href="/commits/octo/hello/` + shaPR1 + `"><code>bbbb00000000</code></a>`, "1: 1 success"},
		signedIn:  []string{`action="/actions/cancel"`, `action="/actions/approve"`, `name="sha" value="` + shaPR2 + `"`, `name="pr" value="7"`},
		signedOut: []string{`action="/actions/`},
	}, {
		name: "commit by a prefix of its SHA, with an action done",
		path: "/commits/octo/hello/AAAA0000",
		code: 200,
		want: []string{"2 contexts: 1 success, 1 failure", "github:alice · rerun", "queued again", "exit status 1",
			`href="/tasks/` + id("main/lint") + `/1">#1`},
		wantNot:  []string{"Earlier pushes"},
		signedIn: []string{`action="/actions/rerun"`},
	}, {
		name: "commit as JSON", path: "/api/v1/commits/octo/hello/" + shaPR2, code: 200,
		want: []string{`"sha": "` + shaPR2 + `"`, `"pushes": [`, `"summary": "1 success"`},
	}, {
		name: "unknown commit", path: "/commits/octo/hello/ffff", code: 404, want: []string{"Nothing has run for this commit"},
	}, {
		name: "unknown commit as JSON", path: "/api/v1/commits/octo/hello/ffff", code: 404, want: []string{`"error": "no task of this commit"`},
	}, {
		name: "history", path: "/history", code: 200,
		want: []string{`<form class="search"`, `<label>Repository <input name="repo"`, ">integration</a>", ">lint</a>"},
	}, {
		name: "history search", path: "/history?repo=octo/hello&outcome=failure&since=2025-03-14&until=2025-03-14", code: 200,
		want:    []string{">lint</a>", `<option selected>failure</option>`, `value="octo/hello"`},
		wantNot: []string{">integration</a>", "Next page"},
	}, {
		name: "history, a page at a time", path: "/history?limit=2", code: 200,
		want: []string{`rel="next"`, "after="},
	}, {
		name: "history of a pull request by verdict", path: "/history?repo=octo/hello&pr=7&verdict=flake", code: 200,
		want: []string{"#7</a>", ">unit</a>", "flake"}, wantNot: []string{">lint</a>"},
	}, {
		name: "history of nothing", path: "/history?context=none", code: 200, want: []string{"No task matches"},
	}, {
		name: "search as JSON", path: "/api/v1/tasks?repo=octo/hello&pr=7&state=finished", code: 200,
		want: []string{`"context": "unit"`, `"sha": "` + shaPR1 + `"`}, wantNot: []string{`"next"`, shaPR2},
	}, {
		name: "flaky tests", path: "/tests", code: 200,
		want:    []string{"Flakiest tests", `<a href="/tests/history?context=unit&amp;name=TestLogin&amp;repo=octo%2Fhello">TestLogin</a>`, "50.0 %", "of 2 commits", "wrong password"},
		wantNot: []string{">TestDB</a>"},
	}, {
		name: "flaky tests as JSON", path: "/api/v1/tests?flaky=true", code: 200, want: []string{`"name": "TestLogin"`, `"tasks": 2`},
	}, {
		name: "a test's history", path: "/tests/history?repo=octo/hello&name=TestLogin", code: 200,
		want: []string{"Flake rate: 50.0 %", `<td class="flaky">`, "attempt 1 failed", "attempt 2 passed", `<code>aaaa00000000</code>`,
			`<th scope="row"><a href="/tests/history?context=unit&amp;name=TestLogin&amp;repo=octo%2Fhello">unit</a></th>`},
	}, {
		name: "a test's history as JSON", path: "/api/v1/tests/history?repo=octo/hello&name=TestLogin&context=unit", code: 200,
		want: []string{`"flaky": 1`, `"cells": 2`, `"outcome": "failed"`},
	}, {
		name: "an unknown test", path: "/tests/history?repo=octo/hello&name=TestNone", code: 404, want: []string{"has not run"},
	}, {
		name: "an attempt: summary, failed tests first", path: "/tasks/" + id("pr1/unit") + "/1", code: 200,
		want: []string{`<p class="summary" id="summary">1 passed, 1 failed, 0 skipped · 1 retry</p>`, `<li class="failed"><a href="#L2">TestLogin</a> — wrong password</li>`,
			"<tbody><tr class=\"failed\">"},
	}, {
		name: "a task's last attempt", path: "/tasks/" + id("pr1/unit"), code: 200,
		want: []string{"2 passed, 0 failed, 0 skipped · 1 retry", "verdict <strong class=\"verdict\" id=\"verdict\">flake</strong>"},
	}, {
		name: "a task with actions done", path: "/tasks/" + id("main/lint"), code: 200,
		want: []string{"Done by people", "github:alice · rerun"}, signedIn: []string{`action="/actions/rerun"`},
	}}
	for _, signedIn := range []bool{false, true} {
		cfg := d.config()
		if signedIn {
			cfg.Auth = &fakeAuth{user: "github:alice", csrf: "tok"}
		}
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{false: "", true: ", signed in"}[signedIn], func(t *testing.T) {
				rec := serve(cfg, tt.path)
				body := rec.Body.String()
				if rec.Code != tt.code {
					t.Fatalf("GET %s = %d, want %d:\n%s", tt.path, rec.Code, tt.code, body)
				}
				want, wantNot := tt.want, tt.wantNot
				if signedIn {
					want = append(append([]string(nil), want...), tt.signedIn...)
				} else {
					wantNot = append(append([]string(nil), wantNot...), tt.signedOut...)
				}
				for _, w := range want {
					if !strings.Contains(body, w) {
						t.Errorf("GET %s lacks %q", tt.path, w)
					}
				}
				for _, w := range wantNot {
					if strings.Contains(body, w) {
						t.Errorf("GET %s has %q", tt.path, w)
					}
				}
				if strings.HasPrefix(tt.path, "/api/") && !json.Valid(rec.Body.Bytes()) {
					t.Errorf("GET %s: not JSON", tt.path)
				}
				if t.Failed() {
					t.Logf("page:\n%s", body)
				}
			})
		}
	}
}

// TestLiveCostsLittle: a live page's poll that finds nothing new is a
// 304 (the page's ETag), so that an open tab costs the server a render
// and not the bytes.
func TestLiveCostsLittle(t *testing.T) {
	d := newDash(t)
	srv := New(d.config())
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag == "" {
		t.Fatalf("GET / = %d with ETag %q", rec.Code, etag)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("GET / with its ETag = %d, %d bytes; want 304", rec.Code, rec.Body.Len())
	}
	d.event(turtles.EventQueued, task("octo/hello", shaMain, "refs/heads/main", 0, "docs"), 59*time.Minute, "", nil)
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), ">docs</a>") {
		t.Errorf("GET / after a new task, with the old ETag = %d; want the page with it", rec.Code)
	}
	if h := rec.Header(); h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("a page with action buttons may be framed: %v", h)
	}
}

// TestSearchPages pages through the history 2 tasks at a time through the
// JSON API: each task once, in order, and the same as one long list.
func TestSearchPages(t *testing.T) {
	d := newDash(t)
	cfg := d.config()
	list := func(path string) (ids []string, next string) {
		t.Helper()
		rec := serve(cfg, path)
		var out struct {
			Tasks []state.Task
			Next  string
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			t.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
		for _, x := range out.Tasks {
			ids = append(ids, x.ID)
		}
		return ids, out.Next
	}
	all, next := list("/api/v1/tasks")
	if len(all) != 6 || next != "" {
		t.Fatalf("all tasks: %d, next %q; want 6 and no next", len(all), next)
	}
	var paged []string
	path := "/api/v1/tasks?limit=2"
	for range 10 {
		ids, next := list(path)
		paged = append(paged, ids...)
		if next == "" {
			break
		}
		path = "/api/v1/tasks?limit=2&after=" + next
	}
	if diff := cmp.Diff(all, paged); diff != "" {
		t.Errorf("pages (-one list +pages):\n%s", diff)
	}
}

// TestAuthMounted: with Auth, login's paths are its to serve; without,
// they do not exist.
func TestAuthMounted(t *testing.T) {
	d := newDash(t)
	auth := &fakeAuth{}
	cfg := d.config()
	cfg.Auth = auth
	srv := New(cfg)
	paths := []string{"GET /login", "POST /logout", "GET /oauth/github/callback", "POST /actions/rerun"}
	for _, p := range paths {
		method, path, _ := strings.Cut(p, " ")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("%s = %d, want Auth to serve it", p, rec.Code)
		}
	}
	if diff := cmp.Diff(paths, auth.served); diff != "" {
		t.Errorf("Auth served (-want +got):\n%s", diff)
	}
	cfg.Auth = nil
	for _, p := range paths {
		method, path, _ := strings.Cut(p, " ")
		rec := httptest.NewRecorder()
		New(cfg).ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s without Auth = %d, want 404 or 405", p, rec.Code)
		}
	}
}

// TestRepoOfKey: a stored file's repository, for the read check.
func TestRepoOfKey(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	for key, want := range map[string]string{
		store.AttemptPrefix(task("octo/hello", sha, "", 0, "unit")) + "log":                        "octo/hello",
		store.AttemptPrefix(task("group/sub/proj", sha, "", 0, "debian/unit")) + "artifacts/x.txt": "group/sub/proj",
		"octo/hello/" + sha + "/unit/1":     "", // no file
		"octo/" + sha + "/unit/1/log":       "", // no repository name
		"octo/hello/notasha/unit/1/log":     "",
		"index.html":                        "",
		"octo/hello/" + sha[:39] + "/u/1/l": "",
	} {
		got, ok := repoOfKey(key)
		if got != want || ok != (want != "") {
			t.Errorf("repoOfKey(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}
