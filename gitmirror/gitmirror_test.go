package gitmirror

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/git"
	"github.com/turtles-ci/turtles/gitmirror/gitmirrortest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkout checks t's commit out through the mirror as a bot does, and
// returns the checkout's directory.
func (m *testMirror) checkout(t *testing.T, task turtles.Task) (string, error) {
	t.Helper()
	r, err := m.client().Remote(task)
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	var log bytes.Buffer
	err = r.Checkout(ctxT(t), dir, task.SHA, &log)
	if err != nil {
		t.Logf("checkout log:\n%s", log.String())
	}
	return dir, err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A bot checks a commit out through the mirror; the forge's new push
// reaches the mirror at the next request that asks for it; a fresh copy
// is served without asking the forge again, a stale one is fetched.
func TestCheckoutThroughMirror(t *testing.T) {
	f := gitmirrortest.NewForge(t)
	m := newTestMirror(t, f)
	first := f.Push("octo/hello", "a.txt", "one\n")
	task := m.tasks.add("octo/hello", first)

	dir, err := m.checkout(t, task)
	if err != nil {
		t.Fatalf("checkout through the mirror: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a.txt")); got != "one\n" {
		t.Errorf("a.txt = %q, want %q", got, "one\n")
	}
	if n := f.Fetches.Load(); n != 1 {
		t.Errorf("forge fetches after the first checkout = %d, want 1", n)
	}
	// Neither secret is left where the task can read it.
	for _, p := range []string{filepath.Join(dir, ".git", "config"), filepath.Join(m.cfg.Dir, "octo", "hello.git", "config")} {
		if c := readFile(t, p); strings.Contains(c, mirrorToken) || strings.Contains(c, gitmirrortest.Token) {
			t.Errorf("%s holds a secret:\n%s", p, c)
		}
	}

	// Fresh and holding the commit: the forge is not asked.
	if _, err := m.checkout(t, task); err != nil {
		t.Fatalf("second checkout: %v", err)
	}
	if n := f.Fetches.Load(); n != 1 {
		t.Errorf("forge fetches after a checkout of a fresh copy = %d, want 1", n)
	}

	// A new push: the copy is fresh but lacks the commit, so it fetches.
	second := f.Push("octo/hello", "a.txt", "two\n")
	dir, err = m.checkout(t, m.tasks.add("octo/hello", second))
	if err != nil {
		t.Fatalf("checkout of a new push: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a.txt")); got != "two\n" {
		t.Errorf("a.txt = %q, want %q", got, "two\n")
	}
	if n := f.Fetches.Load(); n != 2 {
		t.Errorf("forge fetches after a new push = %d, want 2", n)
	}

	// Stale: fetched again even though it has the commit.
	m.clock.Advance(11 * time.Second)
	if _, err := m.checkout(t, task); err != nil {
		t.Fatalf("checkout of a stale copy: %v", err)
	}
	if n := f.Fetches.Load(); n != 3 {
		t.Errorf("forge fetches after the interval = %d, want 3", n)
	}
}

// A commit in no branch or pull request (a ref the mirror does not copy)
// is fetched by its ID, and that fetch prunes no branch of the copy.
func TestCheckoutOfACommitInNoBranch(t *testing.T) {
	f := gitmirrortest.NewForge(t)
	m := newTestMirror(t, f)
	f.Push("octo/hello", "a.txt", "one\n")
	sha := f.PushRef("octo/hello", "refs/keep/x", "a.txt", "kept\n")
	dir, err := m.checkout(t, m.tasks.add("octo/hello", sha))
	if err != nil {
		t.Fatalf("checkout of a commit in no branch: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a.txt")); got != "kept\n" {
		t.Errorf("a.txt = %q, want kept", got)
	}
	if n := f.Fetches.Load(); n != 2 {
		t.Errorf("forge fetches = %d, want 2 (the refs, then the commit)", n)
	}
	if err := git.Run(ctxT(t), m.path("octo/hello"), nil, nil, "rev-parse", "--verify", "-q", "refs/heads/main"); err != nil {
		t.Errorf("the mirror lost its main branch: %v", err)
	}
}

// A plan's changed paths are fetched through the mirror too.
func TestChangedPathsThroughMirror(t *testing.T) {
	f := gitmirrortest.NewForge(t)
	m := newTestMirror(t, f)
	base := f.Push("octo/hello", "a.txt", "one\n")
	head := f.Push("octo/hello", "b.txt", "new\n")
	task := m.tasks.add("octo/hello", head)
	dir, err := m.checkout(t, task)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := m.client().Remote(task)
	got, err := r.ChangedPaths(ctxT(t), dir, base, head, nil)
	if err != nil {
		t.Fatalf("ChangedPaths through the mirror: %v", err)
	}
	if len(got) != 1 || got[0] != "b.txt" {
		t.Errorf("ChangedPaths = %q, want [b.txt]", got)
	}
}

// Many bots asking at once for a repository the mirror lacks cause one
// fetch from the forge.
func TestOneFetchAtATime(t *testing.T) {
	f := gitmirrortest.NewForge(t)
	m := newTestMirror(t, f)
	task := m.tasks.add("octo/hello", f.Push("octo/hello", "a.txt", "one\n"))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, err := m.checkout(t, task)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent checkout: %v", err)
		}
	}
	if n := f.Fetches.Load(); n != 1 {
		t.Errorf("forge fetches for 4 concurrent checkouts = %d, want 1", n)
	}
}

// The forge's refusal, a hanging forge and a repository past the size
// bound are clear errors, within the bounds.
func TestFetchFailures(t *testing.T) {
	t.Run("no credentials", func(t *testing.T) {
		f := gitmirrortest.NewForge(t)
		m := newTestMirror(t, f, func(c *Config) { c.Auth = nil })
		task := m.tasks.add("octo/hello", f.Push("octo/hello", "a.txt", "one\n"))
		err := m.sync(ctxT(t), task.Repo.Name, task.SHA)
		if err == nil || !strings.Contains(err.Error(), "fetch octo/hello") {
			t.Errorf("sync without credentials = %v, want a fetch error", err)
		}
		if _, err := m.checkout(t, task); err == nil {
			t.Error("checkout succeeded though the mirror cannot fetch")
		}
	})
	t.Run("hanging forge", func(t *testing.T) {
		f := gitmirrortest.NewForge(t)
		m := newTestMirror(t, f, func(c *Config) { c.FetchTimeout = time.Second })
		task := m.tasks.add("octo/hello", f.Push("octo/hello", "a.txt", "one\n"))
		f.Hang.Store(true)
		start := time.Now()
		err := m.sync(ctxT(t), task.Repo.Name, task.SHA)
		if err == nil || !strings.Contains(err.Error(), "no answer within 1s") {
			t.Errorf("sync from a hanging forge = %v, want no answer within 1s", err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("sync took %s with a 1s fetch timeout", d)
		}
	})
	t.Run("forge down, copy has the commit", func(t *testing.T) {
		f := gitmirrortest.NewForge(t)
		m := newTestMirror(t, f, func(c *Config) { c.FetchTimeout = time.Second })
		task := m.tasks.add("octo/hello", f.Push("octo/hello", "a.txt", "one\n"))
		if err := m.sync(ctxT(t), task.Repo.Name, task.SHA); err != nil {
			t.Fatal(err)
		}
		f.Hang.Store(true)
		m.clock.Advance(time.Minute)
		// Stale: one try, which fails; the copy is served.
		if err := m.sync(ctxT(t), task.Repo.Name, task.SHA); err != nil {
			t.Errorf("sync of a stale copy that has the commit, forge down = %v, want the copy served", err)
		}
		n := f.Requests.Load()
		// Within the interval of that try, the forge is not asked again.
		if err := m.sync(ctxT(t), task.Repo.Name, task.SHA); err != nil {
			t.Errorf("second sync = %v", err)
		}
		if got := f.Requests.Load(); got != n {
			t.Errorf("the forge was asked %d more times within the interval of a failed try", got-n)
		}
	})
	t.Run("too big", func(t *testing.T) {
		f := gitmirrortest.NewForge(t)
		m := newTestMirror(t, f, func(c *Config) { c.MaxSize = 16 << 10 })
		big := make([]byte, 1<<20)
		for i := range big {
			big[i] = byte(i*7919 ^ i>>8*31)
		}
		task := m.tasks.add("octo/hello", f.Push("octo/hello", "big.bin", string(big)))
		err := m.sync(ctxT(t), task.Repo.Name, task.SHA)
		if !errors.Is(err, errTooBig) {
			t.Fatalf("sync of a repository past MaxSize = %v, want errTooBig", err)
		}
		if _, err := os.Stat(m.path("octo/hello")); !os.IsNotExist(err) {
			t.Errorf("the mirror past its bound was kept: %v", err)
		}
		if code := m.get(t, "/octo/hello.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken); code != http.StatusInsufficientStorage {
			t.Errorf("info/refs of a repository past MaxSize = %d, want 507", code)
		}
	})
	t.Run("commit the forge lacks", func(t *testing.T) {
		f := gitmirrortest.NewForge(t)
		m := newTestMirror(t, f)
		f.Push("octo/hello", "a.txt", "one\n")
		task := m.tasks.add("octo/hello", strings.Repeat("ab", 20))
		err := m.sync(ctxT(t), task.Repo.Name, task.SHA)
		if err == nil {
			t.Fatal("sync of a commit the forge lacks succeeded")
		}
	})
}

// get requests path of the mirror with a task header and a token, and
// returns the status code.
func (m *testMirror) get(t *testing.T, path, task, token string) int {
	t.Helper()
	return m.do(t, http.MethodGet, path, task, token)
}

func (m *testMirror) do(t *testing.T, method, path, task, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, m.srv.URL+path, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if task != "" {
		req.Header.Set(TaskHeader, task)
	}
	resp, err := m.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHealthz(t *testing.T) {
	m := newTestMirror(t, gitmirrortest.NewForge(t))
	if code := m.get(t, "/healthz", "", ""); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := Config{Dir: t.TempDir(), Token: mirrorToken, Tasks: &liveTasks{}, Upstream: func(string) string { return "" },
		Interval: time.Second, FetchTimeout: time.Second, MaxSize: 1, MaxRequest: 1}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no dir", func(c *Config) { c.Dir = "" }},
		{"short token", func(c *Config) { c.Token = "short" }},
		{"no tasks", func(c *Config) { c.Tasks = nil }},
		{"no upstream", func(c *Config) { c.Upstream = nil }},
		{"no fetch timeout", func(c *Config) { c.FetchTimeout = 0 }},
		{"no max size", func(c *Config) { c.MaxSize = 0 }},
	} {
		c := good
		tc.edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	if _, err := New(good); err != nil {
		t.Errorf("New(good) = %v", err)
	}
}

// The bot's side refuses what it cannot send safely.
func TestClient(t *testing.T) {
	task := (&liveTasks{}).add("octo/hello", strings.Repeat("a", 40))
	for _, tc := range []struct {
		name string
		c    Client
		ok   bool
	}{
		{"good", Client{URL: "http://git-mirror:8080", Token: mirrorToken}, true},
		{"path", Client{URL: "https://mirror.example/git/", Token: mirrorToken}, true},
		{"credentials in URL", Client{URL: "http://u:p@git-mirror:8080", Token: mirrorToken}, false},
		{"file URL", Client{URL: "file:///srv/git", Token: mirrorToken}, false},
		{"short token", Client{URL: "http://git-mirror:8080", Token: "x"}, false},
		{"token with newline", Client{URL: "http://git-mirror:8080", Token: mirrorToken + "\nX-Evil: 1"}, false},
	} {
		if err := tc.c.Check(); (err == nil) != tc.ok {
			t.Errorf("%s: Check() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	r, err := Client{URL: "https://mirror.example/git/", Token: mirrorToken}.Remote(task)
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://mirror.example/git/octo/hello.git"; r.URL != want {
		t.Errorf("Remote URL = %q, want %q", r.URL, want)
	}
	if _, err := r.Env(); err != nil {
		t.Errorf("Remote headers: %v", err)
	}
	task.Repo.Name = "octo/../../etc"
	if _, err := (Client{URL: "http://m", Token: mirrorToken}).Remote(task); err == nil {
		t.Error("Remote of a bad name succeeded")
	}
}
