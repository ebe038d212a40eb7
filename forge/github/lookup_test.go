package github_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

const (
	sha1 = "1111111111111111111111111111111111111111"
	sha2 = "2222222222222222222222222222222222222222"
)

func TestLookup(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.NewServer(t, "tok")
	c := newClient(t, srv, "tok", nil)
	srv.SetPulls("o/r", githubtest.PullRequest{Number: 1, HeadSHA: sha1, BaseRef: "main", Author: "alice"},
		githubtest.PullRequest{Number: 2, HeadSHA: sha2, BaseRef: "stable", Author: "mallory"})
	srv.SetFile("o/r", sha1, ".turtles.yaml", []byte("contexts: []\n"))
	srv.SetBranch("o/r", "main", sha2)
	srv.AddMember("org", "alice")
	srv.SetPermission("o/r", "bob", "write")
	srv.SetPermission("o/r", "carol", "admin")
	if err := c.SetStatus(ctx, "o/r", sha1, forge.Status{Context: "a", State: forge.Pending}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetStatus(ctx, "o/r", sha1, forge.Status{Context: "a", State: forge.Failure, Description: "bad"}); err != nil {
		t.Fatal(err)
	}

	prs, err := c.PullRequests(ctx, "o/r")
	if err != nil {
		t.Fatal(err)
	}
	want := []forge.PullRequest{{Number: 1, HeadSHA: sha1, Ref: "refs/pull/1/head", BaseRef: "main", Author: "alice"},
		{Number: 2, HeadSHA: sha2, Ref: "refs/pull/2/head", BaseRef: "stable", Author: "mallory"}}
	if diff := cmp.Diff(want, prs); diff != "" {
		t.Errorf("PullRequests (-want +got):\n%s", diff)
	}
	// Unchanged: the second listing is a 304 and gives the same answer.
	prs, err = c.PullRequests(ctx, "o/r")
	if diff := cmp.Diff(want, prs); err != nil || diff != "" {
		t.Errorf("second PullRequests: %v (-want +got):\n%s", err, diff)
	}
	reqs := srv.Requests()
	if last := reqs[len(reqs)-1]; last.Code != http.StatusNotModified || last.Header.Get("If-None-Match") == "" {
		t.Errorf("second listing: %+v, want a conditional request answered 304", last)
	}
	pr, err := c.PullRequest(ctx, "o/r", 2)
	if err != nil || pr != want[1] {
		t.Errorf("PullRequest(2) = %+v, %v", pr, err)
	}
	if _, err := c.PullRequest(ctx, "o/r", 3); !errors.Is(err, forge.ErrNotFound) || !errors.Is(err, forge.ErrPermanent) {
		t.Errorf("PullRequest(3) error %v, want ErrNotFound", err)
	}
	sts, err := c.Statuses(ctx, "o/r", sha1)
	if diff := cmp.Diff([]forge.Status{{Context: "a", State: forge.Failure, Description: "bad"}}, sts); err != nil || diff != "" {
		t.Errorf("Statuses: %v (-want +got):\n%s", err, diff)
	}
	data, err := c.File(ctx, "o/r", sha1, ".turtles.yaml")
	if err != nil || string(data) != "contexts: []\n" {
		t.Errorf("File = %q, %v", data, err)
	}
	if _, err := c.File(ctx, "o/r", sha2, ".turtles.yaml"); !errors.Is(err, forge.ErrNotFound) {
		t.Errorf("File of a commit without it: %v, want ErrNotFound", err)
	}
	if head, err := c.BranchHead(ctx, "o/r", "main"); err != nil || head != sha2 {
		t.Errorf("BranchHead = %q, %v", head, err)
	}
	for _, tt := range []struct {
		org, user string
		want      bool
	}{{"org", "alice", true}, {"org", "mallory", false}} {
		if got, err := c.IsMember(ctx, tt.org, tt.user); err != nil || got != tt.want {
			t.Errorf("IsMember(%s, %s) = %v, %v; want %v", tt.org, tt.user, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		user string
		want bool
	}{{"bob", true}, {"carol", true}, {"mallory", false}} {
		if got, err := c.CanPush(ctx, "o/r", tt.user); err != nil || got != tt.want {
			t.Errorf("CanPush(%s) = %v, %v; want %v", tt.user, got, err, tt.want)
		}
	}
	if _, err := c.IsMember(ctx, "../x", "a"); !errors.Is(err, forge.ErrPermanent) {
		t.Errorf("IsMember with a bad org: %v, want ErrPermanent", err)
	}
}

func TestLookupRateLimit(t *testing.T) {
	srv := githubtest.NewServer(t, "tok")
	c := newClient(t, srv, "tok", nil)
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	srv.FailNextGetWith(1, githubtest.RateLimited(reset))
	_, err := c.PullRequests(context.Background(), "o/r")
	var rl *forge.RateLimitError
	if !errors.As(err, &rl) || !rl.RetryAt().Equal(reset) {
		t.Fatalf("PullRequests when rate limited: %v, want a RateLimitError until %v", err, reset)
	}
	if errors.Is(err, forge.ErrPermanent) {
		t.Errorf("a rate limit is not permanent: %v", err)
	}
}
