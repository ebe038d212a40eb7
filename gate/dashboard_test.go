package gate

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/queue"
)

func commit(sha string, pr int) Commit {
	return Commit{Repo: turtles.Repo{Name: repo, CloneURL: "https://example/o/r.git"}, SHA: sha, PR: pr, Ref: "refs/pull/7/head", Pool: "public"}
}

// TestDashboardRerun: a context of a commit is queued again as the
// attempt asked, from the commit's configuration, with the trust the
// gate gives it; what the gate would not run is refused, saying why.
func TestDashboardRerun(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(f *fixture)
		c       Commit
		context string
		want    []string // queued
		refusal string
	}{
		{name: "push is trusted", c: commit(head1, 0), context: "unit", want: []string{"unit@1111 3 trusted"}},
		{name: "the plan", c: commit(head1, 0), context: turtles.PlanContext, want: []string{"turtles@1111 3 trusted"}},
		{name: "trusted author's pull request", c: commit(head1, 7), context: "integration",
			setup: func(f *fixture) {
				f.srv.SetPulls(repo, githubtest.PullRequest{Number: 7, HeadSHA: head1, BaseRef: "main", Author: "collab"})
			},
			want: []string{"integration@1111 3 trusted"}},
		{name: "untrusted author, approved commit", c: commit(head1, 7), context: "unit",
			setup: func(f *fixture) { f.handle(f.t, comment("member", "NONE", okToTest(head1))) },
			want:  []string{"turtles@1111 1", "unit@1111 3"}},
		{name: "untrusted author, commit not approved", c: commit(head1, 7), context: "unit",
			refusal: "commit 111111111111 of pull request #7 by @stranger is not approved: approve it first"},
		{name: "no such context", c: commit(head1, 0), context: "lint",
			refusal: `the commit's .turtles.yaml has no context "lint"`},
		{name: "no configuration", c: commit(head2, 0), context: "unit", refusal: "the commit has no .turtles.yaml"},
		{name: "policy refuses untrusted work in the internal pool", c: commit(head1, 7), context: "deploy",
			setup: func(f *fixture) { f.handle(f.t, comment("member", "NONE", okToTest(head1))) },
			want:  []string{"turtles@1111 1"}, refusal: "context deploy does not run here: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			got, err := f.gate.Rerun(ctx, tt.c, tt.context, 3)
			var r *Refusal
			switch {
			case tt.refusal != "":
				if !errors.As(err, &r) || len(r.Reason) < len(tt.refusal) || r.Reason[:len(tt.refusal)] != tt.refusal {
					t.Errorf("Rerun = %v, want the refusal %q", err, tt.refusal)
				}
			case err != nil:
				t.Fatalf("Rerun: %v", err)
			case got.Context != tt.context || got.Attempt != 3 || got.SHA != tt.c.SHA:
				t.Errorf("Rerun queued %s attempt %d, want %s@%s attempt 3", got.Key(), got.Attempt, tt.context, tt.c.SHA)
			}
			if diff := cmp.Diff(tt.want, f.sink.queued()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDashboardRerunLive: a task queued or running already is not queued
// twice, and the caller is told.
func TestDashboardRerunLive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.gate.Rerun(ctx, commit(head1, 0), "unit", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.gate.Rerun(ctx, commit(head1, 0), "unit", 2); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("second Rerun = %v, want ErrDuplicate", err)
	}
	if diff := cmp.Diff([]string{"unit@1111 2 trusted"}, f.sink.queued()); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	if len(f.sink.events) != 1 || f.sink.events[0].Type != turtles.EventQueued {
		t.Errorf("events %+v, want one queued event", f.sink.events)
	}
}

// TestDashboardApprove: the head of an untrusted author's pull request is
// approved as by /ok-to-test; anything else is refused, saying why.
func TestDashboardApprove(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.handle(t, pull("stranger", "CONTRIBUTOR", head1))
	for _, tt := range []struct {
		name    string
		c       Commit
		refusal string
	}{
		{"a push", commit(head1, 0), "a pushed commit needs no approval"},
		{"not the head", commit(head2, 7), "commit 222222222222 is no longer the head of pull request #7 (now 111111111111): approve the head"},
	} {
		if _, err := f.gate.Approve(ctx, tt.c, "collab"); err == nil || !errors.As(err, new(*Refusal)) || err.Error()[:len(tt.refusal)] != tt.refusal {
			t.Errorf("%s: Approve = %v, want the refusal %q", tt.name, err, tt.refusal)
		}
	}
	if got := f.sink.queued(); len(got) != 0 {
		t.Fatalf("refused approvals queued %v", got)
	}

	plan, err := f.gate.Approve(ctx, commit(head1, 7), "collab")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Context != turtles.PlanContext || plan.Trusted || plan.Ref != "refs/pull/7/head" {
		t.Errorf("approved plan %+v, want the untrusted plan of the head", plan)
	}
	if diff := cmp.Diff([]string{"turtles@1111 1"}, f.sink.queued()); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	if got := f.final(t, head1, turtles.PlanContext); got != "success: Approved by @collab for this commit" {
		t.Errorf("plan status %q after approval", got)
	}
	if _, err := f.gate.Approve(ctx, commit(head1, 7), "collab"); !errors.As(err, new(*Refusal)) {
		t.Errorf("second Approve = %v, want a refusal", err)
	}

	f.srv.SetPulls(repo, githubtest.PullRequest{Number: 7, HeadSHA: head1, BaseRef: "main", Author: "member"})
	if _, err := f.gate.Approve(ctx, commit(head1, 7), "collab"); err == nil || err.Error() != "@member is trusted: their commits need no approval" {
		t.Errorf("Approve of a trusted author's commit = %v", err)
	}
}
