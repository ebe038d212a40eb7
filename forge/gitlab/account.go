package gitlab

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles/forge"
)

// The dashboard's login with GitLab: the OAuth web flow of an application
// registered on the instance, and what the signed-in person's token shows.

// OAuthEndpoint returns the OAuth endpoints of the GitLab instance at
// baseURL (its root, as Config.BaseURL; a trailing api/v4/ is ignored).
func OAuthEndpoint(baseURL string) (oauth2.Endpoint, error) {
	u, err := forge.ParseBaseURL(cmp.Or(baseURL, DefaultBaseURL))
	if err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("gitlab: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "api/v4/")
	root := u.String()
	return oauth2.Endpoint{
		AuthURL:   root + "oauth/authorize",
		TokenURL:  root + "oauth/token",
		AuthStyle: oauth2.AuthStyleInParams,
	}, nil
}

// AccountConfig configures an Account.
type AccountConfig struct {
	// BaseURL is the instance's root, as Config.BaseURL.
	BaseURL string
	// Token is the person's OAuth access token (scope read_user for
	// Login, read_api for CanRead of private projects). It never appears
	// in errors or logs.
	Token string
	// HTTPClient is used for every request. Default: a client with a 30s
	// timeout.
	HTTPClient *http.Client
	// UserAgent defaults to "turtles".
	UserAgent string
}

// Account is GitLab as one signed-in person sees it. Safe for concurrent
// use.
type Account struct {
	gl *gl.Client
}

var _ forge.Account = (*Account)(nil)

// NewAccount validates cfg and returns the account. It makes no request.
func NewAccount(cfg AccountConfig) (*Account, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("gitlab: account without a token")
	}
	if err := forge.CheckToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	u, err := forge.ParseBaseURL(cmp.Or(cfg.BaseURL, DefaultBaseURL))
	if err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	c, err := gl.NewOAuthClient(cfg.Token,
		gl.WithBaseURL(u.String()),
		gl.WithHTTPClient(cmp.Or(cfg.HTTPClient, &http.Client{Timeout: 30 * time.Second})),
		gl.WithUserAgent(cmp.Or(cfg.UserAgent, "turtles")),
		gl.WithoutRetries(),
	)
	if err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	return &Account{gl: c}, nil
}

// Login implements forge.Account.
func (a *Account) Login(ctx context.Context) (string, error) {
	u, resp, err := a.gl.Users.CurrentUser(gl.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("gitlab: the signed-in user: %w", classify(err, resp))
	}
	if u.Username == "" {
		return "", fmt.Errorf("gitlab: the signed-in user has no username: %w", forge.ErrPermanent)
	}
	return u.Username, nil
}

// CanRead implements forge.Account: GitLab answers 404 for a project the
// token may not see.
func (a *Account) CanRead(ctx context.Context, repo string) (bool, error) {
	if err := checkProject(repo); err != nil {
		return false, err
	}
	_, resp, err := a.gl.Projects.GetProject(repo, nil, gl.WithContext(ctx))
	if notFound(resp) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("gitlab: can the signed-in user read %s: %w", repo, classify(err, resp))
	}
	return true, nil
}
