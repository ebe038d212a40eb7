// Package forgetest is the contract suite every forge backend passes, run
// by each backend's tests against its fake API: statuses set are read back
// newest first per context, pull (merge) requests, branch heads, files,
// membership and push access, and the errors for what does not exist or
// cannot be right.
//
// Only tests may import it.
package forgetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/forge"
)

// Client is what a backend implements.
type Client interface {
	forge.Forge
	forge.Lookup
}

// Fake sets up, on a backend's fake API, what the suite then reads.
type Fake interface {
	// OpenPullRequest opens pr on repo.
	OpenPullRequest(repo string, pr forge.PullRequest)
	SetBranch(repo, branch, sha string)
	SetFile(repo, sha, path string, data []byte)
	// GrantPush gives user push access to repo (GitHub: write; GitLab:
	// Developer); GrantRead only read access (GitHub: read; GitLab:
	// Reporter).
	GrantPush(repo, user string)
	GrantRead(repo, user string)
	// AddOrgMember makes user a member who may push of org (GitHub: an
	// organization; GitLab: a group, Developer).
	AddOrgMember(org, user string)
}

// Env is one backend under test, on a fresh fake.
type Env struct {
	Client Client
	Fake   Fake
	// Repo is a repository name valid for the backend ("owner/name",
	// "group/sub/name"); Org an organization or group.
	Repo, Org string
}

const (
	sha1 = "0123456789abcdef0123456789abcdef01234567"
	sha2 = "89abcdef0123456789abcdef0123456789abcdef"
	sha3 = "fedcba9876543210fedcba9876543210fedcba98"
)

// Run runs the suite; newEnv returns a fresh backend for each subtest.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	ctx := context.Background()
	t.Run("statuses round trip", func(t *testing.T) {
		e := newEnv(t)
		set := []forge.Status{
			{Context: "lint", State: forge.Pending, Description: "Queued"},
			{Context: "unit", State: forge.Success, Description: "Tests passed", TargetURL: "https://ci.example/tasks/a/1"},
			{Context: "vm/debian-12", State: forge.Failure, Description: "exit status 2", TargetURL: "https://ci.example/tasks/b/1"},
			{Context: "turtles", State: forge.Success, Description: "Approved by @maint for this commit"},
			{Context: "slow", State: forge.Error, Description: "Cancelled: superseded by a newer push"},
			{Context: "lint", State: forge.Failure, Description: "2 issues", TargetURL: "https://ci.example/tasks/c/2"},
		}
		for _, st := range set {
			if err := e.Client.SetStatus(ctx, e.Repo, sha1, st); err != nil {
				t.Fatalf("SetStatus(%+v): %v", st, err)
			}
		}
		got, err := e.Client.Statuses(ctx, e.Repo, sha1)
		if err != nil {
			t.Fatal(err)
		}
		want := set[1:] // lint's newest is the last one
		sortStatuses(got)
		want = slices.Clone(want)
		sortStatuses(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Statuses: newest per context (-want +got):\n%s", diff)
		}
		if got, err := e.Client.Statuses(ctx, e.Repo, sha2); err != nil || len(got) != 0 {
			t.Errorf("Statuses of a commit without any = %+v, %v; want none", got, err)
		}
	})
	t.Run("long description is cut", func(t *testing.T) {
		e := newEnv(t)
		st := forge.Status{Context: "c", State: forge.Success, Description: strings.Repeat("ü", 3*forge.MaxDescription)}
		if err := e.Client.SetStatus(ctx, e.Repo, sha1, st); err != nil {
			t.Fatal(err)
		}
		got, err := e.Client.Statuses(ctx, e.Repo, sha1)
		if err != nil || len(got) != 1 || len([]rune(got[0].Description)) > forge.MaxDescription {
			t.Errorf("Statuses = %+v, %v; want one with at most %d runes", got, err, forge.MaxDescription)
		}
	})
	t.Run("bad input is permanent", func(t *testing.T) {
		e := newEnv(t)
		ok := forge.Status{Context: "c", State: forge.Success}
		for name, call := range map[string]func() error{
			"SetStatus bad sha":     func() error { return e.Client.SetStatus(ctx, e.Repo, "HEAD", ok) },
			"SetStatus bad repo":    func() error { return e.Client.SetStatus(ctx, "../x", sha1, ok) },
			"SetStatus no context":  func() error { return e.Client.SetStatus(ctx, e.Repo, sha1, forge.Status{State: forge.Success}) },
			"SetStatus bad state":   func() error { return e.Client.SetStatus(ctx, e.Repo, sha1, forge.Status{Context: "c", State: "done"}) },
			"Statuses bad sha":      func() error { _, err := e.Client.Statuses(ctx, e.Repo, "main"); return err },
			"File bad sha":          func() error { _, err := e.Client.File(ctx, e.Repo, "-x", ".turtles.yaml"); return err },
			"PullRequests bad repo": func() error { _, err := e.Client.PullRequests(ctx, "noslash"); return err },
		} {
			if err := call(); !errors.Is(err, forge.ErrPermanent) {
				t.Errorf("%s: %v, want an error wrapping forge.ErrPermanent", name, err)
			}
		}
	})
	t.Run("pull requests", func(t *testing.T) {
		e := newEnv(t)
		a := forge.PullRequest{Number: 3, HeadSHA: sha1, BaseRef: "main", BaseSHA: sha3, Author: "alice"}
		b := forge.PullRequest{Number: 5, HeadSHA: sha2, BaseRef: "stable", BaseSHA: sha3, Author: "bob"}
		e.Fake.OpenPullRequest(e.Repo, a)
		e.Fake.OpenPullRequest(e.Repo, b)
		got, err := e.Client.PullRequests(ctx, e.Repo)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i].BaseSHA = "" // listings need not carry it
			got[i].Ref = checkRef(t, got[i])
		}
		slices.SortFunc(got, func(x, y forge.PullRequest) int { return x.Number - y.Number })
		noBase := func(p forge.PullRequest) forge.PullRequest { p.BaseSHA = ""; return p }
		if diff := cmp.Diff([]forge.PullRequest{noBase(a), noBase(b)}, got); diff != "" {
			t.Errorf("PullRequests (-want +got):\n%s", diff)
		}
		one, err := e.Client.PullRequest(ctx, e.Repo, 5)
		if err != nil {
			t.Fatal(err)
		}
		one.Ref = checkRef(t, one)
		if diff := cmp.Diff(b, one); diff != "" {
			t.Errorf("PullRequest(5) (-want +got):\n%s", diff)
		}
		if _, err := e.Client.PullRequest(ctx, e.Repo, 99); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("PullRequest(99): %v, want ErrNotFound", err)
		}
	})
	t.Run("branches and files", func(t *testing.T) {
		e := newEnv(t)
		e.Fake.SetBranch(e.Repo, "main", sha2)
		e.Fake.SetFile(e.Repo, sha2, ".turtles.yaml", []byte("contexts: []\n"))
		e.Fake.SetFile(e.Repo, sha2, "ci/default.yaml", []byte("x: 1\n"))
		if got, err := e.Client.BranchHead(ctx, e.Repo, "main"); err != nil || got != sha2 {
			t.Errorf("BranchHead(main) = %q, %v", got, err)
		}
		if _, err := e.Client.BranchHead(ctx, e.Repo, "gone"); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("BranchHead(gone): %v, want ErrNotFound", err)
		}
		for path, want := range map[string]string{".turtles.yaml": "contexts: []\n", "ci/default.yaml": "x: 1\n"} {
			if got, err := e.Client.File(ctx, e.Repo, sha2, path); err != nil || string(got) != want {
				t.Errorf("File(%s) = %q, %v", path, got, err)
			}
		}
		if _, err := e.Client.File(ctx, e.Repo, sha1, ".turtles.yaml"); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("File at a commit without it: %v, want ErrNotFound", err)
		}
	})
	t.Run("trust", func(t *testing.T) {
		e := newEnv(t)
		e.Fake.GrantPush(e.Repo, "writer")
		e.Fake.GrantRead(e.Repo, "reader")
		e.Fake.AddOrgMember(e.Org, "member")
		for user, want := range map[string]bool{"writer": true, "reader": false, "nobody": false} {
			if got, err := e.Client.CanPush(ctx, e.Repo, user); err != nil || got != want {
				t.Errorf("CanPush(%s) = %v, %v; want %v", user, got, err, want)
			}
		}
		for user, want := range map[string]bool{"member": true, "writer": false, "nobody": false} {
			if got, err := e.Client.IsMember(ctx, e.Org, user); err != nil || got != want {
				t.Errorf("IsMember(%s, %s) = %v, %v; want %v", e.Org, user, got, err, want)
			}
		}
	})
}

func sortStatuses(s []forge.Status) {
	slices.SortFunc(s, func(a, b forge.Status) int { return strings.Compare(a.Context, b.Context) })
}

// checkRef checks that p names the ref of its head the way forges do,
// refs/KIND/NUMBER/head (the kind differs), and returns "" for comparing
// the rest.
func checkRef(t *testing.T, p forge.PullRequest) string {
	t.Helper()
	kind, ok := strings.CutPrefix(p.Ref, "refs/")
	if !ok || !strings.HasSuffix(kind, fmt.Sprintf("/%d/head", p.Number)) || strings.Count(kind, "/") != 2 {
		t.Errorf("pull request %d: Ref %q, want refs/KIND/%d/head", p.Number, p.Ref, p.Number)
	}
	return ""
}
