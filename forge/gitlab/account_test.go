package gitlab_test

import (
	"testing"

	"github.com/turtles-ci/turtles/forge/gitlab"
)

func TestOAuthEndpoint(t *testing.T) {
	for _, tt := range []struct{ base, auth, token string }{
		{"", "https://gitlab.com/oauth/authorize", "https://gitlab.com/oauth/token"},
		{"https://gitlab.example.com", "https://gitlab.example.com/oauth/authorize", "https://gitlab.example.com/oauth/token"},
		{"https://gitlab.example.com/api/v4/", "https://gitlab.example.com/oauth/authorize", "https://gitlab.example.com/oauth/token"},
		{"https://example.com/gitlab/", "https://example.com/gitlab/oauth/authorize", "https://example.com/gitlab/oauth/token"},
	} {
		ep, err := gitlab.OAuthEndpoint(tt.base)
		if err != nil {
			t.Errorf("OAuthEndpoint(%q): %v", tt.base, err)
			continue
		}
		if ep.AuthURL != tt.auth || ep.TokenURL != tt.token {
			t.Errorf("OAuthEndpoint(%q) = %s, %s; want %s, %s", tt.base, ep.AuthURL, ep.TokenURL, tt.auth, tt.token)
		}
	}
}
