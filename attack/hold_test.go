package attack

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/store"
)

// A held VM (a context's hold:) holds everything the failed test had in
// memory and on disk: it must reach only those who may read the log.
// Against the real binary with --private: nobody signed in, a person the
// forge does not show the repository to, a path that climbs out of
// another repository, and turtles debug with that person's session all
// get nothing; then the reader gets it, through the page's URL and
// through turtles debug (the barrier: the same requests, done right, go
// through).
func TestAttackHeldVM(t *testing.T) {
	const repo, heldBytes = "octo/secretive", "HELD-MEMORY-WITH-SECRETS"
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	repoDir := filepath.Join(base, "octo", "secretive.git")
	os.MkdirAll(repoDir, 0o755)
	matrix := "contexts:\n  - name: fails\n    command: exit 1\n"
	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": matrix})
	gh.SetFile(repo, sha, ".turtles.yaml", []byte(matrix))
	gh.SetPrivate(repo)
	gh.SetPermission(repo, "reader", "read")
	creds := t.TempDir()
	secretFile, keyFile := filepath.Join(creds, "oauth-secret"), filepath.Join(creds, "session-key")
	os.WriteFile(secretFile, []byte("dash-secret\n"), 0o600)
	os.WriteFile(keyFile, []byte(sessionKey+"\n"), 0o600)
	data := t.TempDir()
	s := e2e.Serve(t, gh, data, "--private", "--oauth-github-client-id", "dash", "--oauth-github-client-secret-file", secretFile,
		"--session-key-file", keyFile, "--clone-base-url", "file://"+base)
	gh.OAuth().AddClient("dash", "dash-secret", s.URL+"/oauth/github/callback")
	push := e2e.PushPayload(repo, repoDir, sha)
	if code, out := s.Webhook("push", "push-1", push, e2e.Sign(push)); code/100 != 2 {
		t.Fatalf("push: %d %s", code, out)
	}
	taskURL := e2e.WaitFinal(t, gh, repo, sha, 60*time.Second, "fails")["fails"].TargetURL
	// The held VM, as a bot stores it beside the log.
	st, err := store.NewDir(filepath.Join(data, "store"))
	if err != nil {
		t.Fatal(err)
	}
	key := store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: repo}, SHA: sha, Context: "fails", Attempt: 1}) + store.HeldName
	if err := st.Put(context.Background(), key, strings.NewReader(heldBytes), "application/gzip"); err != nil {
		t.Fatal(err)
	}
	w := &loginWorld{gh: gh, s: s}
	get := func(b *loginBrowser, path string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		if b != nil {
			c.Jar = b.jar
		}
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	debug := func(cookie string) (int, string, string) {
		t.Helper()
		dir := t.TempDir()
		cmd := exec.Command(e2e.Bin(t), "debug", taskURL, "--data-dir", dir, "--images-dir", t.TempDir(), "--", "true")
		cmd.Env = append(os.Environ(), "TURTLES_COOKIE="+cookie)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out), dir
	}

	outsider := w.browser()
	outsider.signIn(t, "outsider", "/")
	t.Run("anonymous", func(t *testing.T) {
		attack(t, "held VM: fetched by someone not signed in on a private server")
		if code, body := get(nil, "/logs/"+key); code == http.StatusOK || strings.Contains(body, heldBytes) {
			t.Errorf("GET the held VM without a session: %d %q", code, body)
		}
	})
	t.Run("outsider", func(t *testing.T) {
		attack(t, "held VM: fetched by a signed-in person who may not read the repository")
		if code, body := get(outsider, "/logs/"+key); code != http.StatusNotFound || strings.Contains(body, heldBytes) {
			t.Errorf("GET the held VM as an outsider: %d %q, want 404", code, body)
		}
		if _, page := get(outsider, strings.TrimPrefix(taskURL, s.URL)); strings.Contains(page, "turtles debug") {
			t.Error("the task page shows an outsider the debug command")
		}
	})
	t.Run("climbing", func(t *testing.T) {
		attack(t, "held VM: fetched through a path that climbs out of a readable repository")
		gh.SetPermission("octo/open", "outsider", "read")
		if code, body := get(outsider, "/logs/octo/open/../../"+key); code == http.StatusOK || strings.Contains(body, heldBytes) {
			t.Errorf("GET through ..: %d %q", code, body)
		}
	})
	t.Run("debug as outsider", func(t *testing.T) {
		attack(t, "held VM: resumed by turtles debug with the session of a person who may not read the log")
		code, out, dir := debug("turtles_session=" + outsider.session())
		if code == 0 || !strings.Contains(out, "not found") && !strings.Contains(out, "no held VM") {
			t.Errorf("turtles debug as an outsider: exit %d, want a failure to find it:\n%s", code, out)
		}
		if left, _ := os.ReadDir(filepath.Join(dir, "vms")); len(left) != 0 {
			t.Errorf("turtles debug as an outsider unpacked something: %v", left)
		}
	})

	// The barrier: the reader gets it, by URL and by turtles debug (which
	// fetches it, and then finds it is no archive).
	reader := w.browser()
	reader.signIn(t, "reader", "/")
	if code, body := get(reader, "/logs/"+key); code != http.StatusOK || body != heldBytes {
		t.Fatalf("GET the held VM as a reader: %d %q, want it", code, body)
	}
	if code, out, _ := debug("turtles_session=" + reader.session()); code == 0 || !strings.Contains(out, "unpack the held machine") {
		t.Fatalf("turtles debug as a reader: exit %d, want it fetched and refused as no archive:\n%s", code, out)
	}
}
