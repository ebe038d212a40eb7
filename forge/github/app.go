package github

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/bradleyfalzon/ghinstallation/v2"
)

// App is a GitHub App installation to act as. turtles signs a JWT with the
// App's private key, trades it for an installation token (POST
// /app/installations/ID/access_tokens) and renews that token a minute
// before it expires; requests carry "Authorization: token <installation
// token>". The key and the tokens never appear in errors or logs.
type App struct {
	// ID is the App's ID, from its settings page.
	ID int64
	// InstallationID is the installation on the account (user or org)
	// whose repositories turtles tests.
	InstallationID int64
	// PrivateKey is the App's private key, PEM (PKCS#1 or PKCS#8 RSA).
	PrivateKey []byte
}

// transport returns next wrapped to authenticate as the installation,
// with tokens asked of the API at base.
func (a *App) transport(next http.RoundTripper, base *url.URL) (http.RoundTripper, error) {
	if a.ID <= 0 || a.InstallationID <= 0 {
		return nil, fmt.Errorf("github: App ID %d and installation ID %d must be positive", a.ID, a.InstallationID)
	}
	if next == nil {
		next = http.DefaultTransport
	}
	tr, err := ghinstallation.New(next, a.ID, a.InstallationID, a.PrivateKey)
	if err != nil {
		// The library's message may quote the key's parse error, never
		// the key itself.
		return nil, fmt.Errorf("github: App private key: %w", err)
	}
	// For GitHub Enterprise Server, tokens come from the same API root.
	tr.BaseURL = strings.TrimRight(base.String(), "/")
	return tr, nil
}

// appAuthRefused reports whether err is GitHub refusing to issue an
// installation token (a wrong key, App ID or installation): asking again
// with the same credentials will not help.
func appAuthRefused(err error) bool {
	var he *ghinstallation.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		return false
	}
	code := he.Response.StatusCode
	return code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout
}
