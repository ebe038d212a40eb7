package github

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	gh "github.com/google/go-github/v75/github"
	"golang.org/x/oauth2"

	"github.com/turtles-ci/turtles/forge"
)

// The dashboard's login with GitHub: the OAuth web flow of an OAuth App,
// or the user login of a GitHub App (the same flow, whose tokens the App's
// permissions bound), and what the signed-in person's token shows.

// OAuthEndpoint returns the OAuth endpoints of the GitHub whose REST API
// is at apiBase: github.com's for api.github.com, https://HOST/login/...
// for GitHub Enterprise Server's https://HOST/api/v3/, and the host's own
// for any other root (a test server serves both at one address).
func OAuthEndpoint(apiBase string) (oauth2.Endpoint, error) {
	u, err := forge.ParseBaseURL(cmp.Or(apiBase, DefaultBaseURL))
	if err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("github: %w", err)
	}
	web := *u
	switch {
	case strings.EqualFold(u.Host, "api.github.com"):
		web.Host, web.Path = "github.com", "/"
	case strings.HasSuffix(u.Path, "/api/v3/"):
		web.Path = strings.TrimSuffix(u.Path, "api/v3/")
	}
	root := web.String()
	return oauth2.Endpoint{
		AuthURL:  root + "login/oauth/authorize",
		TokenURL: root + "login/oauth/access_token",
		// GitHub takes the client's credentials as parameters.
		AuthStyle: oauth2.AuthStyleInParams,
	}, nil
}

// AccountConfig configures an Account.
type AccountConfig struct {
	// BaseURL is the REST API root, as Config.BaseURL.
	BaseURL string
	// Token is the person's OAuth access token. It never appears in
	// errors or logs.
	Token string
	// HTTPClient is used for every request. Default: a client with a 30s
	// timeout.
	HTTPClient *http.Client
	// UserAgent defaults to "turtles".
	UserAgent string
}

// Account is GitHub as one signed-in person sees it. Safe for concurrent
// use.
type Account struct {
	gh *gh.Client
}

var _ forge.Account = (*Account)(nil)

// NewAccount validates cfg and returns the account. It makes no request.
func NewAccount(cfg AccountConfig) (*Account, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("github: account without a token")
	}
	if err := forge.CheckToken(cfg.Token); err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	u, err := forge.ParseBaseURL(cmp.Or(cfg.BaseURL, DefaultBaseURL))
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	c := gh.NewClient(cmp.Or(cfg.HTTPClient, &http.Client{Timeout: 30 * time.Second})).WithAuthToken(cfg.Token)
	c.BaseURL = u
	c.UserAgent = cmp.Or(cfg.UserAgent, "turtles")
	return &Account{gh: c}, nil
}

// Login implements forge.Account.
func (a *Account) Login(ctx context.Context) (string, error) {
	u, resp, err := a.gh.Users.Get(ctx, "")
	if err != nil {
		return "", fmt.Errorf("github: the signed-in user: %w", classify(err, resp))
	}
	if u.GetLogin() == "" {
		return "", fmt.Errorf("github: the signed-in user has no login: %w", forge.ErrPermanent)
	}
	return u.GetLogin(), nil
}

// CanRead implements forge.Account: GitHub answers 404 for a repository
// the token may not see. An OAuth App's token sees private repositories
// only with the repo scope; a GitHub App's, those the App is installed on
// and the person may read.
func (a *Account) CanRead(ctx context.Context, repo string) (bool, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return false, err
	}
	_, resp, err := a.gh.Repositories.Get(ctx, owner, name)
	if err != nil {
		if resp != nil && resp.Response != nil && resp.StatusCode == http.StatusNotFound {
			return false, nil
		}
		return false, fmt.Errorf("github: can the signed-in user read %s: %w", repo, classify(err, resp))
	}
	return true, nil
}
