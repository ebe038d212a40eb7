package login_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/session"
)

// claimOne claims the one task the queue should hold and returns it.
func (w *world) claimOne() turtles.Task {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := w.raw.Claim(ctx, "public")
	if err != nil {
		w.t.Fatalf("claim: %v", err)
	}
	t := d.Task()
	if _, err := d.AckWithTasks(ctx, nil, nil); err != nil {
		w.t.Fatal(err)
	}
	return t
}

// TestRerunByWriter: a person who may push reruns a finished context:
// its task is queued again as the next attempt, from the commit's
// configuration, the browser goes back to the page it came from, and the
// action is recorded.
func TestRerunByWriter(t *testing.T) {
	w := newWorld(t, options{})
	unit := task(sha1, "unit", 0)
	w.record(unit, turtles.Failure)
	b := w.browser()
	b.signIn("alice", "/")
	code, loc, body := b.post("/actions/rerun", url.Values{"task": {unit.ID()}, "csrf": {csrfOf(b)}},
		"Referer", w.srv.URL+"/tasks/"+unit.ID()+"/1")
	if code != http.StatusSeeOther || loc != "/tasks/"+unit.ID()+"/1" {
		t.Fatalf("rerun: %d to %q (%s), want 303 back to the page", code, loc, body)
	}
	got := w.claimOne()
	if got.Key() != unit.Key() || got.Attempt != 2 || got.Command != "make check" || !got.Trusted || got.Repo.CloneURL != "file:///repos/octo/hello.git" {
		t.Errorf("queued %+v, want %s attempt 2 from the configuration", got, unit.Key())
	}
	if diff := cmp.Diff([]string{"github:alice rerun: queued as attempt 2"}, w.actions(unit.ID())); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
}

func csrfOf(b *browser) string {
	_, csrf := b.who()
	return csrf
}

// TestAttackRerunByReader: a person who may read but not push is refused,
// and nothing is queued or recorded; so is one who may not even read.
func TestAttackRerunByReader(t *testing.T) {
	w := newWorld(t, options{})
	unit := task(sha1, "unit", 0)
	w.record(unit, turtles.Failure)
	for _, who := range []string{"bob", "carol"} {
		b := w.browser()
		b.signIn(who, "/")
		for _, kind := range []string{"rerun", "cancel", "approve", "requeue"} {
			code, _, body := b.act(kind, unit.ID())
			if code != http.StatusForbidden || !strings.Contains(body, "may not push to "+repo) {
				t.Errorf("%s by %s: %d %s, want 403 saying they may not push", kind, who, code, body)
			}
		}
	}
	if q := w.queued(); len(q) != 0 {
		t.Errorf("queue after refused actions: %v, want empty", q)
	}
	if a := w.actions(unit.ID()); len(a) != 0 {
		t.Errorf("refused actions recorded: %v", a)
	}
}

// TestAttackCSRF: an action with a session but without this session's
// token, or from another origin, is refused and changes nothing; so is
// one without a session, an expired one or a tampered one.
func TestAttackCSRF(t *testing.T) {
	w := newWorld(t, options{})
	unit := task(sha1, "unit", 0)
	w.record(unit, turtles.Failure)
	alice, bob := w.browser(), w.browser()
	alice.signIn("alice", "/")
	bob.signIn("bob", "/")
	own := csrfOf(alice)
	otherKeys, _ := session.NewKeys([]byte("another server's key, 32 bytes or more"))
	form := func(csrf string) url.Values { return url.Values{"task": {unit.ID()}, "csrf": {csrf}} }
	for _, tt := range []struct {
		name   string
		b      *browser
		form   url.Values
		header []string
	}{
		{"no token", alice, url.Values{"task": {unit.ID()}}, nil},
		{"an empty token", alice, form(""), nil},
		{"a made-up token", alice, form("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), nil},
		{"another session's token", alice, form(csrfOf(bob)), nil},
		{"another server's token", alice, form(otherKeys.CSRF(session.Session{ID: "x"})), nil},
		{"from another origin", alice, form(own), []string{"Origin", "https://evil.example"}},
		{"from another origin by Referer", alice, form(own), []string{"Origin", "", "Referer", "https://evil.example/page"}},
		{"from a cross-site fetch", alice, form(own), []string{"Sec-Fetch-Site", "cross-site"}},
		{"from a sandboxed frame", alice, form(own), []string{"Origin", "null"}},
		{"without a session", w.browser(), form(own), nil},
	} {
		code, _, _ := tt.b.post("/actions/rerun", tt.form, tt.header...)
		if code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tt.name, code)
		}
	}
	code, _, _ := alice.post("/actions/rerun?csrf="+url.QueryEscape(own), url.Values{"task": {unit.ID()}})
	if code != http.StatusForbidden {
		t.Errorf("token in the query: %d, want 403", code)
	}

	// Expired and tampered sessions, with their own tokens.
	w.clock.Advance(12 * time.Hour)
	if code, _, _ := alice.post("/actions/rerun", form(own)); code != http.StatusForbidden {
		t.Errorf("expired session: %d, want 403", code)
	}
	w.clock.Advance(-12 * time.Hour)
	good := alice.cookie()
	alice.setCookie(good[:10] + "x" + good[11:])
	if code, _, _ := alice.post("/actions/rerun", form(own)); code != http.StatusForbidden {
		t.Errorf("tampered session: %d, want 403", code)
	}

	if q := w.queued(); len(q) != 0 {
		t.Errorf("queue after refused actions: %v, want empty", q)
	}
	if a := w.actions(unit.ID()); len(a) != 0 {
		t.Errorf("refused actions recorded: %v", a)
	}
	// The barrier: the same action, done right, goes through.
	alice.setCookie(good)
	if code, _, body := alice.act("rerun", unit.ID()); code != http.StatusSeeOther {
		t.Fatalf("the real rerun: %d %s", code, body)
	}
	if diff := cmp.Diff([]string{"github:alice rerun: queued as attempt 2"}, w.actions(unit.ID())); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
}

// TestActionsOnLiveAndEndedTasks: cancel stops a running task and only
// it; an action that does not fit the task's state says why (409) and is
// recorded as refused.
func TestActionsOnLiveAndEndedTasks(t *testing.T) {
	w := newWorld(t, options{})
	ctx := context.Background()
	running, other := task(sha1, "unit", 0), task(sha1, "lint", 0)
	for _, x := range []turtles.Task{running, other} {
		if err := w.q.Publish(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	w.record(running, "")
	finished := task(sha2, "unit", 0)
	w.record(finished, turtles.Success)
	b := w.browser()
	b.signIn("alice", "/")

	for _, tt := range []struct {
		kind, task string
		code       int
		says       string
	}{
		{"cancel", finished.ID(), http.StatusConflict, "the task has already finished (success)"},
		{"rerun", running.ID(), http.StatusConflict, "the task is running: cancel it or let it end"},
		{"requeue", finished.ID(), http.StatusConflict, "the task has no dead letter to requeue"},
		{"approve", finished.ID(), http.StatusConflict, "a pushed commit needs no approval"},
		{"rerun", "0000000000000000", http.StatusNotFound, "No such task"},
		{"delete", finished.ID(), http.StatusNotFound, "There is no action"},
	} {
		code, _, body := b.act(tt.kind, tt.task)
		if code != tt.code || !strings.Contains(body, tt.says) {
			t.Errorf("%s of %s: %d %s, want %d saying %q", tt.kind, tt.task, code, body, tt.code, tt.says)
		}
	}
	if code, _, body := b.act("cancel", running.ID()); code != http.StatusSeeOther {
		t.Fatalf("cancel of a running task: %d %s", code, body)
	}
	// Only the cancelled task left the queue, with its final event.
	if got := w.claimOne(); got.Key() != other.Key() {
		t.Errorf("left in the queue: %s, want %s", got.Key(), other.Key())
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ed, err := w.raw.Receive(ectx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := ed.Event(); ev.Task.Key() != running.Key() || ev.Outcome == nil || ev.Outcome.Class != turtles.Cancelled ||
		ev.Outcome.Reason != "cancelled by github:alice from the dashboard" {
		t.Errorf("event %+v, want the cancelled task's final event", ev)
	}
	if diff := cmp.Diff([]string{
		"github:alice rerun: refused: the task is running: cancel it or let it end before running it again",
		"github:alice cancel: cancelled",
	}, w.actions(running.ID())); diff != "" {
		t.Errorf("actions on the running task (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{
		"github:alice cancel: refused: the task has already finished (success)",
		"github:alice requeue: refused: the task has no dead letter to requeue",
		"github:alice approve: refused: a pushed commit needs no approval: only pull requests by untrusted authors wait for one",
	}, w.actions(finished.ID())); diff != "" {
		t.Errorf("actions on the finished task (-want +got):\n%s", diff)
	}
}

// TestApproveWaitingPullRequest: the head of a stranger's pull request
// has no task until it is approved; the form names its commit, and a
// person who may push approves it, as /ok-to-test would.
func TestApproveWaitingPullRequest(t *testing.T) {
	w := newWorld(t, options{})
	w.gh.SetPulls(repo, githubtest.PullRequest{Number: 7, HeadSHA: sha1, BaseRef: "main", Author: "stranger"})
	plan := turtles.Task{Repo: turtles.Repo{Name: repo}, SHA: sha1, Context: turtles.PlanContext}
	b := w.browser()
	b.signIn("alice", "/")
	// A form whose commit is not the task's is refused.
	if code, _, _ := b.act("approve", plan.ID(), "repo", repo, "sha", sha2, "pr", "7"); code != http.StatusNotFound {
		t.Errorf("approve with a commit not the task's: %d, want 404", code)
	}
	code, _, body := b.act("approve", plan.ID(), "repo", repo, "sha", sha1, "pr", "7")
	if code != http.StatusSeeOther {
		t.Fatalf("approve: %d %s", code, body)
	}
	got := w.claimOne()
	if got.Key() != plan.Key() || got.Trusted || got.PR != 7 {
		t.Errorf("queued %+v, want the untrusted plan of pull request 7", got)
	}
	if st, _ := w.gh.Final(repo, sha1, turtles.PlanContext); st.Description != "Approved by @alice for this commit" {
		t.Errorf("plan status %+v, want the approval", st)
	}
	if diff := cmp.Diff([]string{"github:alice approve: approved commit 111111111111; its plan is queued"}, w.actions(plan.ID())); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	// Approved, a context of it may be rerun by a writer later; a second
	// approval is refused.
	if code, _, body := b.act("approve", plan.ID(), "repo", repo, "sha", sha1, "pr", "7"); code != http.StatusConflict || !strings.Contains(body, "approved before") {
		t.Errorf("second approval: %d %s, want 409", code, body)
	}
}

// TestRequeueDeadLetter: a dead-lettered task is queued again once, as
// its next attempt, and its letter is removed; where the queue fails to
// remove it, the record of the requeue refuses a second one.
func TestRequeueDeadLetter(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "removed", true: "kept"}[keep], func(t *testing.T) { testRequeueDeadLetter(t, keep) })
	}
}

func testRequeueDeadLetter(t *testing.T, keep bool) {
	w := newWorld(t, options{keepDead: keep})
	ctx := context.Background()
	dead := task(sha1, "unit", 0)
	if err := w.q.Publish(ctx, dead); err != nil {
		t.Fatal(err)
	}
	d, err := w.raw.Claim(ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	if gone, err := d.Nack(ctx, 0, "the VM did not boot"); err != nil || !gone {
		t.Fatalf("Nack = %v, %v; want dead-lettered (MaxDeliveries 1)", gone, err)
	}
	// The recorder records its final event and frees its key.
	w.record(dead, turtles.Infra)
	dls, err := w.raw.DeadLetters(ctx)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if ok, err := w.state.Free(ctx, dead.Key(), dls[0].Task.Token); err != nil || !ok {
		t.Fatalf("free the dead task's key: %v, %v", ok, err)
	}
	// The queue stamps dead letters with the real time; the action's
	// record is after it.
	w.clock.Advance(dls[0].Time.Sub(w.clock.Now()) + time.Second)
	b := w.browser()
	b.signIn("alice", "/")
	if code, _, body := b.act("requeue", dead.ID()); code != http.StatusSeeOther {
		t.Fatalf("requeue: %d %s", code, body)
	}
	got := w.claimOne()
	if got.Key() != dead.Key() || got.Attempt != 2 || got.Command != dead.Command {
		t.Errorf("requeued %+v, want %s attempt 2 as it was", got, dead.Key())
	}
	// Dealt with, the letter is gone: from the Now page and the alert.
	// Where the queue could not remove it, the record of the requeue
	// still refuses a second one.
	want := "the task has no dead letter to requeue"
	if dls, err := w.raw.DeadLetters(ctx); keep {
		want = "github:alice requeued this dead letter already"
	} else if err != nil || len(dls) != 0 {
		t.Errorf("dead letters after the requeue: %+v, %v; want none", dls, err)
	}
	code, _, body := b.act("requeue", dead.ID())
	if code != http.StatusConflict || !strings.Contains(body, want) {
		t.Errorf("second requeue: %d %s, want 409 %q", code, body, want)
	}
	if q := w.queued(); q["ready"] != 0 {
		t.Errorf("queue after the second requeue: %v", q)
	}
}

// TestNoGate: a server without forge credentials cannot rerun; it says
// so, and records it.
func TestNoGate(t *testing.T) {
	w := newWorld(t, options{noGate: true})
	unit := task(sha1, "unit", 0)
	w.record(unit, turtles.Failure)
	b := w.browser()
	b.signIn("alice", "/")
	if code, _, body := b.act("rerun", unit.ID()); code != http.StatusServiceUnavailable || !strings.Contains(body, "no forge credentials") {
		t.Errorf("rerun without a gate: %d %s", code, body)
	}
	if q := w.queued(); len(q) != 0 {
		t.Errorf("queue: %v", q)
	}
}

// TestGitLab: the same with GitLab: a Developer signs in and reruns, a
// Reporter is refused, and with --private a private project is shown to
// its members only.
func TestGitLab(t *testing.T) {
	w := newWorld(t, options{gitlab: true, private: true})
	unit := task(sha1, "unit", 0)
	w.record(unit, turtles.Failure)
	dev, reporter, stranger := w.browser(), w.browser(), w.browser()
	dev.signIn("alice", "/")
	reporter.signIn("bob", "/")
	stranger.signIn("carol", "/")
	if user, _ := dev.who(); user != "gitlab:alice" {
		t.Fatalf("Who = %q, want gitlab:alice", user)
	}
	if code, _, body := reporter.act("rerun", unit.ID()); code != http.StatusForbidden {
		t.Errorf("a Reporter's rerun: %d %s, want 403", code, body)
	}
	if q := w.queued(); len(q) != 0 {
		t.Fatalf("queue after a refused rerun: %v", q)
	}
	if code, _, body := dev.act("rerun", unit.ID()); code != http.StatusSeeOther {
		t.Fatalf("a Developer's rerun: %d %s", code, body)
	}
	if got := w.claimOne(); got.Key() != unit.Key() || got.Attempt != 2 {
		t.Errorf("queued %s attempt %d, want %s attempt 2", got.Key(), got.Attempt, unit.Key())
	}
	w.gl.SetPrivate(repo)
	if !w.auth.CanRead(reporter.request("GET", "/", nil), repo) {
		t.Error("a member cannot read the private project")
	}
	if w.auth.CanRead(stranger.request("GET", "/", nil), repo) {
		t.Error("a stranger reads the private project")
	}
}
