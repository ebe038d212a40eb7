package gate

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/command"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/forge/gitlab"
	"github.com/turtles-ci/turtles/forge/gitlab/gitlabtest"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/queuetest"
	"github.com/turtles-ci/turtles/queue/sqlite"
)

const (
	head1 = "1111111111111111111111111111111111111111"
	head2 = "2222222222222222222222222222222222222222"
	repo  = "o/r"
)

const matrix = `contexts:
  - name: unit
    command: make check
  - name: integration
    command: make integration
  - name: deploy
    command: make deploy
    pool: internal
`

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// sink records what the gate queues and emits.
type sink struct {
	mu     sync.Mutex
	tasks  []turtles.Task
	events []turtles.Event
}

func (s *sink) Publish(ctx context.Context, t turtles.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.tasks {
		if x.Key() == t.Key() && x.Attempt == t.Attempt {
			return queue.ErrDuplicate
		}
	}
	s.tasks = append(s.tasks, t)
	return nil
}

func (s *sink) Emit(ctx context.Context, ev turtles.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
	return nil
}

// queued is the tasks as "context@sha-prefix attempt trusted".
func (s *sink) queued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, t := range s.tasks {
		x := t.Context + "@" + t.SHA[:4] + " " + string(rune('0'+t.Attempt))
		if t.Trusted {
			x += " trusted"
		}
		if len(t.Secrets) > 0 || t.Pool == "internal" {
			x += " LEAK"
		}
		out = append(out, x)
	}
	return out
}

type fixture struct {
	t    *testing.T
	srv  *githubtest.Server
	gate *Gate
	sink *sink
}

func newFixture(t *testing.T) *fixture {
	srv := githubtest.NewServer(t, "tok")
	c, err := github.New(github.Config{BaseURL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetPulls(repo, githubtest.PullRequest{Number: 7, HeadSHA: head1, BaseRef: "main", Author: "stranger"})
	srv.SetFile(repo, head1, ".turtles.yaml", []byte(matrix))
	srv.AddMember("friends", "member")
	srv.SetPermission(repo, "collab", "write")
	s := &sink{}
	g, err := New(Config{Lookup: c, Forge: c, Queue: s, Events: s, Orgs: []string{"friends"}, Allow: []string{"bot-user"},
		Policy: dedicated,
		Now:    func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, srv: srv, gate: g, sink: s}
}

func pull(user, assoc, sha string) Request {
	return Request{Repo: turtles.Repo{Name: repo, CloneURL: "https://example/o/r.git"}, PR: 7, SHA: sha, User: user, Association: assoc}
}

func comment(user, assoc string, cmds ...command.Command) Request {
	r := pull(user, assoc, "")
	r.Commands = cmds
	return r
}

func okToTest(sha string) command.Command { return command.Command{Name: command.OKToTest, SHA: sha} }

func (f *fixture) handle(t *testing.T, r Request) {
	t.Helper()
	if err := f.gate.Handle(context.Background(), r); err != nil {
		t.Fatalf("Handle(%+v): %v", r, err)
	}
}

func (f *fixture) final(t *testing.T, sha, context string) string {
	t.Helper()
	st, ok := f.srv.Final(repo, sha, context)
	if !ok {
		return ""
	}
	return st.State + ": " + st.Description
}

func TestPullRequestTrust(t *testing.T) {
	tests := []struct {
		name, user, assoc string
		want              []string
	}{
		{name: "allowlist", user: "bot-user", assoc: "NONE", want: []string{"turtles@1111 1 trusted"}},
		{name: "member of a configured org", user: "member", assoc: "CONTRIBUTOR", want: []string{"turtles@1111 1 trusted"}},
		{name: "collaborator with write access", user: "collab", assoc: "CONTRIBUTOR", want: []string{"turtles@1111 1 trusted"}},
		// The payload's association is a hint: without push access or a
		// configured org, MEMBER (any org member, read access too) waits.
		{name: "association alone does not vouch", user: "someone", assoc: "MEMBER", want: nil},
		{name: "stranger waits", user: "stranger", assoc: "FIRST_TIME_CONTRIBUTOR", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.handle(t, pull(tt.user, tt.assoc, head1))
			if diff := cmp.Diff(tt.want, f.sink.queued()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			wantStatus := ""
			if tt.want == nil {
				wantStatus = "pending: " + Waiting(head1)
			}
			if got := f.final(t, head1, turtles.PlanContext); got != wantStatus {
				t.Errorf("plan status %q, want %q", got, wantStatus)
			}
		})
	}
}

// TestApprovalPerCommit: a stranger's pull request waits; a forged
// /ok-to-test from a non-member changes nothing; a maintainer's, naming
// the commit, approves that commit only, so the next push waits again.
func TestApprovalPerCommit(t *testing.T) {
	f := newFixture(t)
	f.handle(t, pull("stranger", "CONTRIBUTOR", head1))
	f.handle(t, comment("stranger", "CONTRIBUTOR", okToTest(head1)))
	f.handle(t, comment("passerby", "NONE", okToTest(head1), command.Command{Name: command.Retest}))
	if got := f.sink.queued(); len(got) != 0 {
		t.Fatalf("untrusted commenters got work queued: %v", got)
	}
	if got := f.final(t, head1, turtles.PlanContext); got != "pending: "+Waiting(head1) {
		t.Fatalf("plan status %q after forged approvals", got)
	}

	f.handle(t, comment("member", "CONTRIBUTOR", okToTest(head1)))
	if diff := cmp.Diff([]string{"turtles@1111 1"}, f.sink.queued()); diff != "" {
		t.Errorf("after /ok-to-test (-want +got):\n%s", diff)
	}
	if got := f.final(t, head1, turtles.PlanContext); got != "success: Approved by @member for this commit" {
		t.Errorf("plan status %q after approval", got)
	}
	// The webhook comes again (or the scanner asks): still approved.
	f.sink.tasks = nil
	f.handle(t, pull("stranger", "CONTRIBUTOR", head1))
	if diff := cmp.Diff([]string{"turtles@1111 1"}, f.sink.queued()); diff != "" {
		t.Errorf("approved commit seen again (-want +got):\n%s", diff)
	}

	// A new push needs a new approval.
	f.sink.tasks = nil
	f.srv.SetPulls(repo, githubtest.PullRequest{Number: 7, HeadSHA: head2, BaseRef: "main", Author: "stranger"})
	f.handle(t, pull("stranger", "CONTRIBUTOR", head2))
	if got := f.sink.queued(); len(got) != 0 {
		t.Errorf("new push of an approved pull request queued %v", got)
	}
	if got := f.final(t, head2, turtles.PlanContext); got != "pending: "+Waiting(head2) {
		t.Errorf("new head's plan status %q", got)
	}
}

func TestRetestAndTest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	set := func(context string, state forge.State, url string) {
		if err := f.gate.cfg.Forge.SetStatus(ctx, repo, head1, forge.Status{Context: context, State: state, TargetURL: url}); err != nil {
			t.Fatal(err)
		}
	}
	set("unit", forge.Failure, "https://ci.example/tasks/abc/2")
	set("integration", forge.Success, "https://ci.example/tasks/def/1")
	set("deploy", forge.Error, "")
	f.handle(t, comment("member", "NONE", okToTest(head1)))
	f.sink.tasks = nil

	f.handle(t, comment("collab", "CONTRIBUTOR", command.Command{Name: command.Retest}))
	// deploy failed too, but runs in the internal pool: never for a
	// stranger's pull request, even on a maintainer's /retest.
	if diff := cmp.Diff([]string{"unit@1111 3"}, f.sink.queued()); diff != "" {
		t.Errorf("after /retest (-want +got):\n%s", diff)
	}
	f.handle(t, comment("collab", "CONTRIBUTOR", command.Command{Name: command.Test, Context: "integration"},
		command.Command{Name: command.Test, Context: "nonexistent"}))
	if diff := cmp.Diff([]string{"unit@1111 3", "integration@1111 2"}, f.sink.queued()); diff != "" {
		t.Errorf("after /test (-want +got):\n%s", diff)
	}
	var queuedEvents []string
	for _, ev := range f.sink.events {
		queuedEvents = append(queuedEvents, string(ev.Type)+" "+ev.Task.Context)
	}
	if diff := cmp.Diff([]string{"queued unit", "queued integration"}, queuedEvents); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	want := f.sink.tasks[0]
	if want.Command != "make check" || want.PR != 7 || want.Ref != "refs/pull/7/head" || want.Trusted {
		t.Errorf("retest task %+v", want)
	}
}

// TestRun feeds the gate through a real inbox: requests are acked once
// handled, and garbage is dropped rather than retried forever.
func TestRun(t *testing.T) {
	f := newFixture(t)
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "q.db"), queuetest.Options(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.gate.Run(ctx, db) }()
	db.Put(ctx, []byte("not json"))
	body, _ := json.Marshal(pull("member", "CONTRIBUTOR", head1))
	db.Put(ctx, body)
	deadline := time.Now().Add(10 * time.Second)
	for len(f.sink.queued()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"turtles@1111 1 trusted"}, f.sink.queued()); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	c, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	if m, err := db.Take(c); err == nil {
		t.Errorf("inbox still holds %q", m.Body())
	}
}

// TestAttackUnapprovedHead: a maintainer approved head1 of a stranger's
// pull request; the stranger pushed head2. Nothing a trusted commenter
// can write without naming head2 in full runs it, and what is refused
// leaves head2 waiting.
func TestAttackUnapprovedHead(t *testing.T) {
	tests := []struct {
		name string
		cmds []command.Command
		want []string
	}{
		{name: "/test on the unapproved head", cmds: []command.Command{{Name: command.Test, Context: "unit"}}},
		{name: "/retest on the unapproved head", cmds: []command.Command{{Name: command.Retest}}},
		{name: "bare /ok-to-test binds no commit", cmds: []command.Command{{Name: command.OKToTest}, {Name: command.Test, Context: "unit"}}},
		// The maintainer read head1 and approved it, but the stranger
		// pushed before the gate read the head.
		{name: "approval of the head the maintainer saw", cmds: []command.Command{okToTest(head1), {Name: command.Retest}}},
		{name: "abbreviated SHA (a collision costs 2^28 tries)", cmds: []command.Command{okToTest(head2[:7]), {Name: command.Test, Context: "unit"}}},
		{name: "approval naming the new head runs it, untrusted", cmds: []command.Command{okToTest(head2), {Name: command.Test, Context: "unit"}},
			want: []string{"turtles@2222 1", "unit@2222 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.handle(t, pull("stranger", "CONTRIBUTOR", head1))
			f.handle(t, comment("member", "NONE", okToTest(head1)))
			f.srv.SetPulls(repo, githubtest.PullRequest{Number: 7, HeadSHA: head2, BaseRef: "main", Author: "stranger"})
			f.srv.SetFile(repo, head2, ".turtles.yaml", []byte(matrix))
			f.handle(t, pull("stranger", "CONTRIBUTOR", head2))
			f.sink.tasks = nil

			f.handle(t, comment("member", "MEMBER", tt.cmds...))
			if diff := cmp.Diff(tt.want, f.sink.queued()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			want := "pending: " + Waiting(head2)
			if tt.want != nil {
				want = "success: Approved by @member for this commit"
			}
			if got := f.final(t, head2, turtles.PlanContext); got != want {
				t.Errorf("head2's plan status %q, want %q", got, want)
			}
			if got := f.final(t, head1, turtles.PlanContext); got != "success: Approved by @member for this commit" {
				t.Errorf("head1's approval changed: %q", got)
			}
		})
	}
}

// TestAttackAssociation: the signed payload's author_association is not
// proof of write access. Read-only org members and outside
// collaborators with read access say MEMBER or COLLABORATOR; a revoked
// permission must count at once.
func TestAttackAssociation(t *testing.T) {
	tests := []struct {
		name, user, assoc string
		perm              string // on repo; "" for none
		want              []string
	}{
		{name: "MEMBER with read access authors", user: "reader", assoc: "MEMBER", perm: "read"},
		{name: "COLLABORATOR with triage access authors", user: "triager", assoc: "COLLABORATOR", perm: "triage"},
		{name: "OWNER claimed by a stranger", user: "stranger", assoc: "OWNER"},
		{name: "COLLABORATOR with write access authors", user: "writer", assoc: "COLLABORATOR", perm: "write", want: []string{"turtles@1111 1 trusted"}},
		{name: "maintain access without a hint", user: "maint", assoc: "NONE", perm: "maintain", want: []string{"turtles@1111 1 trusted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+": pull request", func(t *testing.T) {
			f := newFixture(t)
			if tt.perm != "" {
				f.srv.SetPermission(repo, tt.user, tt.perm)
			}
			f.handle(t, pull(tt.user, tt.assoc, head1))
			if diff := cmp.Diff(tt.want, f.sink.queued()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
		})
		t.Run(tt.name+": /ok-to-test on a stranger's", func(t *testing.T) {
			f := newFixture(t)
			if tt.perm != "" {
				f.srv.SetPermission(repo, tt.user, tt.perm)
			}
			f.handle(t, comment(tt.user, tt.assoc, okToTest(head1), command.Command{Name: command.Test, Context: "unit"}))
			want := []string(nil)
			if tt.want != nil {
				want = []string{"turtles@1111 1", "unit@1111 1"}
			}
			if diff := cmp.Diff(want, f.sink.queued()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("revoked write access counts at once", func(t *testing.T) {
		f := newFixture(t)
		f.handle(t, comment("collab", "COLLABORATOR", okToTest(head1)))
		f.srv.SetPermission(repo, "collab", "read")
		// With the approval in place, a trusted commenter's /test would
		// queue unit.
		f.handle(t, comment("collab", "COLLABORATOR", command.Command{Name: command.Test, Context: "unit"}))
		if diff := cmp.Diff([]string{"turtles@1111 1"}, f.sink.queued()); diff != "" {
			t.Errorf("queued (-want +got):\n%s", diff)
		}
	})
}

// TestAttackGitLabAccess: on GitLab, trust is Developer access or more on
// the project or a configured group; Reporter does not push.
func TestAttackGitLabAccess(t *testing.T) {
	tests := []struct {
		name    string
		project int // access level on the project, 0 for none
		group   int // on the configured group
		want    bool
	}{
		{name: "reporter", project: gitlabtest.Reporter},
		{name: "guest of the group", group: gitlabtest.Guest},
		{name: "nobody"},
		{name: "developer", project: gitlabtest.Developer, want: true},
		{name: "maintainer of the group", group: gitlabtest.Maintainer, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitlabtest.NewServer(t, "tok")
			c, err := gitlab.New(gitlab.Config{BaseURL: srv.URL, Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			srv.AddUser("u")
			if tt.project != 0 {
				srv.SetProjectAccess("g/p", "u", tt.project)
			}
			if tt.group != 0 {
				srv.SetGroupAccess("friends", "u", tt.group)
			}
			s := &sink{}
			g, err := New(Config{Lookup: c, Forge: c, Queue: s, Events: s, Orgs: []string{"friends"}, Policy: dedicated})
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Trusted(context.Background(), "g/p", "u", "MEMBER")
			if err != nil || got != tt.want {
				t.Errorf("Trusted = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// dedicated lets the tests' image-less contexts run for strangers, as in
// a pool the operator dedicated to them; config's tests cover the rest.
var dedicated = config.Policy{HostPools: []string{turtles.DefaultPool}}

// TestHold: /hold reruns the failed contexts, /hold CONTEXT the one it
// names, keeping the VMs of those that fail again: hold: on-failure on
// tasks with an image, a context's own hold: kept, nothing on others.
func TestHold(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.srv.SetFile(repo, head1, ".turtles.yaml", []byte(`contexts:
  - name: vm
    image: debian-12
    command: make vm
  - name: secretvm
    image: debian-12
    hold: on-failure-with-secrets
    command: make secret
  - name: plain
    command: make check
  - name: passed
    image: debian-12
    command: make ok
`))
	for c, st := range map[string]forge.State{"vm": forge.Failure, "secretvm": forge.Error, "plain": forge.Failure, "passed": forge.Success} {
		if err := f.gate.cfg.Forge.SetStatus(ctx, repo, head1, forge.Status{Context: c, State: st, TargetURL: "https://ci.example/tasks/x/1"}); err != nil {
			t.Fatal(err)
		}
	}
	f.handle(t, comment("member", "NONE", okToTest(head1)))
	held := func() map[string]string {
		got := map[string]string{}
		for _, x := range f.sink.tasks {
			got[x.Context] = x.Hold
		}
		return got
	}
	f.sink.tasks = nil
	f.handle(t, comment("collab", "CONTRIBUTOR", command.Command{Name: command.Hold}))
	want := map[string]string{"vm": turtles.HoldOnFailure, "secretvm": turtles.HoldWithSecrets, "plain": ""}
	if diff := cmp.Diff(want, held()); diff != "" {
		t.Errorf("after /hold (-want +got):\n%s", diff)
	}
	f.sink.tasks = nil
	f.handle(t, comment("collab", "CONTRIBUTOR", command.Command{Name: command.Hold, Context: "passed"}))
	if diff := cmp.Diff(map[string]string{"passed": turtles.HoldOnFailure}, held()); diff != "" {
		t.Errorf("after /hold passed (-want +got):\n%s", diff)
	}
	f.sink.tasks = nil
	f.handle(t, comment("collab", "CONTRIBUTOR", command.Command{Name: command.Test, Context: "passed"}))
	if diff := cmp.Diff(map[string]string{"passed": ""}, held()); diff != "" {
		t.Errorf("after /test passed (-want +got):\n%s", diff)
	}
}
