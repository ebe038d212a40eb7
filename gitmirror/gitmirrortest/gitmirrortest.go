// Package gitmirrortest is a fake forge for tests of the git mirror and
// of bots that fetch through it: a real git server (git http-backend) of
// bare repositories that wants credentials. Tests import it; nothing
// else may.
package gitmirrortest

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/turtles-ci/turtles/git"
)

// Token is what the fake forge wants as the password of
// x-access-token, as GitHub does for an installation token.
const Token = "forge-secret-0123456789"

// Forge is a real git server (git http-backend) of bare repositories
// that wants basic credentials, as a forge does for a private repository,
// and counts the fetches it answers.
type Forge struct {
	t    testing.TB
	root string
	// Server is the forge's HTTP server.
	Server *httptest.Server
	// Fetches counts reference advertisements: one per git fetch.
	Fetches atomic.Int64
	// Requests counts every request, answered or not.
	Requests atomic.Int64
	// Hang makes every request wait until the client goes.
	Hang atomic.Bool
}

// NewForge starts a forge with no repositories; Push makes them.
func NewForge(t testing.TB) *Forge {
	t.Helper()
	f := &Forge{t: t, root: t.TempDir()}
	backend := &cgi.Handler{
		Path: gitPath(t),
		Args: []string{"http-backend"},
		// Commits are served by ID whatever refers to them, as GitHub
		// serves a pull request's commits after a force push.
		Env: append(git.Environ(), "GIT_PROJECT_ROOT="+f.root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=uploadpack.allowAnySHA1InWant", "GIT_CONFIG_VALUE_0=true"),
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+Token))
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Requests.Add(1)
		if f.Hang.Load() {
			<-r.Context().Done()
			return
		}
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="forge"`)
			http.Error(w, "credentials", http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			f.Fetches.Add(1)
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Server.Close)
	return f
}

func gitPath(t testing.TB) string {
	p, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	return p
}

// Auth returns the credentials the forge wants, as Config.Auth does.
func (f *Forge) Auth(context.Context, string) (string, error) {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+Token)), nil
}

// Upstream is the forge's clone URL of name.
func (f *Forge) Upstream(name string) string { return f.Server.URL + "/" + name + ".git" }

// GitIn returns a function that runs git in dir and returns its output.
func GitIn(t testing.TB, dir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(git.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

// PushRef commits a file on top of name's main branch and pushes it to
// ref alone (such as refs/keep/x, which a mirror does not copy), and
// returns the commit.
func (f *Forge) PushRef(name, ref, file, data string) string {
	f.t.Helper()
	sha := f.Push(name, file, data)
	work := filepath.Join(f.root, ".work", name)
	bare := filepath.Join(f.root, name+".git")
	g := GitIn(f.t, work)
	g("push", "-q", bare, "HEAD:"+ref)
	g("push", "-q", "--force", bare, "HEAD~1:refs/heads/main")
	return sha
}

// Push commits a file to name's main branch at the forge (creating the
// repository) and returns the commit.
func (f *Forge) Push(name, file, data string) string {
	t := f.t
	t.Helper()
	bare := filepath.Join(f.root, name+".git")
	work := filepath.Join(f.root, ".work", name)
	if _, err := os.Stat(bare); err != nil {
		if err := os.MkdirAll(bare, 0o755); err != nil {
			t.Fatal(err)
		}
		GitIn(t, bare)("init", "-q", "--bare", "-b", "main")
		if err := os.MkdirAll(work, 0o755); err != nil {
			t.Fatal(err)
		}
		GitIn(t, work)("init", "-q", "-b", "main")
	}
	if err := os.WriteFile(filepath.Join(work, file), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	g := GitIn(t, work)
	g("add", file)
	g("commit", "-q", "-m", "change "+file)
	g("push", "-q", bare, "HEAD:refs/heads/main")
	return g("rev-parse", "HEAD")
}
