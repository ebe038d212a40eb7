package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	gh "github.com/google/go-github/v75/github"

	"github.com/turtles-ci/turtles/forge"
)

var _ forge.Lookup = (*Client)(nil)

// lookupError classifies err like SetStatus does, with 404 as
// forge.ErrNotFound.
func lookupError(what string, err error, resp *gh.Response) error {
	if resp != nil && resp.Response != nil && resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("github: %s: %w", what, forge.ErrNotFound)
	}
	return fmt.Errorf("github: %s: %w", what, classify(err, resp))
}

// IsMember implements forge.Lookup. A token that cannot see an org's
// private members sees only public ones: make membership public, or give
// the token read:org.
func (c *Client) IsMember(ctx context.Context, org, user string) (bool, error) {
	if !namePartRe.MatchString(org) || !namePartRe.MatchString(user) {
		return false, fmt.Errorf("github: bad org %q or user %q: %w", org, user, forge.ErrPermanent)
	}
	ok, resp, err := c.gh.Organizations.IsMember(ctx, org, user)
	if err != nil {
		if resp != nil && resp.Response != nil && resp.StatusCode == http.StatusNotFound {
			return false, nil
		}
		return false, lookupError(fmt.Sprintf("is %s a member of %s", user, org), err, resp)
	}
	return ok, nil
}

// CanPush implements forge.Lookup.
func (c *Client) CanPush(ctx context.Context, repo, user string) (bool, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return false, err
	}
	if !namePartRe.MatchString(user) {
		return false, fmt.Errorf("github: bad user %q: %w", user, forge.ErrPermanent)
	}
	p, resp, err := c.gh.Repositories.GetPermissionLevel(ctx, owner, name, user)
	if err != nil {
		if resp != nil && resp.Response != nil && resp.StatusCode == http.StatusNotFound {
			return false, nil // no such user: certainly no push access
		}
		return false, lookupError(fmt.Sprintf("permission of %s on %s", user, repo), err, resp)
	}
	switch p.GetPermission() {
	case "admin", "maintain", "write":
		return true, nil
	}
	return false, nil
}

func pullRequest(p *gh.PullRequest) forge.PullRequest {
	return forge.PullRequest{
		Number:  p.GetNumber(),
		HeadSHA: p.GetHead().GetSHA(),
		Ref:     fmt.Sprintf("refs/pull/%d/head", p.GetNumber()),
		BaseRef: p.GetBase().GetRef(),
		BaseSHA: p.GetBase().GetSHA(),
		Author:  p.GetUser().GetLogin(),
	}
}

// PullRequest implements forge.Lookup.
func (c *Client) PullRequest(ctx context.Context, repo string, number int) (forge.PullRequest, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return forge.PullRequest{}, err
	}
	p, resp, err := c.gh.PullRequests.Get(ctx, owner, name, number)
	if err != nil {
		return forge.PullRequest{}, lookupError(fmt.Sprintf("pull request %s#%d", repo, number), err, resp)
	}
	return pullRequest(p), nil
}

// maxPages bounds the pages of one listing (100 items each).
const maxPages = 50

// PullRequests implements forge.Lookup.
func (c *Client) PullRequests(ctx context.Context, repo string) ([]forge.PullRequest, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, err
	}
	opts := &gh.PullRequestListOptions{State: "open", ListOptions: gh.ListOptions{PerPage: 100}}
	var out []forge.PullRequest
	for range maxPages {
		ps, resp, err := c.gh.PullRequests.List(ctx, owner, name, opts)
		if err != nil {
			return nil, lookupError("list pull requests of "+repo, err, resp)
		}
		for _, p := range ps {
			out = append(out, pullRequest(p))
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
	return out, nil
}

// BranchHead implements forge.Lookup.
func (c *Client) BranchHead(ctx context.Context, repo, branch string) (string, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return "", err
	}
	b, resp, err := c.gh.Repositories.GetBranch(ctx, owner, name, branch, 1)
	if err != nil {
		return "", lookupError(fmt.Sprintf("branch %s of %s", branch, repo), err, resp)
	}
	return b.GetCommit().GetSHA(), nil
}

// Statuses implements forge.Lookup.
func (c *Client) Statuses(ctx context.Context, repo, sha string) ([]forge.Status, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, err
	}
	if !shaRe.MatchString(sha) {
		return nil, fmt.Errorf("github: bad commit SHA %q: %w", sha, forge.ErrPermanent)
	}
	opts := &gh.ListOptions{PerPage: 100}
	var out []forge.Status
	for range maxPages {
		cs, resp, err := c.gh.Repositories.GetCombinedStatus(ctx, owner, name, sha, opts)
		if err != nil {
			return nil, lookupError(fmt.Sprintf("statuses of %s@%s", repo, forge.ShortSHA(sha)), err, resp)
		}
		for _, s := range cs.Statuses {
			out = append(out, forge.Status{Context: s.GetContext(), State: forge.State(s.GetState()),
				TargetURL: s.GetTargetURL(), Description: s.GetDescription()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
	return out, nil
}

// File implements forge.Lookup.
func (c *Client) File(ctx context.Context, repo, sha, path string) ([]byte, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, err
	}
	if !shaRe.MatchString(sha) {
		return nil, fmt.Errorf("github: bad commit SHA %q: %w", sha, forge.ErrPermanent)
	}
	f, _, resp, err := c.gh.Repositories.GetContents(ctx, owner, name, path, &gh.RepositoryContentGetOptions{Ref: sha})
	if err != nil {
		return nil, lookupError(fmt.Sprintf("%s at %s@%s", path, repo, forge.ShortSHA(sha)), err, resp)
	}
	if f == nil {
		return nil, fmt.Errorf("github: %s at %s@%s is a directory: %w", path, repo, forge.ShortSHA(sha), forge.ErrNotFound)
	}
	s, err := f.GetContent()
	if err != nil {
		return nil, fmt.Errorf("github: decode %s at %s@%s: %w", path, repo, forge.ShortSHA(sha), errors.Join(forge.ErrPermanent, err))
	}
	return []byte(s), nil
}
