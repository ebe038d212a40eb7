package bot

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/gitmirror"
	"github.com/turtles-ci/turtles/gitmirror/gitmirrortest"
	"github.com/turtles-ci/turtles/queue"
)

// liveRepo is a state database in which every task of one repository is
// live.
type liveRepo string

func (r liveRepo) Live(_ context.Context, key string) (bool, error) {
	return strings.HasPrefix(key, string(r)+"@"), nil
}

// A bot with --git-mirror fetches the commits of its tasks, and of its
// plans' changed paths, from the mirror: the task's clone URL (the forge)
// is not reachable, and need not be.
func TestCheckoutThroughGitMirror(t *testing.T) {
	forge := gitmirrortest.NewForge(t)
	base := forge.Push("owner/repo", ".turtles.yaml", "contexts:\n  - name: ok\n    command: cat a.txt\n")
	head := forge.Push("owner/repo", "a.txt", "hello through the mirror\n")
	const token = "mirror-token-0123456789abcdef"
	m, err := gitmirror.New(gitmirror.Config{
		Dir: t.TempDir(), Token: token, Tasks: liveRepo("owner/repo"), Upstream: forge.Upstream, Auth: forge.Auth,
		Interval: time.Minute, FetchTimeout: time.Minute, MaxSize: 64 << 20, MaxRequest: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	h := newHarness(t, nil, queue.Options{})
	h.cfg.GitMirror = &gitmirror.Client{URL: srv.URL, Token: token}
	plan := h.task(turtles.KindPlan, turtles.PlanContext, "")
	plan.Repo.CloneURL = "https://forge.invalid/owner/repo.git"
	plan.SHA, plan.BaseSHA = head, base
	h.publish(plan)
	h.start()
	evs := h.events(func(ev turtles.Event) bool { return ev.Task.Context == "ok" && ev.Type == turtles.EventFinished })
	got := summarize(evs)
	want := []string{"started turtles 1", "queued ok 1", "finished turtles 1 success", "started ok 1", "finished ok 1 success"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", got, want)
	}
	if log := h.log(plan); !strings.Contains(log, "1 paths changed since "+base) || !strings.Contains(log, srv.URL+"/owner/repo.git") {
		t.Errorf("plan log does not show a checkout and changed paths from the mirror:\n%s", log)
	}
	okTask := plan
	okTask.Kind, okTask.Context = turtles.KindTest, "ok"
	if log := h.log(okTask); !strings.Contains(log, "hello through the mirror") {
		t.Errorf("test log:\n%s", log)
	}
	if log := h.log(plan); strings.Contains(log, token) {
		t.Errorf("the plan's log shows the mirror's token:\n%s", log)
	}
	h.waitIdle()
}

// A repository name the mirror cannot serve is an infra fault at the
// bot, before any git runs.
func TestGitMirrorRefusesBadName(t *testing.T) {
	r := runner{mirror: &gitmirror.Client{URL: "http://mirror", Token: "mirror-token-0123456789abcdef"}}
	task := turtles.Task{Repo: turtles.Repo{Name: "-owner/repo"}}
	if _, err := r.remote(task); err == nil {
		t.Fatal("remote of a bad name succeeded")
	}
	h := newHarness(t, nil, queue.Options{})
	if _, err := New(h.cfg); err != nil {
		t.Fatalf("New: %v", err)
	}
	h.cfg.GitMirror = &gitmirror.Client{URL: "http://mirror", Token: "short"}
	if _, err := New(h.cfg); err == nil || !strings.Contains(err.Error(), "git mirror token") {
		t.Errorf("New with a short mirror token = %v, want an error about it", err)
	}
}
