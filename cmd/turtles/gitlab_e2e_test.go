package main

import (
	"bytes"
	"encoding/json"
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
	"github.com/turtles-ci/turtles/forge/gitlab/gitlabtest"
	"github.com/turtles-ci/turtles/syncio"
)

const (
	glToken   = "glpat-e2e-token"
	glProject = "reptiles/shell"
)

// startGitLabServe runs `turtles serve --forge gitlab` against the fake
// GitLab gl; the token comes from a file, the webhook secret from the
// environment.
func startGitLabServe(t *testing.T, gl *gitlabtest.Server, extra ...string) *e2e.Server {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "gitlab-token")
	if err := os.WriteFile(tokenFile, []byte(glToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e2e.FreeAddr(t)
	dataDir := t.TempDir()
	s := &e2e.Server{T: t, URL: "http://" + addr, DataDir: dataDir, Logs: &syncio.Buffer{},
		Env: []string{"TURTLES_WEBHOOK_SECRET=" + e2e.Secret},
		Args: append([]string{"serve", "--data-dir", dataDir, "--listen", addr, "--forge", "gitlab", "--gitlab-url", gl.URL,
			"--gitlab-token-file", tokenFile, "--slots", "2", "--retry-delays", "200ms", "--log-level", "debug"}, extra...)}
	s.Start()
	t.Cleanup(func() { s.Stop(syscall.SIGKILL) })
	return s
}

func glProjectJSON(repoDir string) map[string]any {
	return map[string]any{"id": 7, "name": "shell", "path_with_namespace": glProject, "default_branch": "main",
		"git_http_url": "file://" + repoDir, "web_url": "https://gitlab.example.com/" + glProject}
}

func glMRPayload(repoDir, sha string, userID int, username string) []byte {
	return glMRUpdate(repoDir, "", sha, userID, username)
}

// glMRUpdate is an update that pushed sha over oldrev; "open" without
// oldrev.
func glMRUpdate(repoDir, oldrev, sha string, userID int, username string) []byte {
	attrs := map[string]any{"iid": 42, "action": "open", "state": "opened", "author_id": userID,
		"source_branch": "harden", "target_branch": "main", "last_commit": map[string]any{"id": sha}}
	if oldrev != "" {
		attrs["action"], attrs["oldrev"] = "update", oldrev
	}
	b, _ := json.Marshal(map[string]any{
		"object_kind": "merge_request", "event_type": "merge_request",
		"user":              map[string]any{"id": userID, "username": username, "name": username},
		"project":           glProjectJSON(repoDir),
		"object_attributes": attrs,
	})
	return b
}

func glNotePayload(repoDir string, userID int, username, note string) []byte {
	b, _ := json.Marshal(map[string]any{
		"object_kind": "note", "event_type": "note",
		"user":              map[string]any{"id": userID, "username": username},
		"project":           glProjectJSON(repoDir),
		"object_attributes": map[string]any{"note": note, "noteable_type": "MergeRequest", "action": "create", "system": false},
		"merge_request":     map[string]any{"iid": 42, "target_branch": "main"},
	})
	return b
}

// waitGitLabFinal waits for a final status of each context on sha.
func waitGitLabFinal(t *testing.T, gl *gitlabtest.Server, sha string, timeout time.Duration, contexts ...string) map[string]gitlabtest.Status {
	t.Helper()
	got := map[string]gitlabtest.Status{}
	e2e.WaitFor(t, timeout, "final GitLab statuses of "+strings.Join(contexts, ", "), func() bool {
		for _, c := range contexts {
			st, ok := gl.Final(glProject, sha, c)
			if !ok || st.State == "pending" || st.State == "running" {
				return false
			}
			got[c] = st
		}
		return true
	})
	return got
}

// TestServeGitLab runs `turtles serve --forge gitlab` against a fake GitLab:
// a member's merge request is tested and its statuses, with log links,
// land on GitLab; a member's /retest runs the failed context again; a
// stranger's /retest and a forged token do nothing.
func TestServeGitLab(t *testing.T) {
	gl := gitlabtest.NewServer(t, glToken)
	repoDir := t.TempDir()
	const matrix = "contexts:\n  - name: pass\n    command: echo shell is hard\n  - name: fail\n    command: echo cracked; exit 4\n"
	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": matrix})
	gl.SetFile(glProject, sha, ".turtles.yaml", []byte(matrix))
	gl.SetProjectAccess(glProject, "alice", gitlabtest.Developer)
	gl.SetProjectAccess(glProject, "morgan", gitlabtest.Maintainer)
	gl.SetProjectAccess(glProject, "rita", gitlabtest.Reporter)
	gl.SetMergeRequests(glProject, gitlabtest.MergeRequest{IID: 42, HeadSHA: sha, TargetBranch: "main", Author: "alice"})
	s := startGitLabServe(t, gl)

	body := glMRPayload(repoDir, sha, 31, "alice")
	if code, out := s.GitLabHook("Merge Request Hook", "mr-1", "wrong-token", body); code != http.StatusUnauthorized {
		t.Fatalf("forged token: %d %s, want 401", code, out)
	}
	if code, out := s.GitLabHook("Merge Request Hook", "mr-1", e2e.Secret, body); code != 200 || !strings.Contains(out, "gate") {
		t.Fatalf("merge request: %d %s", code, out)
	}
	final := waitGitLabFinal(t, gl, sha, 60*time.Second, "pass", "fail")
	if st := final["pass"]; st.State != "success" || !strings.HasPrefix(st.TargetURL, s.URL+"/tasks/") {
		t.Errorf("pass: %+v, want success with a link to its log page", st)
	}
	if st := final["fail"]; st.State != "failed" || !strings.Contains(st.Description, "4") {
		t.Errorf("fail: %+v, want failed naming exit status 4", st)
	}
	var running bool
	for _, st := range gl.Statuses() {
		running = running || st.Name == "pass" && st.State == "running"
	}
	if !running {
		t.Errorf("no running status for pass before its final one: %+v", gl.Statuses())
	}
	resp, err := http.Get(final["pass"].TargetURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "shell is hard") {
		t.Errorf("log page %s does not show the command's output:\n%s", final["pass"].TargetURL, page)
	}

	// A Reporter cannot push: their /retest is ignored.
	n := len(gl.Statuses())
	body = glNotePayload(repoDir, 55, "rita", "/retest")
	if code, out := s.GitLabHook("Note Hook", "note-1", e2e.Secret, body); code != 200 {
		t.Fatalf("stranger's /retest: %d %s", code, out)
	}
	time.Sleep(time.Second)
	if got := len(gl.Statuses()); got != n {
		t.Errorf("a Reporter's /retest set %d statuses", got-n)
	}

	// A maintainer's /retest runs the failed context again, as attempt 2.
	body = glNotePayload(repoDir, 12, "morgan", "Flaky?\n/retest")
	if code, out := s.GitLabHook("Note Hook", "note-2", e2e.Secret, body); code != 200 {
		t.Fatalf("/retest: %d %s", code, out)
	}
	e2e.WaitFor(t, 60*time.Second, "fail's second attempt", func() bool {
		st, ok := gl.Final(glProject, sha, "fail")
		return ok && st.State == "failed" && strings.HasSuffix(st.TargetURL, "/2")
	})
	if st, _ := gl.Final(glProject, sha, "pass"); !strings.HasSuffix(st.TargetURL, "/1") {
		t.Errorf("/retest ran pass again: %+v", st)
	}
	s.Stop(syscall.SIGTERM)
	for name, secret := range map[string]string{"GitLab token": glToken, "webhook secret": e2e.Secret} {
		if strings.Contains(s.Logs.String(), secret) {
			t.Errorf("the %s appears in the server log", name)
		}
	}
}

// TestServeGitLabSupersedeAndScan: a new push to a merge request cancels
// the old head's running task, whose status becomes canceled on GitLab;
// and a restart with the scanner finds the branch head and the merge
// requests by itself, a stranger's waiting for /ok-to-test.
func TestServeGitLabSupersedeAndScan(t *testing.T) {
	gl := gitlabtest.NewServer(t, glToken)
	base := t.TempDir()
	repoDir := filepath.Join(base, glProject+".git")
	os.MkdirAll(repoDir, 0o755)
	const slow = "contexts:\n  - name: slow\n    command: echo started; sleep 60\n"
	const quick = "contexts:\n  - name: quick\n    command: echo quick\n"
	oldSHA := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": slow})
	newSHA := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": quick})
	gl.SetFile(glProject, oldSHA, ".turtles.yaml", []byte(slow))
	gl.SetFile(glProject, newSHA, ".turtles.yaml", []byte(quick))
	gl.SetProjectAccess(glProject, "alice", gitlabtest.Developer)
	s := startGitLabServe(t, gl)

	body := glMRPayload(repoDir, oldSHA, 31, "alice")
	if code, out := s.GitLabHook("Merge Request Hook", "s-1", e2e.Secret, body); code != 200 {
		t.Fatalf("merge request: %d %s", code, out)
	}
	e2e.WaitFor(t, 30*time.Second, "slow running", func() bool {
		st, ok := gl.Final(glProject, oldSHA, "slow")
		return ok && st.State == "running"
	})
	body = glMRUpdate(repoDir, oldSHA, newSHA, 31, "alice")
	if code, out := s.GitLabHook("Merge Request Hook", "s-2", e2e.Secret, body); code != 200 || !strings.Contains(out, "cancelled") {
		t.Fatalf("new push: %d %s, want the old head's task cancelled", code, out)
	}
	if st := waitGitLabFinal(t, gl, oldSHA, 30*time.Second, "slow")["slow"]; st.State != "canceled" || !strings.Contains(st.Description, "superseded") {
		t.Errorf("old head's slow: %+v, want canceled as superseded", st)
	}
	if st := waitGitLabFinal(t, gl, newSHA, 30*time.Second, "quick")["quick"]; st.State != "success" {
		t.Errorf("new head's quick: %+v", st)
	}
	s.Stop(syscall.SIGKILL)

	// No webhooks now: the scanner finds main's head and both merge
	// requests; a stranger's waits.
	mainSHA := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": quick, "main.txt": "main"})
	strangerSHA := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": quick, "x.txt": "stranger"})
	for _, sha := range []string{mainSHA, strangerSHA} {
		gl.SetFile(glProject, sha, ".turtles.yaml", []byte(quick))
	}
	gl.SetBranch(glProject, "main", mainSHA)
	gl.AddUser("mallory")
	gl.SetMergeRequests(glProject,
		gitlabtest.MergeRequest{IID: 42, HeadSHA: newSHA, TargetBranch: "main", Author: "alice"},
		gitlabtest.MergeRequest{IID: 43, HeadSHA: strangerSHA, TargetBranch: "main", Author: "mallory"})
	s = startGitLabServe(t, gl, "--scan-repos", glProject, "--clone-base-url", "file://"+base)
	if st := waitGitLabFinal(t, gl, mainSHA, 30*time.Second, "quick")["quick"]; st.State != "success" {
		t.Errorf("main's quick after a scan: %+v", st)
	}
	e2e.WaitFor(t, 10*time.Second, "stranger's merge request waiting", func() bool {
		st, ok := gl.Final(glProject, strangerSHA, "turtles")
		return ok && st.State == "pending" && strings.Contains(st.Description, "ok-to-test")
	})
	if _, ok := gl.Final(glProject, strangerSHA, "quick"); ok {
		t.Error("a stranger's merge request ran without /ok-to-test")
	}
}

// TestHookGitLab runs `turtles hook --forge gitlab`: it mounts
// /hook/gitlab, not /hook/github, checks the token and queues a push.
func TestHookGitLab(t *testing.T) {
	addr := e2e.FreeAddr(t)
	cmd := exec.Command(e2e.Bin(t), "hook", "--forge", "gitlab", "--data-dir", t.TempDir(), "--listen", addr)
	cmd.Env = append(os.Environ(), "TURTLES_WEBHOOK_SECRET="+e2e.Secret)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("turtles hook output:\n%s", logs.String())
		}
	})
	s := &e2e.Server{T: t, URL: "http://" + addr}
	e2e.WaitFor(t, 10*time.Second, "hook's /metrics", func() bool {
		resp, err := http.Get(s.URL + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	body, _ := json.Marshal(map[string]any{"object_kind": "push", "ref": "refs/heads/main",
		"before": strings.Repeat("0", 40), "after": strings.Repeat("ab", 20),
		"project": map[string]any{"path_with_namespace": glProject, "git_http_url": "https://gitlab.example.com/" + glProject + ".git"}})
	if code, out := s.GitLabHook("Push Hook", "h-1", "forged", body); code != http.StatusUnauthorized {
		t.Errorf("forged token: %d %s", code, out)
	}
	if code, out := s.GitLabHook("Push Hook", "h-1", e2e.Secret, body); code != 200 || !strings.Contains(out, "queued 1") {
		t.Errorf("push: %d %s", code, out)
	}
	resp, err := http.Post(s.URL+"/hook/github", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/hook/github on a GitLab hook: %d, want 404", resp.StatusCode)
	}
}
