package gitlab_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/gitlab"
	"github.com/turtles-ci/turtles/forge/gitlab/gitlabtest"
)

const (
	token   = "glpat-test-token"
	project = "group/sub/hello"
	sha     = "0123456789abcdef0123456789abcdef01234567"
	sha2    = "89abcdef0123456789abcdef0123456789abcdef"
)

func newClient(t *testing.T, srv *gitlabtest.Server) *gitlab.Client {
	t.Helper()
	c, err := gitlab.New(gitlab.Config{BaseURL: srv.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  gitlab.Config
	}{
		{"no token", gitlab.Config{}},
		{"token with newline", gitlab.Config{Token: "a\nb"}},
		{"ftp URL", gitlab.Config{Token: "t", BaseURL: "ftp://gitlab.example.com/"}},
		{"credentials in URL", gitlab.Config{Token: "t", BaseURL: "https://u:p@gitlab.example.com/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := gitlab.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) succeeded", tt.cfg)
			}
		})
	}
}

func TestSetStatusMapsStates(t *testing.T) {
	srv := gitlabtest.NewServer(t, token)
	c := newClient(t, srv)
	ctx := context.Background()
	steps := []struct {
		st   forge.Status
		want string // GitLab state, "" when nothing is recorded
	}{
		{forge.Status{Context: "lint", State: forge.Pending, Description: "Queued"}, "pending"},
		{forge.Status{Context: "lint", State: forge.Pending, Description: "Infrastructure problem, retrying (attempt 2)"}, ""},
		{forge.Status{Context: "lint", State: forge.Pending, Description: "Running on bot-1"}, "running"},
		{forge.Status{Context: "lint", State: forge.Failure, Description: "exit status 1", TargetURL: "http://t/tasks/x/1"}, "failed"},
		{forge.Status{Context: "unit", State: forge.Success, Description: strings.Repeat("é", 300)}, "success"},
		{forge.Status{Context: "vm", State: forge.Error, Description: "Cancelled: superseded by a newer push"}, "canceled"},
		{forge.Status{Context: "vm2", State: forge.Error, Description: "Infrastructure failure: VM did not boot"}, "failed"},
	}
	for _, s := range steps {
		before := len(srv.Statuses())
		if err := c.SetStatus(ctx, project, sha, s.st); err != nil {
			t.Fatalf("SetStatus(%+v): %v", s.st, err)
		}
		got := srv.Statuses()
		if s.want == "" {
			if len(got) != before {
				t.Errorf("%+v: recorded %+v, want GitLab's refusal of the same state taken as success", s.st, got[before:])
			}
			continue
		}
		if len(got) != before+1 || got[before].State != s.want {
			t.Fatalf("%+v: got %+v, want one status %s", s.st, got[before:], s.want)
		}
		if n := len([]rune(got[before].Description)); n > forge.MaxDescription {
			t.Errorf("description of %d runes sent", n)
		}
	}
	if st, _ := srv.Final(project, sha, "lint"); st.TargetURL != "http://t/tasks/x/1" {
		t.Errorf("target URL: %+v", st)
	}
	for _, r := range srv.Requests() {
		if r.Header.Get("Private-Token") != token {
			t.Errorf("%s %s without the token", r.Method, r.Path)
		}
		if !strings.HasPrefix(r.Path, "/api/v4/projects/group%2Fsub%2Fhello/") {
			t.Errorf("path %s does not name the project by its escaped full path", r.Path)
		}
	}
}

func TestSetStatusErrors(t *testing.T) {
	ctx := context.Background()
	st := forge.Status{Context: "lint", State: forge.Success}
	tests := []struct {
		name      string
		fault     *gitlabtest.Fault
		token     string
		repo, sha string
		state     forge.State
		permanent bool
		retryAt   bool
	}{
		{name: "bad token", token: "wrong", permanent: true},
		{name: "forbidden", fault: &gitlabtest.Fault{Code: http.StatusForbidden}, permanent: true},
		{name: "server error", fault: &gitlabtest.Fault{Code: http.StatusBadGateway}},
		{name: "rate limited", fault: &gitlabtest.Fault{Code: 429, Header: gitlabtest.RateLimited(30 * time.Second).Header}, retryAt: true},
		{name: "bad repo", repo: "../x", permanent: true},
		{name: "bad sha", sha: "HEAD", permanent: true},
		{name: "bad state", state: "weird", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitlabtest.NewServer(t, token)
			if tt.fault != nil {
				srv.FailNextWith(1, *tt.fault)
			}
			tok := token
			if tt.token != "" {
				tok = tt.token
			}
			c, err := gitlab.New(gitlab.Config{BaseURL: srv.URL, Token: tok})
			if err != nil {
				t.Fatal(err)
			}
			repo, s, x := project, sha, st
			if tt.repo != "" {
				repo = tt.repo
			}
			if tt.sha != "" {
				s = tt.sha
			}
			if tt.state != "" {
				x.State = tt.state
			}
			err = c.SetStatus(ctx, repo, s, x)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, forge.ErrPermanent); got != tt.permanent {
				t.Errorf("permanent: got %v, want %v (%v)", got, tt.permanent, err)
			}
			var ra interface{ RetryAt() time.Time }
			if got := errors.As(err, &ra); got != tt.retryAt {
				t.Errorf("RetryAt: got %v, want %v (%v)", got, tt.retryAt, err)
			} else if got && time.Until(ra.RetryAt()) < 20*time.Second {
				t.Errorf("retry at %s, want ~30s from now", ra.RetryAt())
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
}

func TestLookups(t *testing.T) {
	srv := gitlabtest.NewServer(t, token)
	c := newClient(t, srv)
	ctx := context.Background()
	srv.SetMergeRequests(project,
		gitlabtest.MergeRequest{IID: 3, HeadSHA: sha, TargetBranch: "main", BaseSHA: sha2, Author: "alice"},
		gitlabtest.MergeRequest{IID: 4, HeadSHA: sha2, TargetBranch: "stable", Author: "mallory"})
	srv.SetProjectAccess(project, "alice", gitlabtest.Developer)
	srv.SetProjectAccess(project, "rita", gitlabtest.Reporter)
	srv.SetGroupAccess("group", "gina", gitlabtest.Maintainer)
	srv.SetGroupAccess("group", "guest", gitlabtest.Guest)
	srv.AddUser("mallory")
	srv.SetBranch(project, "main", sha2)
	srv.SetFile(project, sha, ".turtles.yaml", []byte("contexts: []\n"))

	t.Run("can push", func(t *testing.T) {
		for user, want := range map[string]bool{"alice": true, "rita": false, "mallory": false, "nobody": false} {
			got, err := c.CanPush(ctx, project, user)
			if err != nil || got != want {
				t.Errorf("CanPush(%s) = %v, %v; want %v", user, got, err, want)
			}
		}
	})
	t.Run("is member", func(t *testing.T) {
		for user, want := range map[string]bool{"gina": true, "guest": false, "alice": false, "nobody": false} {
			got, err := c.IsMember(ctx, "group", user)
			if err != nil || got != want {
				t.Errorf("IsMember(group, %s) = %v, %v; want %v", user, got, err, want)
			}
		}
	})
	t.Run("merge requests", func(t *testing.T) {
		got, err := c.PullRequests(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		want := []forge.PullRequest{{Number: 3, HeadSHA: sha, Ref: "refs/merge-requests/3/head", BaseRef: "main", Author: "alice"},
			{Number: 4, HeadSHA: sha2, Ref: "refs/merge-requests/4/head", BaseRef: "stable", Author: "mallory"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("PullRequests (-want +got):\n%s", diff)
		}
		one, err := c.PullRequest(ctx, project, 3)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(forge.PullRequest{Number: 3, HeadSHA: sha, Ref: "refs/merge-requests/3/head", BaseRef: "main", BaseSHA: sha2, Author: "alice"}, one); diff != "" {
			t.Errorf("PullRequest (-want +got):\n%s", diff)
		}
		if _, err := c.PullRequest(ctx, project, 99); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("unknown merge request: %v, want ErrNotFound", err)
		}
	})
	t.Run("branch and file", func(t *testing.T) {
		if got, err := c.BranchHead(ctx, project, "main"); err != nil || got != sha2 {
			t.Errorf("BranchHead = %q, %v", got, err)
		}
		if _, err := c.BranchHead(ctx, project, "gone"); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("missing branch: %v", err)
		}
		if got, err := c.File(ctx, project, sha, ".turtles.yaml"); err != nil || string(got) != "contexts: []\n" {
			t.Errorf("File = %q, %v", got, err)
		}
		if _, err := c.File(ctx, project, sha2, ".turtles.yaml"); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("missing file: %v", err)
		}
	})
	t.Run("statuses", func(t *testing.T) {
		for _, st := range []forge.Status{
			{Context: "turtles", State: forge.Success, Description: "Approved by @gina for this commit"},
			{Context: "lint", State: forge.Pending, Description: "Running on b"},
			{Context: "lint", State: forge.Error, Description: "Cancelled: superseded", TargetURL: "http://t/tasks/a/2"},
		} {
			if err := c.SetStatus(ctx, project, sha, st); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.Statuses(ctx, project, sha)
		if err != nil {
			t.Fatal(err)
		}
		want := []forge.Status{
			{Context: "turtles", State: forge.Success, Description: "Approved by @gina for this commit"},
			{Context: "lint", State: forge.Error, Description: "Cancelled: superseded", TargetURL: "http://t/tasks/a/2"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Statuses (-want +got):\n%s", diff)
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		srv.FailNextGetWith(1, gitlabtest.RateLimited(time.Minute))
		_, err := c.PullRequests(ctx, project)
		var ra interface{ RetryAt() time.Time }
		if !errors.As(err, &ra) || errors.Is(err, forge.ErrPermanent) {
			t.Errorf("rate limited listing: %v, want a retryable error with RetryAt", err)
		}
	})
}
