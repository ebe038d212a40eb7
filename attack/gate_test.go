package attack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/gate"
)

const gateRepo = "octo/hello"

// waiting reports whether st, as the fake GitHub recorded it, is the
// gate's waiting status.
func waiting(st githubtest.Status) bool {
	return gate.IsWaiting(forge.Status{Context: st.Context, State: forge.State(st.State), Description: st.Description})
}

// gateWorld is a repository with a stranger's pull request 7 open at
// head1, a maintainer "maint" (member of the trusted org) and a server
// with the gate and no scanner.
type gateWorld struct {
	gh      *githubtest.Server
	s       *e2e.Server
	repoDir string
	head1   string
}

// gateMatrix has one context, whose status shows that it ran.
const gateMatrix = "contexts:\n  - name: ok\n    command: echo ran\n"

func newGateWorld(t *testing.T) *gateWorld {
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	w := &gateWorld{gh: gh, repoDir: filepath.Join(base, "octo", "hello.git")}
	os.MkdirAll(w.repoDir, 0o755)
	w.head1 = e2e.GitRepo(t, w.repoDir, map[string]string{".turtles.yaml": gateMatrix})
	gh.SetFile(gateRepo, w.head1, ".turtles.yaml", []byte(gateMatrix))
	gh.SetPulls(gateRepo, githubtest.PullRequest{Number: 7, HeadSHA: w.head1, BaseRef: "main", Author: "stranger"})
	gh.AddMember("octo", "maint")
	w.s = e2e.Serve(t, gh, t.TempDir(), "--trusted-orgs", "octo")
	return w
}

func (w *gateWorld) send(t *testing.T, event, delivery string, payload map[string]any) {
	t.Helper()
	payload["repository"] = map[string]any{"full_name": gateRepo, "clone_url": "file://" + w.repoDir}
	b, _ := json.Marshal(payload)
	if code, out := w.s.Webhook(event, delivery, b, e2e.Sign(b)); code/100 != 2 {
		t.Fatalf("%s %s: %d %s", event, delivery, code, out)
	}
}

func (w *gateWorld) pull(t *testing.T, delivery string, pr int, action, author, assoc, sha string) {
	t.Helper()
	w.send(t, "pull_request", delivery, map[string]any{"action": action, "number": pr,
		"pull_request": map[string]any{"number": pr, "author_association": assoc, "user": map[string]any{"login": author},
			"head": map[string]any{"sha": sha}, "base": map[string]any{"ref": "main"}}})
}

func (w *gateWorld) comment(t *testing.T, delivery, login, assoc, body string) {
	t.Helper()
	w.send(t, "issue_comment", delivery, map[string]any{"action": "created",
		"issue":   map[string]any{"number": 7, "pull_request": map[string]any{"url": "x"}},
		"comment": map[string]any{"body": body, "author_association": assoc, "user": map[string]any{"login": login}}})
}

func (w *gateWorld) waitPlanStatus(t *testing.T, sha, what string, ok func(githubtest.Status) bool) {
	t.Helper()
	e2e.WaitFor(t, 30*time.Second, what, func() bool {
		st, found := w.gh.Final(gateRepo, sha, "turtles")
		return found && ok(st)
	})
}

// barrier makes the gate handle one more request after everything sent
// before (it takes its inbox in order) and waits for its visible effect:
// a stranger's pull request 8 at a new commit gets its waiting status.
func (w *gateWorld) barrier(t *testing.T, name string) {
	t.Helper()
	sha := e2e.GitRepo(t, w.repoDir, map[string]string{"barrier-" + name: name})
	w.pull(t, "barrier-"+name, 8, "opened", "other-stranger", "NONE", sha)
	w.waitPlanStatus(t, sha, "the barrier's waiting status", waiting)
}

// TestAttackGateTestUnapprovedHead: a maintainer approved head1; the
// stranger pushed head2. Nothing but an approval naming head2 runs it.
func TestAttackGateTestUnapprovedHead(t *testing.T) {
	attack(t, "gate: /test, /retest or a stale /ok-to-test run a pushed, unapproved head")
	w := newGateWorld(t)
	w.pull(t, "pr-1", 7, "opened", "stranger", "CONTRIBUTOR", w.head1)
	w.waitPlanStatus(t, w.head1, "head1 waits", waiting)
	w.comment(t, "c-1", "maint", "CONTRIBUTOR", "/ok-to-test "+w.head1)
	// Ran, whatever its outcome (untrusted work may be refused a host-mode
	// bot): the approval worked.
	e2e.WaitFinal(t, w.gh, gateRepo, w.head1, 60*time.Second, "ok")

	head2 := e2e.GitRepo(t, w.repoDir, map[string]string{"evil.sh": "echo stranger's code"})
	w.gh.SetFile(gateRepo, head2, ".turtles.yaml", []byte(gateMatrix))
	w.gh.SetPulls(gateRepo, githubtest.PullRequest{Number: 7, HeadSHA: head2, BaseRef: "main", Author: "stranger"})
	w.pull(t, "pr-2", 7, "synchronize", "stranger", "CONTRIBUTOR", head2)
	w.waitPlanStatus(t, head2, "head2 waits", waiting)

	for i, body := range []string{
		"/test ok",
		"/retest",
		"/ok-to-test",              // names no commit
		"/ok-to-test " + w.head1,   // the head the maintainer saw
		"/ok-to-test " + head2[:7], // abbreviated: collisions are cheap
		"LGTM\n/ok-to-test " + head2[:12] + "\n/test ok",
	} {
		w.comment(t, fmt.Sprintf("c-attack-%d", i), "maint", "MEMBER", body)
	}
	w.barrier(t, "unapproved")
	if ts := w.s.Tasks(head2); len(ts) != 0 {
		t.Errorf("head2 ran %d tasks without an approval naming it", len(ts))
	}
	if st, _ := w.gh.Final(gateRepo, head2, "turtles"); !waiting(st) || !strings.Contains(st.Description, head2) {
		t.Errorf("head2's plan status %+v, want waiting, naming the commit to approve", st)
	}

	// The way that must work: the maintainer names head2.
	w.comment(t, "c-approve", "maint", "MEMBER", "/ok-to-test "+head2)
	e2e.WaitFinal(t, w.gh, gateRepo, head2, 60*time.Second, "ok")
}

// TestAttackGateAssociation: a commenter whose signed payload says MEMBER
// or OWNER, but who cannot push (read access), approves nothing.
func TestAttackGateAssociation(t *testing.T) {
	attack(t, "gate: a read-only MEMBER/OWNER by author_association approves or tests a stranger's head")
	w := newGateWorld(t)
	w.gh.SetPermission(gateRepo, "reader", "read")
	w.pull(t, "pr-1", 7, "opened", "stranger", "CONTRIBUTOR", w.head1)
	w.waitPlanStatus(t, w.head1, "head1 waits", waiting)
	w.comment(t, "c-1", "reader", "MEMBER", "/ok-to-test "+w.head1+"\n/test ok")
	w.comment(t, "c-2", "reader", "OWNER", "/ok-to-test "+w.head1)
	w.comment(t, "c-3", "reader", "COLLABORATOR", "/retest")
	w.barrier(t, "association")
	if ts := w.s.Tasks(w.head1); len(ts) != 0 {
		t.Errorf("a read-only commenter got %d tasks run", len(ts))
	}
	if st, _ := w.gh.Final(gateRepo, w.head1, "turtles"); !waiting(st) {
		t.Errorf("head1's plan status %+v, want still waiting", st)
	}
}

// TestAttackGateAssociationAuthor: a pull request whose author the signed
// payload calls MEMBER, but who has read access only, must wait.
func TestAttackGateAssociationAuthor(t *testing.T) {
	attack(t, "gate: a read-only MEMBER's pull request runs trusted by author_association")
	w := newGateWorld(t)
	w.gh.SetPermission(gateRepo, "reader", "read")
	w.pull(t, "pr-1", 7, "opened", "reader", "MEMBER", w.head1)
	w.waitPlanStatus(t, w.head1, "head1 waits", waiting)
	if ts := w.s.Tasks(w.head1); len(ts) != 0 {
		t.Errorf("a read-only MEMBER's pull request ran %d tasks", len(ts))
	}
}
