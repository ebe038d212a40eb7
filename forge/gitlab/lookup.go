package gitlab

import (
	"context"
	"fmt"
	"net/http"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/turtles-ci/turtles/forge"
)

// Trusted is the least access level whose holders turtles trusts: they can
// push to the project, so they could run any code in CI anyway.
const Trusted = gl.DeveloperPermissions

func notFound(resp *gl.Response) bool {
	return resp != nil && resp.Response != nil && resp.StatusCode == http.StatusNotFound
}

// lookupError classifies err like SetStatus does, with 404 as
// forge.ErrNotFound.
func lookupError(what string, err error, resp *gl.Response) error {
	if notFound(resp) {
		return fmt.Errorf("gitlab: %s: %w", what, forge.ErrNotFound)
	}
	return fmt.Errorf("gitlab: %s: %w", what, classify(err, resp))
}

// userID returns the id of username, 0 when there is no such user.
func (c *Client) userID(ctx context.Context, username string) (int64, error) {
	if !userRe.MatchString(username) {
		return 0, fmt.Errorf("gitlab: bad user %q: %w", username, forge.ErrPermanent)
	}
	c.mu.Lock()
	id, ok := c.users[username]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	us, resp, err := c.gl.Users.ListUsers(&gl.ListUsersOptions{Username: gl.Ptr(username)}, gl.WithContext(ctx))
	if err != nil {
		return 0, lookupError("user "+username, err, resp)
	}
	for _, u := range us {
		if u.Username == username {
			c.mu.Lock()
			if len(c.users) > 10000 {
				clear(c.users)
			}
			c.users[username] = u.ID
			c.mu.Unlock()
			return u.ID, nil
		}
	}
	return 0, nil
}

// IsMember implements forge.Lookup: org is a group's full path; user is a
// member with Developer access or more, directly or through a parent
// group.
func (c *Client) IsMember(ctx context.Context, org, user string) (bool, error) {
	if !projectRe.MatchString(org) && !userRe.MatchString(org) || len(org) > 255 {
		return false, fmt.Errorf("gitlab: bad group %q: %w", org, forge.ErrPermanent)
	}
	id, err := c.userID(ctx, user)
	if err != nil || id == 0 {
		return false, err
	}
	m, resp, err := c.gl.GroupMembers.GetInheritedGroupMember(org, id, gl.WithContext(ctx))
	if notFound(resp) {
		return false, nil
	}
	if err != nil {
		return false, lookupError(fmt.Sprintf("is %s a member of %s", user, org), err, resp)
	}
	return m.AccessLevel >= Trusted, nil
}

// CanPush implements forge.Lookup: user is a member of repo with
// Developer access or more, directly or through its groups.
func (c *Client) CanPush(ctx context.Context, repo, user string) (bool, error) {
	if err := checkProject(repo); err != nil {
		return false, err
	}
	id, err := c.userID(ctx, user)
	if err != nil || id == 0 {
		return false, err
	}
	m, resp, err := c.gl.ProjectMembers.GetInheritedProjectMember(repo, id, gl.WithContext(ctx))
	if notFound(resp) {
		return false, nil
	}
	if err != nil {
		return false, lookupError(fmt.Sprintf("access of %s to %s", user, repo), err, resp)
	}
	return m.AccessLevel >= Trusted, nil
}

// PullRequest implements forge.Lookup for merge request iid number.
func (c *Client) PullRequest(ctx context.Context, repo string, number int) (forge.PullRequest, error) {
	if err := checkProject(repo); err != nil {
		return forge.PullRequest{}, err
	}
	mr, resp, err := c.gl.MergeRequests.GetMergeRequest(repo, int64(number), nil, gl.WithContext(ctx))
	if err != nil {
		return forge.PullRequest{}, lookupError(fmt.Sprintf("merge request %s!%d", repo, number), err, resp)
	}
	pr := pullRequest(&mr.BasicMergeRequest)
	pr.BaseSHA = mr.DiffRefs.BaseSha
	return pr, nil
}

func pullRequest(mr *gl.BasicMergeRequest) forge.PullRequest {
	pr := forge.PullRequest{Number: int(mr.IID), HeadSHA: mr.SHA, Ref: fmt.Sprintf("refs/merge-requests/%d/head", mr.IID), BaseRef: mr.TargetBranch}
	if mr.Author != nil {
		pr.Author = mr.Author.Username
	}
	return pr
}

// maxPages bounds the pages of one listing (100 items each).
const maxPages = 50

// PullRequests implements forge.Lookup: the opened merge requests.
func (c *Client) PullRequests(ctx context.Context, repo string) ([]forge.PullRequest, error) {
	if err := checkProject(repo); err != nil {
		return nil, err
	}
	opt := &gl.ListProjectMergeRequestsOptions{State: gl.Ptr("opened"), ListOptions: gl.ListOptions{PerPage: 100}}
	var out []forge.PullRequest
	for range maxPages {
		mrs, resp, err := c.gl.MergeRequests.ListProjectMergeRequests(repo, opt, gl.WithContext(ctx))
		if err != nil {
			return nil, lookupError("list merge requests of "+repo, err, resp)
		}
		for _, mr := range mrs {
			out = append(out, pullRequest(mr))
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	return out, nil
}

// BranchHead implements forge.Lookup.
func (c *Client) BranchHead(ctx context.Context, repo, branch string) (string, error) {
	if err := checkProject(repo); err != nil {
		return "", err
	}
	b, resp, err := c.gl.Branches.GetBranch(repo, branch, gl.WithContext(ctx))
	if err != nil {
		return "", lookupError(fmt.Sprintf("branch %s of %s", branch, repo), err, resp)
	}
	if b.Commit == nil {
		return "", fmt.Errorf("gitlab: branch %s of %s has no commit: %w", branch, repo, forge.ErrNotFound)
	}
	return b.Commit.ID, nil
}

// Statuses implements forge.Lookup: the newest status of each name, with
// GitLab's states mapped back (running is pending, canceled an error).
func (c *Client) Statuses(ctx context.Context, repo, sha string) ([]forge.Status, error) {
	if err := checkProject(repo); err != nil {
		return nil, err
	}
	if err := checkSHA(sha); err != nil {
		return nil, err
	}
	opt := &gl.GetCommitStatusesOptions{ListOptions: gl.ListOptions{PerPage: 100}}
	// Without all=true GitLab lists the newest status of each name; should
	// it list more (retried jobs), the highest id wins.
	newest := map[string]*gl.CommitStatus{}
	var order []string
	for range maxPages {
		sts, resp, err := c.gl.Commits.GetCommitStatuses(repo, sha, opt, gl.WithContext(ctx))
		if err != nil {
			return nil, lookupError(fmt.Sprintf("statuses of %s@%s", repo, forge.ShortSHA(sha)), err, resp)
		}
		for _, s := range sts {
			old, ok := newest[s.Name]
			if !ok {
				order = append(order, s.Name)
			}
			if !ok || s.ID > old.ID {
				newest[s.Name] = s
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	out := make([]forge.Status, 0, len(order))
	for _, name := range order {
		s := newest[name]
		out = append(out, forge.Status{Context: s.Name, State: fromState(s.Status), TargetURL: s.TargetURL, Description: s.Description})
	}
	return out, nil
}

// File implements forge.Lookup with the raw file endpoint.
func (c *Client) File(ctx context.Context, repo, sha, path string) ([]byte, error) {
	if err := checkProject(repo); err != nil {
		return nil, err
	}
	if err := checkSHA(sha); err != nil {
		return nil, err
	}
	b, resp, err := c.gl.RepositoryFiles.GetRawFile(repo, path, &gl.GetRawFileOptions{Ref: gl.Ptr(sha)}, gl.WithContext(ctx))
	if err != nil {
		return nil, lookupError(fmt.Sprintf("%s at %s@%s", path, repo, forge.ShortSHA(sha)), err, resp)
	}
	return b, nil
}
