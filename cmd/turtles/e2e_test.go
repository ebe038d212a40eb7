package main

// End-to-end tests: the real turtles binary, real git repositories, the
// embedded queue on disk, and a fake GitHub API that records statuses.
// Each server start serves many assertions.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/state"
)

func TestMain(m *testing.M) { os.Exit(e2e.Run(m)) }

// prAuthor opens the pull requests of prPayload. The payload's
// association proves nothing; tests that want them run trusted give
// prAuthor push access on the fake forge (pushAccess), which the gate asks.
const prAuthor = "maint"

// pushAccess lets prAuthor push to octo/hello on gh.
func pushAccess(gh *githubtest.Server) { gh.SetPermission("octo/hello", prAuthor, "write") }

func prPayload(repoDir, sha string) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": "opened", "number": 7,
		"pull_request": map[string]any{
			"number": 7, "author_association": "MEMBER", "user": map[string]any{"login": prAuthor},
			"head": map[string]any{"sha": sha, "ref": "feature"},
			"base": map[string]any{"ref": "main"},
		},
		"repository": map[string]any{"full_name": "octo/hello", "clone_url": "file://" + repoDir},
	})
	return b
}

func TestServeEndToEnd(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	pushAccess(gh)
	repo := t.TempDir()
	sha := e2e.GitRepo(t, repo, map[string]string{
		".turtles.yaml": "contexts:\n  - name: pass\n    command: echo hello from the tests; ./check.sh\n  - name: fail\n    command: echo about to fail; exit 3\n",
		"check.sh":      "#!/bin/sh\necho checked in $TURTLES_CONTEXT at $TURTLES_SHA\n",
	})
	s := e2e.Serve(t, gh, t.TempDir(), "--max-deliveries", "2")

	body := prPayload(repo, sha)
	if code, out := s.Webhook("pull_request", "d-1", body, e2e.Sign(body)); code/100 != 2 {
		t.Fatalf("webhook: %d %s", code, out)
	}
	final := e2e.WaitFinal(t, gh, "octo/hello", sha, 60*time.Second, "pass", "fail")

	t.Run("statuses", func(t *testing.T) {
		if st := final["pass"]; st.State != "success" || !strings.HasPrefix(st.TargetURL, s.URL+"/tasks/") {
			t.Errorf("pass: got %+v, want success linking to a log page", st)
		}
		if st := final["fail"]; st.State != "failure" || !strings.Contains(st.Description, "3") {
			t.Errorf("fail: got %+v, want failure naming exit status 3", st)
		}
		var pending int
		for _, st := range gh.Statuses() {
			if st.Context == "turtles" {
				t.Errorf("a healthy plan must not post a status, got %+v", st)
			}
			if st.Context == "pass" && st.State == "pending" {
				pending++
			}
		}
		if pending == 0 {
			t.Errorf("no pending status for pass before its final one")
		}
	})
	t.Run("log page", func(t *testing.T) {
		resp, err := http.Get(final["pass"].TargetURL)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(page), "checked in pass at "+sha) {
			t.Errorf("log page %s: %d, want the command's output in:\n%s", final["pass"].TargetURL, resp.StatusCode, page)
		}
	})
	t.Run("api", func(t *testing.T) {
		tasks := s.Tasks(sha)
		got := map[string]string{}
		for _, x := range tasks {
			if x.State != state.Finished || x.Outcome == nil {
				t.Errorf("%s: state %s, want finished with an outcome", x.Context, x.State)
				continue
			}
			got[x.Context] = string(x.Outcome.Class)
		}
		want := map[string]string{"turtles": "success", "pass": "success", "fail": "failure"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tasks by outcome: got %v, want %v", got, want)
		}
	})
	t.Run("replayed delivery", func(t *testing.T) {
		n := len(gh.Statuses())
		code, out := s.Webhook("pull_request", "d-1", body, e2e.Sign(body))
		if code/100 != 2 {
			t.Fatalf("replay: %d %s", code, out)
		}
		time.Sleep(500 * time.Millisecond) // nothing should happen; give it a chance to
		if got := len(gh.Statuses()); got != n {
			t.Errorf("replayed delivery posted %d more statuses", got-n)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		tests := []struct {
			name  string
			event string
			body  []byte
			sig   string
			want  int
		}{
			{"wrong signature", "pull_request", body, e2e.Sign([]byte("other")), 401},
			{"no signature", "pull_request", body, "", 401},
			{"malformed json", "pull_request", []byte("{not json"), e2e.Sign([]byte("{not json")), 400},
			{"malformed signature", "pull_request", body, "sha256=00", 401},
			// Refused from its Content-Length, before it is read.
			{"oversize", "pull_request", bytes.Repeat([]byte(" "), 26<<20), "sha256=" + strings.Repeat("00", 32), 413},
			{"ping", "ping", []byte(`{"zen":"hi"}`), e2e.Sign([]byte(`{"zen":"hi"}`)), 200},
		}
		for i, tt := range tests {
			if code, out := s.Webhook(tt.event, fmt.Sprintf("bad-%d", i), tt.body, tt.sig); code != tt.want {
				t.Errorf("%s: got %d (%s), want %d", tt.name, code, strings.TrimSpace(out), tt.want)
			}
		}
	})
	t.Run("config error names file and line", func(t *testing.T) {
		bad := e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": "contexts:\n  - name: pass\n    comand: true\n"})
		b := prPayload(repo, bad)
		s.Webhook("pull_request", "d-bad-config", b, e2e.Sign(b))
		st := e2e.WaitFinal(t, gh, "octo/hello", bad, 30*time.Second, "turtles")["turtles"]
		if st.State != "failure" || !strings.Contains(st.Description, `.turtles.yaml:3: unknown key "comand"`) {
			t.Errorf("got %+v, want a failure naming .turtles.yaml:3 and the key", st)
		}
	})
	t.Run("unreachable repo is infra, retried, dead-lettered, error", func(t *testing.T) {
		b := bytes.Replace(prPayload(filepath.Join(repo, "missing"), sha), []byte("MEMBER"), []byte("OWNER"), 1)
		s.Webhook("pull_request", "d-missing", b, e2e.Sign(b))
		// Same repo name and SHA as above, but the plan task is done, so a
		// new one may run; it fails to fetch.
		e2e.WaitFor(t, 30*time.Second, "dead letter", func() bool {
			resp, err := http.Get(s.URL + "/api/v1/deadletters")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(out), "missing")
		})
		var st githubtest.Status
		e2e.WaitFor(t, 10*time.Second, "error status", func() bool {
			var ok bool
			st, ok = gh.Final("octo/hello", sha, "turtles")
			return ok && st.State == "error"
		})
		tasks := s.Tasks(sha)
		for _, x := range tasks {
			if x.Context == "turtles" && len(x.Attempts) < 2 {
				t.Errorf("plan task attempts: %d, want retried", len(x.Attempts))
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(s.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []string{"turtles_webhook_deliveries_total", "turtles_queue_tasks", "turtles_statuses_total"} {
			if !strings.Contains(string(out), m) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
	})
	if err := s.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve after SIGTERM with nothing running: %v, want a clean exit", err)
	}
	if strings.Contains(s.Logs.String(), e2e.Token) {
		t.Errorf("the GitHub token appears in the server log")
	}
}

// TestCrashRestart kills serve with SIGKILL while a task runs; after a
// restart the task runs again and exactly one final status is reported.
func TestCrashRestart(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	pushAccess(gh)
	repo := t.TempDir()
	sha := e2e.GitRepo(t, repo, map[string]string{
		".turtles.yaml": "contexts:\n  - name: slow\n    command: echo started; sleep 3; echo finished\n",
	})
	data := t.TempDir()
	s := e2e.Serve(t, gh, data, "--lease", "2s")
	body := prPayload(repo, sha)
	s.Webhook("pull_request", "crash-1", body, e2e.Sign(body))
	e2e.WaitFor(t, 30*time.Second, "slow task running", func() bool {
		for _, x := range s.Tasks(sha) {
			if x.Context == "slow" && x.State == state.Running {
				return true
			}
		}
		return false
	})
	s.Stop(syscall.SIGKILL)
	s.Start()
	st := e2e.WaitFinal(t, gh, "octo/hello", sha, 60*time.Second, "slow")["slow"]
	if st.State != "success" {
		t.Fatalf("final status %+v, want success", st)
	}
	time.Sleep(time.Second) // a duplicate would come right after
	var finals int
	for _, x := range gh.Statuses() {
		if x.Context == "slow" && x.State != "pending" {
			finals++
		}
	}
	if finals != 1 {
		t.Errorf("%d final statuses for slow, want exactly 1: %+v", finals, gh.Statuses())
	}
	for _, x := range s.Tasks(sha) {
		if x.Context == "slow" && len(x.Attempts) < 2 {
			t.Errorf("slow ran %d attempts, want a second one after the crash", len(x.Attempts))
		}
	}
	if err := s.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

// TestDrain: SIGTERM while a task runs lets it finish, then exits.
func TestDrain(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	pushAccess(gh)
	repo := t.TempDir()
	sha := e2e.GitRepo(t, repo, map[string]string{
		".turtles.yaml": "contexts:\n  - name: slow\n    command: sleep 2; echo done\n",
	})
	s := e2e.Serve(t, gh, t.TempDir())
	body := prPayload(repo, sha)
	s.Webhook("pull_request", "drain-1", body, e2e.Sign(body))
	e2e.WaitFor(t, 30*time.Second, "slow task running", func() bool {
		for _, x := range s.Tasks(sha) {
			if x.Context == "slow" && x.State == state.Running {
				return true
			}
		}
		return false
	})
	if err := s.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	if st, ok := gh.Final("octo/hello", sha, "slow"); !ok || st.State != "success" {
		t.Errorf("after drain: final status %+v, want success reported before exit", st)
	}
}

func runTurtles(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(e2e.Bin(t), args...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("turtles %v: %v", args, err)
	}
	return 0, string(out)
}

// TestCommands covers what a developer types: submit to a running serve,
// status --wait, and run to reproduce a context locally.
func TestCommands(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	repo := t.TempDir()
	e2e.GitRepo(t, repo, map[string]string{
		".turtles.yaml": "contexts:\n  - name: pass\n    command: echo all good in $TURTLES_CONTEXT\n  - name: fail\n    command: echo broken >&2; exit 4\n",
	})
	data := t.TempDir()
	s := e2e.Serve(t, gh, data)

	t.Run("submit all contexts and wait", func(t *testing.T) {
		code, out := runTurtles(t, "submit", "--data-dir", data, "--public-url", s.URL, "--repo-url", repo, "--sha", "HEAD", "--repo", "octo/hello")
		if code != 0 || !strings.Contains(out, "queued octo/hello@") {
			t.Fatalf("submit: %d %s", code, out)
		}
		code, out = runTurtles(t, "status", "--server", s.URL, "--repo", "octo/hello", "--expect", "3", "--wait", "60s")
		if code != 1 || !strings.Contains(out, "exit status 4") || !strings.Contains(out, s.URL+"/tasks/") {
			t.Errorf("status --wait: exit %d, want 1 (a test failed) with the failure and log links:\n%s", code, out)
		}
	})
	t.Run("submit one context with a command", func(t *testing.T) {
		code, out := runTurtles(t, "submit", "--data-dir", data, "--repo-url", repo, "--sha", "HEAD", "--repo", "octo/hello",
			"--context", "adhoc", "--command", "echo adhoc ran")
		if code != 0 {
			t.Fatalf("submit: %d %s", code, out)
		}
		code, out = runTurtles(t, "status", "--server", s.URL, "--repo", "octo/hello", "--state", "finished", "--expect", "4", "--wait", "60s")
		if !strings.Contains(out, "adhoc") {
			t.Errorf("status: exit %d, want the adhoc context:\n%s", code, out)
		}
	})
	t.Run("a finished task's key may be queued again", func(t *testing.T) {
		// The adhoc task finished above: its final event frees its key in
		// the state database (the recorder runs just after the history
		// shows it finished), so the same key is queued again, once.
		args := []string{"submit", "--data-dir", data, "--repo-url", repo, "--sha", "HEAD", "--repo", "octo/hello",
			"--context", "adhoc", "--command", "echo adhoc ran again"}
		var last string
		e2e.WaitFor(t, 10*time.Second, "the adhoc key to be free again", func() bool {
			code, out := runTurtles(t, args...)
			if code != 0 {
				t.Fatalf("submit: %d %s", code, out)
			}
			last = out
			return strings.Contains(out, "queued octo/hello@") && !strings.Contains(out, "already")
		})
		t.Logf("submit: %s", last)
	})
	t.Run("submit refuses bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"--repo-url", repo, "--sha", "no-such-rev"},
			{"--repo-url", repo, "--sha", "HEAD", "--command", "x"},
			{"--repo-url", "https://example.org/a/b", "--sha", "not-a-sha"},
		} {
			if code, out := runTurtles(t, append([]string{"submit", "--data-dir", data}, args...)...); code == 0 {
				t.Errorf("submit %v succeeded: %s", args, out)
			}
		}
	})
	t.Run("run", func(t *testing.T) {
		tests := []struct {
			context  string
			wantCode int
			wantOut  string
		}{
			{"pass", 0, "all good in pass"},
			{"fail", 1, "broken"},
			{"missing", 1, "not in .turtles.yaml"},
		}
		for _, tt := range tests {
			code, out := runTurtles(t, "run", tt.context, "--dir", repo)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Errorf("run %s: exit %d, want %d with %q:\n%s", tt.context, code, tt.wantCode, tt.wantOut, out)
			}
		}
		// What keeps turtles from running the task is not a test failure.
		for _, args := range [][]string{
			{"--dir", filepath.Join(t.TempDir(), "nothing")},
			{"--dir", repo, "--rev", "no-such-rev"},
			{"--dir", repo, "--image-peers", "not a name"},
		} {
			if code, out := runTurtles(t, append([]string{"run", "pass"}, args...)...); code != 2 {
				t.Errorf("run pass %v: exit %d, want 2 (infrastructure):\n%s", args, code, out)
			}
		}
	})
	t.Run("status of a server that does not answer", func(t *testing.T) {
		// With --wait, exit 1 means a test failed; this is not that.
		if code, out := runTurtles(t, "status", "--wait", "2s", "--server", "http://127.0.0.1:1"); code != 2 {
			t.Errorf("status --wait: exit %d, want 2:\n%s", code, out)
		}
		if code, out := runTurtles(t, "status", "--server", "http://127.0.0.1:1"); code != 1 {
			t.Errorf("status: exit %d, want 1 (a command's error):\n%s", code, out)
		}
	})
	t.Run("bad settings", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "turtles.yaml")
		os.WriteFile(cfg, []byte("slots: 2\nslot: 3\n"), 0o644)
		for _, args := range [][]string{
			{"serve", "--config", cfg},
			{"serve", "--slots", "0"},
			{"serve", "--lease", "soon"},
		} {
			code, out := runTurtles(t, args...)
			if code == 0 || !strings.Contains(out, "turtles:") {
				t.Errorf("%v: exit %d, want an error:\n%s", args, code, out)
			}
		}
	})
}
