package scan

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/gate"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/queuetest"
	"github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/state"
	ssqlite "github.com/turtles-ci/turtles/state/sqlite"
)

const (
	mainSHA     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	memberSHA   = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	strangerSHA = "cccccccccccccccccccccccccccccccccccccccc"
	approvedSHA = "dddddddddddddddddddddddddddddddddddddddd"
	brokenSHA   = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
)

const matrix = `contexts:
  - name: unit
    command: make check
  - name: vm
    command: make vm
  - name: deploy
    command: make deploy
    pool: internal
  - name: nightly
    command: make slow
    auto: false
  - name: stable-only
    command: make stable
    branches:
      pull_request: [stable]
      push: [stable]
`

type fixture struct {
	srv    *githubtest.Server
	client *github.Client
	dir    string
}

func newFixture(t *testing.T) *fixture {
	srv := githubtest.NewServer(t, "tok")
	c, err := github.New(github.Config{BaseURL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetBranch("o/r", "main", mainSHA)
	srv.SetPulls("o/r",
		githubtest.PullRequest{Number: 1, HeadSHA: memberSHA, BaseRef: "main", Author: "member"},
		githubtest.PullRequest{Number: 2, HeadSHA: strangerSHA, BaseRef: "main", Author: "stranger"},
		githubtest.PullRequest{Number: 3, HeadSHA: approvedSHA, BaseRef: "main", Author: "stranger"},
		githubtest.PullRequest{Number: 4, HeadSHA: brokenSHA, BaseRef: "main", Author: "member"},
	)
	for _, sha := range []string{mainSHA, memberSHA, strangerSHA, approvedSHA} {
		srv.SetFile("o/r", sha, ".turtles.yaml", []byte(matrix))
	}
	srv.SetFile("o/r", brokenSHA, ".turtles.yaml", []byte("contexts: {"))
	srv.SetPermission("o/r", "member", "write")
	ctx := context.Background()
	// Work done before the webhooks were lost: main's unit test passed,
	// and a maintainer approved pull request 3.
	c.SetStatus(ctx, "o/r", mainSHA, forge.Status{Context: "unit", State: forge.Success})
	c.SetStatus(ctx, "o/r", approvedSHA, forge.Status{Context: turtles.PlanContext, State: forge.Success, Description: "Approved by @member for this commit"})
	return &fixture{srv: srv, client: c, dir: t.TempDir()}
}

// scanner returns a scanner on a queue file of its own: a fresh file is a
// queue that lost every task.
func (f *fixture) scanner(t *testing.T, queueFile string) (*Scanner, *sqlite.DB) {
	db, err := sqlite.Open(filepath.Join(f.dir, queueFile), queuetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// Liveness is the state database's, as cmd/turtles wires it: a task
	// key is reserved there until the task's final event.
	st, err := ssqlite.Open(t.Context(), filepath.Join(f.dir, queueFile+".state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q := queue.Dedupe(db, state.Reserver{DB: st}, 5*time.Second)
	g, err := gate.New(gate.Config{Lookup: f.client, Forge: f.client, Queue: q, Events: db})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Lookup: f.client, Gate: g, Queue: q, Events: db, Policy: config.Policy{HostPools: []string{turtles.DefaultPool}},
		Repos: []Repo{{Name: "o/r", CloneURL: "https://example/o/r.git", Branches: []string{"main", "gone"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

// drain claims every task of pool and returns their keys, sorted.
func drain(t *testing.T, db *sqlite.DB, pool string) []string {
	var keys []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		d, err := db.Claim(ctx, pool)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			sort.Strings(keys)
			return keys
		}
		if err != nil {
			t.Fatal(err)
		}
		tk := d.Task()
		if !tk.Trusted && (tk.PR == 0 || tk.Pool == "internal") {
			t.Errorf("task %s untrusted on a branch or in the internal pool", tk.Key())
		}
		keys = append(keys, tk.Key())
	}
}

// TestScanRestoresLostWork: with every webhook and every queued task
// lost, one scan queues exactly the missing work; a second finds it live;
// an unchanged repository is asked with conditional requests.
func TestScanRestoresLostWork(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, db := f.scanner(t, "q1.db")
	st, err := s.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Commits: 5, Queued: 8, Waiting: 1}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("first scan (-want +got):\n%s", diff)
	}
	if got, _ := f.srv.Final("o/r", strangerSHA, turtles.PlanContext); got.Description != gate.Waiting(strangerSHA) {
		t.Errorf("stranger's pull request: plan status %+v, want waiting", got)
	}

	// Nothing changed: everything is queued, nothing twice.
	before := len(f.srv.Requests())
	st, err = s.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Stats{Commits: 5, Live: 8, Waiting: 1}, st); diff != "" {
		t.Errorf("second scan (-want +got):\n%s", diff)
	}
	notModified, total := 0, 0
	for _, r := range f.srv.Requests()[before:] {
		total++
		if r.Code == http.StatusNotModified {
			notModified++
		}
	}
	// Only membership-style answers (204/404) carry no ETag.
	if notModified < total-2 {
		t.Errorf("second scan: %d of %d requests were 304, want nearly all", notModified, total)
	}

	wantKeys := []string{
		"o/r@" + approvedSHA + ":unit", "o/r@" + approvedSHA + ":vm",
		"o/r@" + mainSHA + ":deploy", "o/r@" + mainSHA + ":vm",
		"o/r@" + memberSHA + ":unit", "o/r@" + memberSHA + ":vm",
		"o/r@" + brokenSHA + ":turtles",
	}
	sort.Strings(wantKeys)
	got := append(drain(t, db, "public"), drain(t, db, "internal")...)
	sort.Strings(got)
	wantAll := append([]string{"o/r@" + memberSHA + ":deploy"}, wantKeys...)
	sort.Strings(wantAll)
	if diff := cmp.Diff(wantAll, got); diff != "" {
		t.Errorf("queued tasks (-want +got):\n%s", diff)
	}

	// The queue is lost as well, and the state database with it: a fresh
	// pair gets the same work again. (With the database kept, its
	// reservations keep the keys live until their janitor frees them.)
	s2, db2 := f.scanner(t, "q2.db")
	if st, err := s2.Scan(ctx); err != nil || st.Queued != 8 {
		t.Errorf("scan into an empty queue: %+v, %v; want 8 queued", st, err)
	}
	got = append(drain(t, db2, "public"), drain(t, db2, "internal")...)
	sort.Strings(got)
	if diff := cmp.Diff(wantAll, got); diff != "" {
		t.Errorf("restored tasks (-want +got):\n%s", diff)
	}
}

func TestScanStopsAtRateLimit(t *testing.T) {
	f := newFixture(t)
	s, _ := f.scanner(t, "q.db")
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	f.srv.FailNextGetWith(1, githubtest.RateLimited(reset))
	_, err := s.Scan(context.Background())
	if at := retryAt(err); !at.Equal(reset) {
		t.Errorf("Scan under a rate limit: %v, want one to retry at %v", err, reset)
	}
}

// TestScanPathFilters: the scanner cannot see which paths a commit
// changed, so a lost commit whose contexts have path filters gets its plan
// task (which can), with the base to compare with; a commit the plan
// already reported on gets its missing contexts directly.
func TestScanPathFilters(t *testing.T) {
	const (
		baseSHA = "1111111111111111111111111111111111111111"
		lostSHA = "2222222222222222222222222222222222222222"
		seenSHA = "3333333333333333333333333333333333333333"
	)
	srv := githubtest.NewServer(t, "tok")
	c, err := github.New(github.Config{BaseURL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetPulls("o/r",
		githubtest.PullRequest{Number: 1, HeadSHA: lostSHA, BaseRef: "main", BaseSHA: baseSHA, Author: "member"},
		githubtest.PullRequest{Number: 2, HeadSHA: seenSHA, BaseRef: "main", BaseSHA: baseSHA, Author: "member"},
	)
	filtered := "contexts:\n  - name: unit\n    command: make check\n  - name: docs\n    command: make docs\n    run_if_changed: [\"docs/**\"]\n"
	for _, sha := range []string{lostSHA, seenSHA} {
		srv.SetFile("o/r", sha, ".turtles.yaml", []byte(filtered))
	}
	srv.SetPermission("o/r", "member", "write")
	ctx := context.Background()
	c.SetStatus(ctx, "o/r", seenSHA, forge.Status{Context: "unit", State: forge.Success})
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "q.db"), queuetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g, err := gate.New(gate.Config{Lookup: c, Forge: c, Queue: db, Events: db})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Lookup: c, Gate: g, Queue: db, Events: db, Repos: []Repo{{Name: "o/r", CloneURL: "https://example/o/r.git"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		d, err := db.Claim(cctx, turtles.DefaultPool)
		cancel()
		if err != nil {
			break
		}
		tk := d.Task()
		got = append(got, tk.Key())
		if tk.Kind == turtles.KindPlan && (tk.Base != "main" || tk.BaseSHA != baseSHA) {
			t.Errorf("plan task of the lost commit: base %q %q, want main %s", tk.Base, tk.BaseSHA, baseSHA)
		}
	}
	sort.Strings(got)
	want := []string{"o/r@" + lostSHA + ":turtles", "o/r@" + seenSHA + ":docs"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
}
