package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/turtles-ci/turtles/session"
)

// TestLoginSettings: --private alone, and --private=false, parse as a
// switch does; sign-in is with the forge of the repositories only, and
// --private needs it.
func TestLoginSettings(t *testing.T) {
	register := func(fs *pflag.FlagSet) {
		addFlags(fs, "data-dir")
		addForgeFlags(fs, "forge")
		addOptions(fs, loginFlags...)
	}
	for _, tt := range []struct {
		name        string
		args        []string
		env         map[string]string
		wantPrivate bool
		wantErr     string
	}{
		{name: "off by default", args: nil},
		{name: "a switch", args: []string{"--private", "--oauth-github-client-id", "x"}, wantPrivate: true},
		{name: "=false", args: []string{"--private=false"}},
		{name: "from the environment", env: map[string]string{"TURTLES_PRIVATE": "true", "TURTLES_OAUTH_GITHUB_CLIENT_ID": "x"}, wantPrivate: true},
		{name: "not a boolean", env: map[string]string{"TURTLES_PRIVATE": "maybe"}, wantErr: `TURTLES_PRIVATE: want true or false, got "maybe"`},
		{name: "private needs a sign-in", args: []string{"--private"}, wantErr: "private: needs a sign-in: --oauth-github-client-id"},
		{name: "the other forge's sign-in", args: []string{"--oauth-gitlab-client-id", "x"}, wantErr: "oauth-gitlab-client-id: this turtles runs with --forge github"},
		{name: "GitLab's with GitLab", args: []string{"--forge", "gitlab", "--oauth-gitlab-client-id", "x", "--private"}, wantPrivate: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s, err := parseSettings(register, append([]string{"--data-dir", t.TempDir()}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Private != tt.wantPrivate {
				t.Errorf("Private = %v, want %v", s.Private, tt.wantPrivate)
			}
		})
	}
}

// TestSessionKeys: the key file's first key seals and the others open;
// without one, a key is generated in the data dir once and kept.
func TestSessionKeys(t *testing.T) {
	dir := t.TempDir()
	s := defaults()
	s.DataDir = dir
	gen, path, err := sessionKeys(s)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "session-key") {
		t.Errorf("generated key at %s", path)
	}
	again, _, err := sessionKeys(s)
	if err != nil {
		t.Fatal(err)
	}
	sess := session.Session{ID: "i", Forge: "github", Login: "alice", Expires: time.Now().Add(time.Hour)}
	v, _ := gen.Encode(sess)
	if _, err := again.Decode(v, time.Now()); err != nil {
		t.Errorf("a restart generated another key: %v", err)
	}

	file := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(file, []byte("# newest first\n"+strings.Repeat("n", 32)+"\n"+strings.Repeat("o", 32)+"\n"), 0o600)
	s.SessionKeyFile = file
	rotated, path, err := sessionKeys(s)
	if err != nil || path != file {
		t.Fatalf("sessionKeys = %v, %q", err, path)
	}
	old, _ := session.NewKeys([]byte(strings.Repeat("o", 32)))
	v, _ = old.Encode(sess)
	if _, err := rotated.Decode(v, time.Now()); err != nil {
		t.Errorf("the old key no longer opens: %v", err)
	}
	os.WriteFile(file, []byte("short\n"), 0o600)
	if _, _, err := sessionKeys(s); err == nil {
		t.Error("a short key was accepted")
	}
}

// TestNewAuth: without an OAuth client there is no sign-in; with one
// and no secret, the process does not start.
func TestNewAuth(t *testing.T) {
	s := defaults()
	s.DataDir = t.TempDir()
	s.fill()
	sys := newSystem(s, slog.New(slog.DiscardHandler))
	if a, err := sys.newAuth(); a != nil || err != nil {
		t.Errorf("newAuth without a client = %v, %v; want none", a, err)
	}
	sys.s.OAuthGitHubClientID = "dash"
	if _, err := sys.newAuth(); err == nil || !strings.Contains(err.Error(), "--oauth-github-client-secret-file") {
		t.Errorf("newAuth without a secret = %v, want an error naming the flag", err)
	}
}
