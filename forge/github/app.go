package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

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
	// whose repositories turtles tests. 0: each account's installation is
	// looked up (GET /repos/OWNER/REPO/installation, or /orgs/ORG/...) at
	// its first request and remembered, so one turtles serves the
	// repositories of every account that installed the App.
	InstallationID int64
	// PrivateKey is the App's private key, PEM (PKCS#1 or PKCS#8 RSA).
	PrivateKey []byte
}

// transport returns next wrapped to authenticate as the installation,
// with tokens asked of the API at base.
func (a *App) transport(next http.RoundTripper, base *url.URL) (http.RoundTripper, error) {
	if a.ID <= 0 || a.InstallationID < 0 {
		return nil, fmt.Errorf("github: App ID %d must be positive and installation ID %d not negative", a.ID, a.InstallationID)
	}
	if next == nil {
		next = http.DefaultTransport
	}
	atr, err := ghinstallation.NewAppsTransport(next, a.ID, a.PrivateKey)
	if err != nil {
		// The library's message may quote the key's parse error, never
		// the key itself.
		return nil, fmt.Errorf("github: App private key: %w", err)
	}
	// For GitHub Enterprise Server, tokens come from the same API root.
	atr.BaseURL = strings.TrimRight(base.String(), "/")
	if a.InstallationID > 0 {
		return ghinstallation.NewFromAppsTransport(atr, a.InstallationID), nil
	}
	return &installations{apps: atr, base: base, byOwner: map[string]*ghinstallation.Transport{}}, nil
}

// installations routes each request to the installation of the account
// it addresses, found by asking GitHub once per account.
type installations struct {
	apps *ghinstallation.AppsTransport
	base *url.URL

	mu      sync.Mutex
	byOwner map[string]*ghinstallation.Transport // lower-case account
}

// maxOwners bounds the remembered installations; past it they are
// forgotten and looked up again.
const maxOwners = 1000

func (t *installations) RoundTrip(req *http.Request) (*http.Response, error) {
	rest, ok := strings.CutPrefix(req.URL.Path, strings.TrimRight(t.base.Path, "/")+"/")
	if !ok {
		return nil, fmt.Errorf("github: %s is not under the API root", req.URL.Path)
	}
	parts := strings.SplitN(rest, "/", 4)
	var lookup string
	switch {
	case len(parts) >= 3 && parts[0] == "repos":
		lookup = "repos/" + parts[1] + "/" + parts[2] + "/installation"
	case len(parts) >= 2 && parts[0] == "orgs":
		lookup = "orgs/" + parts[1] + "/installation"
	default:
		return nil, fmt.Errorf("github: no installation for %s: not a repository or organization path", req.URL.Path)
	}
	owner := strings.ToLower(parts[1])
	t.mu.Lock()
	tr := t.byOwner[owner]
	t.mu.Unlock()
	if tr == nil {
		id, resp, err := t.installationID(req.Context(), lookup)
		if err != nil || resp != nil {
			// resp is GitHub's refusal (404: the App is not installed
			// there), returned as the answer to req.
			return resp, err
		}
		tr = ghinstallation.NewFromAppsTransport(t.apps, id)
		t.mu.Lock()
		if len(t.byOwner) >= maxOwners {
			clear(t.byOwner)
		}
		t.byOwner[owner] = tr
		t.mu.Unlock()
	}
	return tr.RoundTrip(req)
}

// installationID asks GitHub, as the App, for the installation at path.
// A non-2xx answer is returned as resp, for the caller to pass on.
func (t *installations) installationID(ctx context.Context, path string) (int64, *http.Response, error) {
	u := t.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := t.apps.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode/100 != 2 {
		return 0, resp, nil
	}
	defer resp.Body.Close()
	var in struct {
		ID int64 `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&in); err != nil || in.ID <= 0 {
		return 0, nil, fmt.Errorf("github: installation at %s: bad answer (id %d): %v", path, in.ID, err)
	}
	return in.ID, nil, nil
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
