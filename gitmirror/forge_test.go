package gitmirror

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/gitmirror/gitmirrortest"
)

// liveTasks is the fake state database: the keys of live tasks.
type liveTasks struct {
	mu   sync.Mutex
	keys map[string]bool
	err  error
}

func (l *liveTasks) Live(_ context.Context, key string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[key], l.err
}

// add makes a live task of name at sha and returns it.
func (l *liveTasks) add(name, sha string) turtles.Task {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: name, CloneURL: "https://forge.invalid/" + name + ".git"},
		SHA: sha, Context: "test", Pool: turtles.DefaultPool, Attempt: 1}
	if l.keys == nil {
		l.keys = map[string]bool{}
	}
	l.keys[t.Key()] = true
	return t
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const mirrorToken = "mirror-secret-abcdef0123456789"

// testMirror is a Server in front of a fake forge.
type testMirror struct {
	*Server
	srv   *httptest.Server
	forge *gitmirrortest.Forge
	tasks *liveTasks
	clock *fakeClock
}

func newTestMirror(t *testing.T, f *gitmirrortest.Forge, edit ...func(*Config)) *testMirror {
	t.Helper()
	m := &testMirror{forge: f, tasks: &liveTasks{}, clock: &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	cfg := Config{
		Dir: t.TempDir(), Token: mirrorToken, Tasks: m.tasks, Upstream: f.Upstream, Auth: f.Auth,
		Interval: 10 * time.Second, FetchTimeout: time.Minute, MaxSize: 64 << 20, MaxRequest: 1 << 20, Now: m.clock.Now,
	}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Server = s
	m.srv = httptest.NewServer(s)
	t.Cleanup(m.srv.Close)
	return m
}

func (m *testMirror) client() Client { return Client{URL: m.srv.URL, Token: mirrorToken} }
