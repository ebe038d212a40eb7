package github_test

import (
	"testing"

	"github.com/turtles-ci/turtles/forge/github"
)

func TestOAuthEndpoint(t *testing.T) {
	for _, tt := range []struct{ api, auth, token string }{
		{"", "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token"},
		{"https://api.github.com/", "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token"},
		{"https://ghe.example.com/api/v3/", "https://ghe.example.com/login/oauth/authorize", "https://ghe.example.com/login/oauth/access_token"},
		{"https://ghe.example.com/api/v3", "https://ghe.example.com/login/oauth/authorize", "https://ghe.example.com/login/oauth/access_token"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/login/oauth/authorize", "http://127.0.0.1:8080/login/oauth/access_token"},
	} {
		ep, err := github.OAuthEndpoint(tt.api)
		if err != nil {
			t.Errorf("OAuthEndpoint(%q): %v", tt.api, err)
			continue
		}
		if ep.AuthURL != tt.auth || ep.TokenURL != tt.token {
			t.Errorf("OAuthEndpoint(%q) = %s, %s; want %s, %s", tt.api, ep.AuthURL, ep.TokenURL, tt.auth, tt.token)
		}
	}
	if _, err := github.OAuthEndpoint("ftp://x/"); err == nil {
		t.Error("OAuthEndpoint accepted an ftp URL")
	}
}
