package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
	"github.com/turtles-ci/turtles/store"
)

func fixture(t *testing.T) (*httptest.Server, turtles.Task) {
	t.Helper()
	res, st := historyAndStore(t)
	task := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: "octo/hello", CloneURL: "file:///x"},
		SHA: strings.Repeat("ab", 20), Context: "debian-12/unit", Pool: "public", Attempt: 1}
	ctx := context.Background()
	now := time.Now()
	for _, ev := range []turtles.Event{
		{ID: "1", Type: turtles.EventQueued, Task: task, Time: now},
		{ID: "2", Type: turtles.EventStarted, Task: task, Bot: "bot-a", LogURL: "http://x/tasks/1/1", Time: now},
	} {
		if err := res.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	prefix := store.AttemptPrefix(task)
	put := func(key, body, ct string) {
		if err := st.Put(ctx, prefix+key, strings.NewReader(body), ct); err != nil {
			t.Fatal(err)
		}
	}
	put(store.LogName, "line one\n\x1b[31mred line\x1b[0m\n", "text/plain; charset=utf-8")
	put("artifacts/evil.html", "<script>alert(1)</script>", "text/html")
	srv := httptest.NewServer(New(Config{History: res, Store: st}))
	t.Cleanup(srv.Close)
	return srv, task
}

func get(t *testing.T, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAPI(t *testing.T) {
	srv, task := fixture(t)
	tests := []struct {
		name     string
		path     string
		wantCode int
		wantIn   string
	}{
		{"list all", "/api/v1/tasks", 200, `"context": "debian-12/unit"`},
		{"filter by sha", "/api/v1/tasks?sha=" + task.SHA, 200, `"state": "running"`},
		{"filter excludes", "/api/v1/tasks?repo=octo/other", 200, `"tasks": []`},
		{"bad state", "/api/v1/tasks?state=bogus", 400, `unknown state`},
		{"bad limit", "/api/v1/tasks?limit=-1", 400, `limit`},
		{"one task", "/api/v1/tasks/" + task.ID(), 200, `"bot": "bot-a"`},
		{"unknown task", "/api/v1/tasks/nope", 404, `no such task`},
		{"no queue here", "/api/v1/deadletters", 404, `no queue`},
		{"health", "/healthz", 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := get(t, srv.URL+tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantIn) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantIn)
			}
		})
	}
}

func TestPagesAndFiles(t *testing.T) {
	srv, task := fixture(t)
	prefix := "/logs/" + store.AttemptPrefix(task)

	code, _, page := get(t, srv.URL+"/tasks/"+task.ID())
	if code != 200 || !strings.Contains(page, "red line") || strings.Contains(page, "\x1b[31m") {
		t.Errorf("task page: %d; want the log without escapes:\n%s", code, page)
	}
	if !strings.Contains(page, `data-live="true"`) {
		t.Errorf("a running task's page must follow its log live")
	}
	if code, _, _ := get(t, srv.URL+"/tasks/"+task.ID()+"/x"); code != 400 {
		t.Errorf("bad attempt: %d, want 400", code)
	}
	if code, _, body := get(t, srv.URL+"/"); code != 200 || !strings.Contains(body, "debian-12/unit") {
		t.Errorf("index: %d, want it to list the task", code)
	}

	// The live log page asks for the bytes it lacks with Range.
	code, _, body := get(t, srv.URL+prefix+store.LogName, "Range", "bytes=9-")
	if code != http.StatusPartialContent || !strings.HasPrefix(body, "\x1b[31mred") {
		t.Errorf("ranged log: %d %q, want 206 from byte 9", code, body)
	}
	code, h, _ := get(t, srv.URL+prefix+"artifacts/evil.html")
	if code != 200 || strings.Contains(h.Get("Content-Type"), "html") || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("an HTML artifact was served as %q (nosniff %q), want plain text", h.Get("Content-Type"), h.Get("X-Content-Type-Options"))
	}
	for path, want := range map[string]int{prefix + "missing": 404, "/logs/a/../../etc/passwd": 400} {
		if code, _, _ := get(t, srv.URL+path); code != want && !(want == 400 && code == 404) {
			t.Errorf("GET %s = %d, want %d", path, code, want)
		}
	}
	var task2 state.Task
	_, _, body = get(t, srv.URL+"/api/v1/tasks/"+task.ID())
	if err := json.Unmarshal([]byte(body), &task2); err != nil || len(task2.Attempts) != 1 {
		t.Errorf("task JSON: %v, %d attempts, want 1", err, len(task2.Attempts))
	}
}

func TestLogURL(t *testing.T) {
	task := turtles.Task{Repo: turtles.Repo{Name: "a/b"}, SHA: "s", Context: "c", Attempt: 3}
	if got, want := LogURL("http://h:1/", task), "http://h:1/tasks/"+task.ID()+"/3"; got != want {
		t.Errorf("LogURL = %q, want %q", got, want)
	}
}

func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                 "plain",
		"\x1b[1;32mok\x1b[0m":   "ok",
		"a\x1b[2Kb":             "ab",
		"trailing \x1b[":        "trailing ",
		"lone \x1b escape kept": "lone  escape kept",
	} {
		if got := stripANSI(in); got != want {
			t.Errorf("stripANSI(%q) = %q, want %q", in, got, want)
		}
	}
}

// history is the state database as serve wires it: the pages read it,
// the recorder writes events into it.
type history struct {
	*sqlite.DB
	rec *results.Recorder
}

func (h history) Handle(ctx context.Context, ev turtles.Event) error { return h.rec.Handle(ctx, ev) }

// historyAndStore opens a fresh history and a directory store for a
// test, closed when it ends.
func historyAndStore(t testing.TB) (history, *store.Dir) {
	t.Helper()
	dir := t.TempDir()
	res, err := openHistory(t, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	st, err := store.NewDir(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	return res, st
}

func openHistory(t testing.TB, path string) (history, error) {
	db, err := sqlite.Open(t.Context(), path, state.Options{})
	if err != nil {
		return history{}, err
	}
	return history{DB: db, rec: results.New(results.Config{History: db})}, nil
}
