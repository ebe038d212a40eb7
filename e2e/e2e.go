// Package e2e is the harness of end-to-end tests: it builds the real turtles
// binary once, runs it as a child process against fake forges, makes git
// repositories and signs webhooks as GitHub does. Only tests import it.
package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/syncio"
)

// Credentials every server started here gets. Tests that play an attacker
// look for these strings where they must never be.
const (
	Token  = "ghp_e2e-test-token-5f1d"
	Secret = "e2e-webhook-secret-9c2e"
)

// Build builds ./cmd/turtles into dir and returns the binary's path. Call
// it from TestMain.
func Build(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	bin := filepath.Join(dir, "turtles")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/turtles")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build turtles: %w\n%s", err, out)
	}
	return bin, nil
}

// GitRepo commits files (mode 0755) to the repository in dir, making it
// if needed, and returns the new commit's SHA.
func GitRepo(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		Git(t, dir, "init", "-q", "-b", "main")
	}
	Git(t, dir, "add", "-A")
	Git(t, dir, "commit", "-q", "-m", "commit", "--allow-empty")
	return Git(t, dir, "rev-parse", "HEAD")
}

// Git runs git in dir and returns its trimmed output.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// FreeAddr returns a loopback address no one listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitFor polls ok every 50 ms until it holds, failing t after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Sign is GitHub's X-Hub-Signature-256 of body with Secret.
func Sign(body []byte) string {
	m := hmac.New(sha256.New, []byte(Secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Server is a running `turtles serve`.
type Server struct {
	T       testing.TB
	URL     string
	DataDir string
	Logs    *syncio.Buffer
	Args    []string
	// Env is added to the child's environment; the forge token and the
	// webhook secret are passed as files unless a test sets them here.
	Env []string
	Cmd *exec.Cmd
}

// Serve starts `turtles serve` on a free loopback port with its data in
// dataDir, talking to the fake GitHub gh, and stops it (SIGKILL) when the
// test ends. The token and webhook secret are given as files outside
// dataDir (as docs/trust.md asks), so a task that finds them found them
// through a hole, not by reading flags.
func Serve(t testing.TB, gh *githubtest.Server, dataDir string, extra ...string) *Server {
	t.Helper()
	addr := FreeAddr(t)
	creds := t.TempDir()
	tokenFile, secretFile := filepath.Join(creds, "token"), filepath.Join(creds, "secret")
	os.WriteFile(tokenFile, []byte(Token+"\n"), 0o600)
	os.WriteFile(secretFile, []byte(Secret+"\n"), 0o600)
	s := &Server{T: t, URL: "http://" + addr, DataDir: dataDir, Logs: &syncio.Buffer{},
		Args: append([]string{"serve", "--data-dir", dataDir, "--listen", addr, "--github-api", gh.URL + "/",
			"--github-token-file", tokenFile, "--webhook-secret-file", secretFile,
			"--slots", "2", "--retry-delays", "200ms", "--log-level", "debug"}, extra...)}
	s.Start()
	t.Cleanup(func() { s.Stop(syscall.SIGKILL) })
	return s
}

// Start starts the server with Args and waits for /healthz.
func (s *Server) Start() {
	s.T.Helper()
	s.Cmd = exec.Command(Bin(s.T), s.Args...)
	s.Cmd.Env = append(os.Environ(), s.Env...)
	s.Cmd.Stdout, s.Cmd.Stderr = s.Logs, s.Logs
	if err := s.Cmd.Start(); err != nil {
		s.T.Fatal(err)
	}
	WaitFor(s.T, 20*time.Second, "server health", func() bool {
		resp, err := http.Get(s.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// Stop sends sig, waits for the process and returns its exit error.
func (s *Server) Stop(sig syscall.Signal) error {
	if s.Cmd == nil || s.Cmd.Process == nil {
		return nil
	}
	s.Cmd.Process.Signal(sig)
	err := s.Cmd.Wait()
	s.Cmd = nil
	if s.T.Failed() {
		s.T.Logf("turtles serve output:\n%s", s.Logs.String())
	}
	return err
}

// Webhook posts a GitHub event and returns the status code and body.
// An empty signature sends none.
func (s *Server) Webhook(event, delivery string, body []byte, signature string) (int, string) {
	s.T.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/hook/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	if signature != "" {
		req.Header.Set("X-Hub-Signature-256", signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Fatalf("post webhook: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// GitLabHook posts a GitLab event with token as X-Gitlab-Token and
// returns the status code and body.
func (s *Server) GitLabHook(event, uuid, token string, body []byte) (int, string) {
	s.T.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/hook/gitlab", bytes.NewReader(body))
	req.Header.Set("X-Gitlab-Event", event)
	req.Header.Set("X-Gitlab-Event-UUID", uuid)
	req.Header.Set("X-Gitlab-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Fatalf("post webhook: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// Get fetches path from the server and returns the response (body read).
func (s *Server) Get(path string) (*http.Response, []byte) {
	s.T.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		s.T.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// Tasks lists the server's tasks of sha through its API.
func (s *Server) Tasks(sha string) []state.Task {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/api/v1/tasks?limit=1000&sha="+sha, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Fatalf("list tasks: %v", err)
	}
	defer resp.Body.Close()
	// An error page must not read as "no tasks".
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		s.T.Fatalf("list tasks: %s: %s", resp.Status, b)
	}
	var out struct {
		Tasks []state.Task `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		s.T.Fatalf("list tasks: %v", err)
	}
	return out.Tasks
}

// WaitFinal waits until gh has a final (not pending) status for each of
// contexts on repo@sha and returns them by context.
func WaitFinal(t testing.TB, gh *githubtest.Server, repo, sha string, timeout time.Duration, contexts ...string) map[string]githubtest.Status {
	t.Helper()
	got := map[string]githubtest.Status{}
	WaitFor(t, timeout, fmt.Sprintf("final statuses of %v", contexts), func() bool {
		for _, c := range contexts {
			st, ok := gh.Final(repo, sha, c)
			if !ok || st.State == "pending" {
				return false
			}
			got[c] = st
		}
		return true
	})
	return got
}

var bin string

// SetBin records the binary Build made, for Start.
func SetBin(path string) { bin = path }

// Bin is the binary of SetBin; it fails t when there is none.
func Bin(t testing.TB) string {
	if bin == "" {
		t.Fatal("e2e: no turtles binary: call e2e.Build and e2e.SetBin in TestMain")
	}
	return bin
}

// PushPayload is a GitHub push event of sha to main of repo, cloned from
// the local repository dir.
func PushPayload(repo, dir, sha string) []byte {
	b, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"full_name": repo, "clone_url": "file://" + dir}})
	return b
}

// Run builds the binary into a temporary directory, runs the tests of m
// with it and removes it; it returns m.Run's code. Call it from TestMain.
func Run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "turtles-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	b, err := Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	SetBin(b)
	return m.Run()
}
