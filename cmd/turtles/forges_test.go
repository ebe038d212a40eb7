package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

func TestForgeSettings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "default is github"},
		{name: "gitlab", args: []string{"--forge", "gitlab", "--gitlab-url", "https://gitlab.example.com/"}},
		{name: "unknown forge", args: []string{"--forge", "bitbucket"}, wantErr: "want github or gitlab"},
		{name: "app without key", args: []string{"--github-app-id", "5", "--github-installation-id", "6"}, wantErr: "github-app-key-file"},
		{name: "app, installations looked up", args: []string{"--github-app-id", "5", "--github-app-key-file", "k.pem"}},
		{name: "negative installation", args: []string{"--github-installation-id", "-1"}, wantErr: "negative"},
		{name: "app id not a number", args: []string{"--github-app-id", "five"}, wantErr: "whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseSettings(func(fs *pflag.FlagSet) {
				addFlags(fs, "data-dir")
				addForgeFlags(fs)
			}, tt.args...)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("loadSettings(%v) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
			if tt.wantErr == "" && s.Forge != map[bool]string{true: "gitlab", false: "github"}[tt.name == "gitlab"] {
				t.Errorf("forge %q", s.Forge)
			}
		})
	}
}

// TestServeGitHubApp runs serve as a GitHub App installation: statuses
// reach the fake GitHub with installation tokens, never the App's key.
func TestServeGitHubApp(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// The fake GitHub does not know e2e.Token, which e2e.Serve gives
	// turtles: only the App's installation tokens get in.
	gh := githubtest.NewServer(t, "a-token-turtles-does-not-have")
	pushAccess(gh)
	gh.EnableApp(4321, 77, &key.PublicKey, time.Hour)
	repo := t.TempDir()
	sha := e2e.GitRepo(t, repo, map[string]string{".turtles.yaml": "contexts:\n  - name: pass\n    command: echo ok\n"})
	s := e2e.Serve(t, gh, t.TempDir(), "--github-app-id", "4321", "--github-app-key-file", keyFile, "--github-installation-id", "77")

	body := prPayload(repo, sha)
	if code, out := s.Webhook("pull_request", "app-1", body, e2e.Sign(body)); code != 200 {
		t.Fatalf("webhook: %d %s", code, out)
	}
	if st := e2e.WaitFinal(t, gh, "octo/hello", sha, 60*time.Second, "pass")["pass"]; st.State != "success" {
		t.Errorf("pass: %+v", st)
	}
	if n := gh.InstallationTokens(); n != 1 {
		t.Errorf("%d installation tokens issued, want 1 reused for every status", n)
	}
	for _, r := range gh.Requests() {
		if strings.Contains(r.Path, "/statuses/") && !strings.HasPrefix(r.Header.Get("Authorization"), "token ghs_fake") {
			t.Errorf("%s %s authorized with %q, want an installation token", r.Method, r.Path, r.Header.Get("Authorization"))
		}
	}
	if strings.Contains(s.Logs.String(), "PRIVATE KEY") {
		t.Error("the App's key appears in the server log")
	}
}
