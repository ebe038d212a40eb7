// Package gitlab sets commit statuses on GitLab (gitlab.com or a
// self-managed instance) and answers the gate's and the scanner's lookups,
// through the REST API v4. It implements forge.Forge and forge.Lookup, and,
// for the dashboard's login, gives GitLab's OAuth endpoints and
// forge.Account (account.go).
//
// Repositories are named by their full path, "group/subgroup/project", as
// GitLab's path_with_namespace; merge requests by their iid, which plays
// the part of a pull request number.
//
// Only the reporter side and cmd/turtles (which wires it) may import it: it
// holds the forge token, and bots must never hold one. Tests elsewhere use
// the fake API server in forge/gitlab/gitlabtest.
package gitlab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/turtles-ci/turtles/forge"
)

// DefaultBaseURL is gitlab.com.
const DefaultBaseURL = "https://gitlab.com/"

// Config configures a Client. Only Token is required.
type Config struct {
	// BaseURL is the instance's root, such as https://gitlab.example.com/;
	// "api/v4/" is appended unless it is already there. Default
	// DefaultBaseURL.
	BaseURL string
	// Token is a personal, project or group access token with the api
	// scope (statuses need Developer access). It never appears in errors
	// or logs.
	Token string
	// HTTPClient is used for every request. Default: a client with a 30s
	// timeout.
	HTTPClient *http.Client
	// UserAgent defaults to "turtles".
	UserAgent string
	// Log receives debug records of statuses set; nil discards.
	Log *slog.Logger
}

// Client talks to one GitLab instance. It is safe for concurrent use.
type Client struct {
	gl  *gl.Client
	log *slog.Logger

	mu    sync.Mutex
	users map[string]int64 // username -> id; ids never change
}

var (
	_ forge.Forge  = (*Client)(nil)
	_ forge.Lookup = (*Client)(nil)
)

// New validates cfg and returns a client. It makes no request.
func New(cfg Config) (*Client, error) {
	if cfg.Token == "" {
		return nil, errors.New("gitlab: no token")
	}
	if err := forge.CheckToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	u, err := forge.ParseBaseURL(cmp.Or(cfg.BaseURL, DefaultBaseURL))
	if err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	hc := cmp.Or(cfg.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	ua := cfg.UserAgent
	if ua == "" {
		ua = "turtles"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := gl.NewClient(cfg.Token,
		gl.WithBaseURL(u.String()),
		gl.WithHTTPClient(hc),
		gl.WithUserAgent(ua),
		// The reporter and the gate retry with their own backoff, and
		// know a rate limit's reset; retrying inside would hide both.
		gl.WithoutRetries(),
	)
	if err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	return &Client{gl: c, log: log, users: map[string]int64{}}, nil
}

var (
	// projectRe is GitLab's rule for namespace and project paths, loosely:
	// enough to keep a name from addressing another API path.
	projectRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)
	userRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,255}$`)
	shaRe     = regexp.MustCompile(`^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$`)
)

func checkProject(repo string) error {
	if !projectRe.MatchString(repo) || strings.Contains(repo, "..") {
		return fmt.Errorf("gitlab: bad project %q, want group/name: %w", repo, forge.ErrPermanent)
	}
	return nil
}

func checkSHA(sha string) error {
	if !shaRe.MatchString(sha) {
		return fmt.Errorf("gitlab: bad commit SHA %q: %w", sha, forge.ErrPermanent)
	}
	return nil
}

// stateOf maps a turtles state, and the description the reporter gives it,
// to GitLab's: "pending" is GitLab's pending while queued and running
// once a bot took it; "error" is canceled for a superseded or cancelled
// task and failed otherwise (GitLab has no separate error state).
func stateOf(st forge.Status) (gl.BuildStateValue, error) {
	switch st.State {
	case forge.Pending:
		if strings.HasPrefix(st.Description, "Running") {
			return gl.Running, nil
		}
		return gl.Pending, nil
	case forge.Success:
		return gl.Success, nil
	case forge.Failure:
		return gl.Failed, nil
	case forge.Error:
		if strings.HasPrefix(st.Description, "Cancelled") {
			return gl.Canceled, nil
		}
		return gl.Failed, nil
	}
	return "", fmt.Errorf("gitlab: bad status state %q: %w", st.State, forge.ErrPermanent)
}

// fromState maps a GitLab state back to turtles': every state that is not
// final is pending, canceled and skipped are errors.
func fromState(s string) forge.State {
	switch gl.BuildStateValue(s) {
	case gl.Success:
		return forge.Success
	case gl.Failed:
		return forge.Failure
	case gl.Canceled, gl.Skipped:
		return forge.Error
	}
	return forge.Pending
}

// SetStatus implements forge.Forge with GitLab's commit status API: the
// context is the status name. The description is cut to
// forge.MaxDescription runes. Errors wrap forge.ErrPermanent for bad input
// and for 4xx answers but 408 and 429; 429 is a *forge.RateLimitError; 5xx and
// network errors are plain. GitLab refuses to set a status to the state it
// already has; that is success here, not an error.
func (c *Client) SetStatus(ctx context.Context, repo, sha string, st forge.Status) error {
	if err := checkProject(repo); err != nil {
		return err
	}
	if err := checkSHA(sha); err != nil {
		return err
	}
	state, err := stateOf(st)
	if err != nil {
		return err
	}
	if st.Context == "" {
		return fmt.Errorf("gitlab: status without context: %w", forge.ErrPermanent)
	}
	opt := &gl.SetCommitStatusOptions{
		State:       state,
		Name:        gl.Ptr(st.Context),
		Description: gl.Ptr(forge.Truncate(st.Description, forge.MaxDescription)),
	}
	if st.TargetURL != "" {
		opt.TargetURL = gl.Ptr(st.TargetURL)
	}
	_, resp, err := c.gl.Commits.SetCommitStatus(repo, sha, opt, gl.WithContext(ctx))
	if err != nil {
		if sameState(err, resp) {
			c.log.Debug("gitlab status unchanged", "repo", repo, "sha", sha, "context", st.Context, "state", state)
			return nil
		}
		return fmt.Errorf("gitlab: set status %s on %s@%s: %w", st.Context, repo, forge.ShortSHA(sha), classify(err, resp))
	}
	c.log.Debug("gitlab status set", "repo", repo, "sha", sha, "context", st.Context, "state", state)
	return nil
}

// sameState reports GitLab's answer to a status that is already in the
// state asked for: 400 "Cannot transition status via :run from :running".
// GitLab gives no code for it but the message.
func sameState(err error, resp *gl.Response) bool {
	var er *gl.ErrorResponse
	return resp != nil && resp.Response != nil && resp.StatusCode == http.StatusBadRequest &&
		errors.As(err, &er) && strings.Contains(er.Message, "Cannot transition status")
}

// classify sorts err into permanent, rate limit or retryable by HTTP
// status.
func classify(err error, resp *gl.Response) error {
	if resp == nil || resp.Response == nil {
		return err // network error, timeout, cancelled context
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return &forge.RateLimitError{Reset: forge.ResetFromHeaders(resp.Header, "RateLimit-Reset", time.Now()), Err: err}
	}
	return forge.ClassifyStatus(resp.StatusCode, err)
}
