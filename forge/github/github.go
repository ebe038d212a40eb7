// Package github sets commit statuses on GitHub and GitHub Enterprise Server
// through the REST API. It implements forge.Forge and forge.Lookup, and,
// for the dashboard's login, gives GitHub's OAuth endpoints and
// forge.Account (account.go).
//
// Only the reporter and cmd/turtles (which wires it) may import it: it holds
// the forge token, and bots must never hold one. Tests elsewhere use the fake
// API server in forge/github/githubtest.
package github

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	gh "github.com/google/go-github/v75/github"

	"github.com/turtles-ci/turtles/forge"
)

// DefaultBaseURL is the API root of github.com.
const DefaultBaseURL = "https://api.github.com/"

// Config configures a Client. Token or App is required.
type Config struct {
	// BaseURL is the REST API root, used as given (a trailing slash is
	// added). Default DefaultBaseURL. For GitHub Enterprise Server give the
	// full API root, such as https://ghe.example.com/api/v3/; nothing is
	// appended, so a test server's bare URL works too.
	BaseURL string
	// Token authenticates as "Authorization: Bearer <token>". It needs
	// permission to write commit statuses. It never appears in errors or
	// logs.
	Token string
	// App, instead of Token, authenticates as a GitHub App installation,
	// with installation tokens renewed before they expire.
	App *App
	// HTTPClient is copied; its Transport is wrapped to add the token.
	// Default: a client with a 30s timeout.
	HTTPClient *http.Client
	// UserAgent defaults to "turtles".
	UserAgent string
	// Log receives debug records of statuses set; nil discards.
	Log *slog.Logger
}

// Client sets commit statuses on one GitHub instance. It is safe for
// concurrent use.
type Client struct {
	gh  *gh.Client
	log *slog.Logger
}

var _ forge.Forge = (*Client)(nil)

// New validates cfg and returns a client. It makes no request.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Token == "" && cfg.App == nil:
		return nil, errors.New("github: no token and no App")
	case cfg.Token != "" && cfg.App != nil:
		return nil, errors.New("github: a token and an App: give one")
	}
	if err := forge.CheckToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	u, err := forge.ParseBaseURL(cmp.Or(cfg.BaseURL, DefaultBaseURL))
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	hc := cmp.Or(cfg.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	cp := *hc
	if cfg.App != nil {
		tr, err := cfg.App.transport(hc.Transport, u)
		if err != nil {
			return nil, err
		}
		cp.Transport = newETagCache(tr)
	} else {
		cp.Transport = newETagCache(hc.Transport)
	}
	hc = &cp
	c := gh.NewClient(hc)
	if cfg.Token != "" {
		c = c.WithAuthToken(cfg.Token)
	}
	c.BaseURL = u
	c.UserAgent = cfg.UserAgent
	if c.UserAgent == "" {
		c.UserAgent = "turtles"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{gh: c, log: log}, nil
}

var (
	namePartRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)
	shaRe      = regexp.MustCompile(`^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$`)
)

// SetStatus implements forge.Forge. The description is cut to
// forge.MaxDescription runes. Errors wrap forge.ErrPermanent for bad input
// and for 401, 403 (not rate limits), 404, 422 and other 4xx answers. Rate
// limits return a *forge.RateLimitError; 5xx and network errors return a plain
// error. Either may be retried.
func (c *Client) SetStatus(ctx context.Context, repo, sha string, st forge.Status) error {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return err
	}
	if !shaRe.MatchString(sha) {
		return fmt.Errorf("github: bad commit SHA %q: %w", sha, forge.ErrPermanent)
	}
	switch st.State {
	case forge.Pending, forge.Success, forge.Failure, forge.Error:
	default:
		return fmt.Errorf("github: bad status state %q: %w", st.State, forge.ErrPermanent)
	}
	if st.Context == "" {
		return fmt.Errorf("github: status without context: %w", forge.ErrPermanent)
	}
	rs := &gh.RepoStatus{
		State:       gh.Ptr(string(st.State)),
		Context:     gh.Ptr(st.Context),
		Description: gh.Ptr(forge.Truncate(st.Description, forge.MaxDescription)),
	}
	if st.TargetURL != "" {
		rs.TargetURL = gh.Ptr(st.TargetURL)
	}
	_, resp, err := c.gh.Repositories.CreateStatus(ctx, owner, name, sha, rs)
	if err != nil {
		return fmt.Errorf("github: set status %s on %s@%s: %w", st.Context, repo, forge.ShortSHA(sha), classify(err, resp))
	}
	c.log.Debug("github status set", "repo", repo, "sha", sha, "context", st.Context, "state", st.State)
	return nil
}

// splitRepo checks that repo is "owner/name"; anything else could address
// another API path.
func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !namePartRe.MatchString(owner) || !namePartRe.MatchString(name) ||
		owner == "." || owner == ".." || name == "." || name == ".." {
		return "", "", fmt.Errorf("github: bad repository %q, want owner/name: %w", repo, forge.ErrPermanent)
	}
	return owner, name, nil
}

// classify sorts err into permanent, rate limit or retryable, by type and
// HTTP status, never by message text.
func classify(err error, resp *gh.Response) error {
	var rl *gh.RateLimitError
	if errors.As(err, &rl) {
		reset := rl.Rate.Reset.Time
		if reset.IsZero() {
			reset = time.Now().Add(forge.DefaultRateWait)
		}
		return &forge.RateLimitError{Reset: reset, Err: err}
	}
	var abuse *gh.AbuseRateLimitError
	if errors.As(err, &abuse) {
		wait := forge.DefaultRateWait
		if abuse.RetryAfter != nil {
			wait = *abuse.RetryAfter
		}
		return &forge.RateLimitError{Reset: time.Now().Add(wait), Err: err}
	}
	if resp == nil || resp.Response == nil {
		if appAuthRefused(err) {
			return fmt.Errorf("%w: %w", forge.ErrPermanent, err)
		}
		// No answer: network error, timeout, cancelled context.
		return err
	}
	code := resp.StatusCode
	if code == http.StatusTooManyRequests || code == http.StatusForbidden && hasRateHeaders(resp.Header) {
		return &forge.RateLimitError{Reset: forge.ResetFromHeaders(resp.Header, "X-RateLimit-Reset", time.Now()), Err: err}
	}
	// 202 and 3xx are unexpected for statuses: tried again.
	return forge.ClassifyStatus(code, err)
}

func hasRateHeaders(h http.Header) bool {
	return h.Get("Retry-After") != "" || h.Get("X-RateLimit-Remaining") == "0"
}
