// Package forge defines what turtles needs from a code forge (GitHub,
// GitLab): setting commit statuses, the lookups of the gate, and who a
// person signed in to the dashboard is (Account). Implementations live in
// forge/github and forge/gitlab. Only the reporter holds forge
// credentials; bots never import this package's implementations.
package forge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// State of a commit status, as forges name them.
type State string

const (
	Pending State = "pending"
	Success State = "success"
	Failure State = "failure"
	Error   State = "error"
)

// Status is one commit status.
type Status struct {
	Context     string
	State       State
	TargetURL   string
	Description string
}

// MaxDescription is the longest description forges accept (GitHub: 140).
const MaxDescription = 140

// ErrPermanent marks a forge error that retrying cannot fix (bad
// credentials, unknown repository); the reporter logs and drops it.
var ErrPermanent = errors.New("permanent forge error")

// Forge sets commit statuses.
type Forge interface {
	// SetStatus sets st on commit sha of repo ("owner/name"). Errors that
	// wrap ErrPermanent will not be retried; others will.
	SetStatus(ctx context.Context, repo, sha string, st Status) error
}

// Truncate returns s cut to at most max runes, ending with "…" when cut,
// so that a long reason never makes a forge refuse the whole status.
// Invalid UTF-8 is replaced first, so the result is always valid.
func Truncate(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	n := 0
	for i := range s {
		if n == max-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// ErrNotFound is wrapped by Lookup methods when the thing asked for does
// not exist (a file absent at a commit, an unknown pull request). It also
// wraps ErrPermanent: asking again will not make it appear.
var ErrNotFound = fmt.Errorf("%w: not found", ErrPermanent)

// PullRequest is an open pull request, as the gate and the scanner see it.
type PullRequest struct {
	Number  int
	HeadSHA string
	// Ref is the ref that holds its head on the forge, such as
	// refs/pull/7/head (GitHub) or refs/merge-requests/7/head (GitLab).
	Ref string
	// BaseRef is the branch it wants to merge into, such as "main", and
	// BaseSHA that branch's commit when the pull request last changed.
	BaseRef string
	BaseSHA string
	// Author is the login of who opened it.
	Author string
}

// StatusReader reads the statuses of a commit: what a reporter that
// takes over from a dead one checks before it posts.
type StatusReader interface {
	// Statuses returns the newest status of each context on commit sha.
	Statuses(ctx context.Context, repo, sha string) ([]Status, error)
}

// Lookup answers the questions the gate and the scanner ask before they
// queue work: who may run code, what a pull request's head is, what a
// commit carries. Every method only reads. repo is "owner/name". Errors
// wrap ErrNotFound or ErrPermanent where retrying cannot help; others,
// including rate limits (with a RetryAt() time.Time method), may be
// retried.
type Lookup interface {
	// IsMember reports whether user is a member of org.
	IsMember(ctx context.Context, org, user string) (bool, error)
	// CanPush reports whether user may push to repo (write, maintain or
	// admin): such a user could run any code in CI anyway.
	CanPush(ctx context.Context, repo, user string) (bool, error)
	// PullRequest returns pull request number of repo.
	PullRequest(ctx context.Context, repo string, number int) (PullRequest, error)
	// PullRequests lists the open pull requests of repo.
	PullRequests(ctx context.Context, repo string) ([]PullRequest, error)
	// BranchHead returns the commit at the tip of branch.
	BranchHead(ctx context.Context, repo, branch string) (string, error)
	StatusReader
	// File returns the content of path at commit sha, ErrNotFound if the
	// commit has no such file.
	File(ctx context.Context, repo, sha, path string) ([]byte, error)
}
