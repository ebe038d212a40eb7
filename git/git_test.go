package git

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles"
)

// testRepo is a real repository with two commits on main and one commit
// that no branch points at.
type testRepo struct {
	dir              string
	first, tip, lost string
}

// gitIn returns a function that runs git in dir and returns its output.
func gitIn(t *testing.T, dir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(env(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

func newTestRepo(t *testing.T) testRepo {
	t.Helper()
	dir := t.TempDir()
	g := gitIn(t, dir)
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g("init", "-q", "-b", "main")
	write("a.txt", "one\n")
	g("add", "a.txt")
	g("commit", "-q", "-m", "one")
	first := g("rev-parse", "HEAD")
	write("a.txt", "two\n")
	g("commit", "-q", "-am", "two")
	tip := g("rev-parse", "HEAD")
	g("checkout", "-q", "--detach")
	write("a.txt", "lost\n")
	g("commit", "-q", "-am", "lost")
	lost := g("rev-parse", "HEAD")
	g("checkout", "-q", "main")
	return testRepo{dir: dir, first: first, tip: tip, lost: lost}
}

func TestCheckout(t *testing.T) {
	repo := newTestRepo(t)
	tests := []struct {
		name     string
		url      string
		sha      string
		oldProto bool // server refuses unadvertised commits
		want     string
		wantErr  string // in the error's text, for the log
		reason   string // the Fault's reason for people; "" for a plain error
	}{
		{name: "tip", url: "file://" + repo.dir, sha: repo.tip, want: "two\n"},
		{name: "older commit", url: "file://" + repo.dir, sha: repo.first, want: "one\n"},
		{name: "absolute path", url: repo.dir, sha: repo.first, want: "one\n"},
		{name: "old protocol falls back", url: "file://" + repo.dir, sha: repo.first, oldProto: true, want: "one\n"},
		{name: "old protocol unreachable commit", url: "file://" + repo.dir, sha: repo.lost, oldProto: true,
			wantErr: "commit not found in any branch", reason: "the repository has no commit " + repo.lost[:12] + " in any branch or pull request"},
		{name: "unknown commit", url: "file://" + repo.dir, sha: strings.Repeat("1", 40),
			wantErr: "not our ref", reason: "the repository has no commit 111111111111 in any branch or pull request"},
		{name: "missing repo", url: "file://" + filepath.Join(repo.dir, "nope"), sha: repo.tip,
			wantErr: "does not appear to be a git repository", reason: "the repository could not be fetched"},
		{name: "short sha", url: "file://" + repo.dir, sha: repo.tip[:12], wantErr: "bad commit SHA"},
		{name: "option sha", url: "file://" + repo.dir, sha: "--upload-pack=touch", wantErr: "bad commit SHA"},
		{name: "option url", url: "--upload-pack=touch /tmp/x", sha: repo.tip, wantErr: "starts with '-'"},
		{name: "ext transport", url: "ext::sh -c touch% /tmp/pwned", sha: repo.tip, wantErr: "not allowed"},
		{name: "fd transport", url: "fd::3", sha: repo.tip, wantErr: "not allowed"},
		{name: "relative path", url: "some/dir", sha: repo.tip, wantErr: "bad clone URL"},
		{name: "other scheme", url: "ftp://example.com/r.git", sha: repo.tip, wantErr: "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.oldProto {
				extraConfig = []string{"protocol.version=0"}
				t.Cleanup(func() { extraConfig = nil })
			}
			dir := filepath.Join(t.TempDir(), "src")
			var log bytes.Buffer
			err := Checkout(context.Background(), dir, tt.url, tt.sha, &log)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Checkout error = %v, want one containing %q\nlog:\n%s", err, tt.wantErr, log.String())
				}
				f, ok := turtles.FaultOf(err)
				switch {
				case tt.reason == "" && ok:
					t.Errorf("Checkout error %v is a Fault %+v; want a plain error for bad arguments", err, f)
				case tt.reason != "" && (!ok || f.Class != turtles.Infra || f.Reason != tt.reason):
					t.Errorf("Checkout error %v: Fault %+v, %v; want class infra, reason %q", err, f, ok, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Checkout: %v\nlog:\n%s", err, log.String())
			}
			got, err := os.ReadFile(filepath.Join(dir, "a.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("a.txt = %q, want %q", got, tt.want)
			}
			head, err := ResolveRev(context.Background(), dir, "HEAD")
			if err != nil {
				t.Fatal(err)
			}
			if head != tt.sha {
				t.Errorf("HEAD = %s, want %s", head, tt.sha)
			}
			if _, err := os.Stat(filepath.Join(dir, ".git", "hooks", "pre-commit.sample")); err == nil {
				t.Errorf("checkout has sample hooks; want an empty template")
			}
		})
	}
}

func TestCheckoutCancelled(t *testing.T) {
	repo := newTestRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Checkout(ctx, t.TempDir(), "file://"+repo.dir, repo.tip, nil)
	if f, ok := turtles.FaultOf(err); !ok || f.Class != turtles.Infra {
		t.Fatalf("Checkout with cancelled context = %v, want an infra Fault", err)
	}
}

func TestResolveRev(t *testing.T) {
	repo := newTestRepo(t)
	tests := []struct {
		name    string
		rev     string
		want    string
		wantErr bool
	}{
		{name: "head", rev: "HEAD", want: repo.tip},
		{name: "branch", rev: "main", want: repo.tip},
		{name: "parent", rev: "HEAD~1", want: repo.first},
		{name: "unknown", rev: "nope", wantErr: true},
		{name: "option", rev: "--all", wantErr: true},
		{name: "empty", rev: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveRev(context.Background(), repo.dir, tt.rev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ResolveRev(%q) error = %v, want error: %v", tt.rev, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ResolveRev(%q) = %q, want %q", tt.rev, got, tt.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "token", in: "https://x-access-token:s3cret@github.com/o/r.git", want: "https://x-access-token:xxxxx@github.com/o/r.git"},
		{name: "user only", in: "ssh://git@github.com/o/r.git", want: "ssh://git@github.com/o/r.git"},
		{name: "plain", in: "https://github.com/o/r.git", want: "https://github.com/o/r.git"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestChangedPaths(t *testing.T) {
	dir := t.TempDir()
	g := gitIn(t, dir)
	write := func(files map[string]string) {
		t.Helper()
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		g("add", "-A")
	}
	g("init", "-q", "-b", "main")
	write(map[string]string{"README": "r\n", "docs/a.md": "a\n", "old.txt": "o\n"})
	g("commit", "-q", "-m", "base")
	before := g("rev-parse", "HEAD")
	g("checkout", "-q", "-b", "feature")
	g("mv", "old.txt", "new.txt")
	write(map[string]string{"src/main.go": "package main\n", "docs/with space.md": "s\n"})
	g("commit", "-q", "-m", "feature")
	feature := g("rev-parse", "HEAD")
	g("checkout", "-q", "main")
	write(map[string]string{"README": "moved on\n"})
	g("commit", "-q", "-m", "main moves on")
	mainTip := g("rev-parse", "HEAD")

	tests := []struct {
		name       string
		base, head string
		want       []string
	}{
		{"pull request: its own changes, not the base's", mainTip, feature, []string{"docs/with space.md", "new.txt", "old.txt", "src/main.go"}},
		{"push: what it added", before, mainTip, []string{"README"}},
		{"same commit", feature, feature, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			if err := Checkout(context.Background(), src, "file://"+dir, tt.head, nil); err != nil {
				t.Fatal(err)
			}
			got, err := ChangedPaths(context.Background(), src, tt.base, tt.head, nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("ChangedPaths = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("unknown base", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "src")
		if err := Checkout(context.Background(), src, "file://"+dir, feature, nil); err != nil {
			t.Fatal(err)
		}
		_, err := ChangedPaths(context.Background(), src, strings.Repeat("2", 40), feature, nil)
		if f, ok := turtles.FaultOf(err); !ok || f.Class != turtles.Infra {
			t.Errorf("ChangedPaths with an unknown base = %v, want an infra Fault", err)
		}
		if _, err := ChangedPaths(context.Background(), src, "--output=/tmp/x", feature, nil); err == nil {
			t.Error("ChangedPaths accepted an option as base")
		}
	})
}

// Headers reach git as GIT_CONFIG_* variables, and a header that would
// let one value smuggle another (a newline) is refused without quoting
// it: it may hold a secret.
func TestRemoteEnv(t *testing.T) {
	env, err := Remote{URL: "https://m/o/r.git"}.Env()
	if err != nil || env != nil {
		t.Errorf("Env() without headers = %q, %v; want none", env, err)
	}
	env, err = Remote{URL: "https://m/o/r.git", Header: []string{"Authorization: Bearer s3cret", "Turtles-Task: o/r@x:y"}}.Env()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GIT_CONFIG_COUNT=3",
		"GIT_CONFIG_KEY_0=http.followRedirects", "GIT_CONFIG_VALUE_0=false",
		"GIT_CONFIG_KEY_1=http.extraHeader", "GIT_CONFIG_VALUE_1=Authorization: Bearer s3cret",
		"GIT_CONFIG_KEY_2=http.extraHeader", "GIT_CONFIG_VALUE_2=Turtles-Task: o/r@x:y"}
	if strings.Join(env, "\n") != strings.Join(want, "\n") {
		t.Errorf("Env() = %q, want %q", env, want)
	}
	for _, h := range []string{"Authorization: Bearer s3cret\nX-Evil: 1", "no colon s3cret", ": s3cret", " Name: s3cret", "Name: s3\x00cret"} {
		_, err := Remote{Header: []string{h}}.Env()
		if err == nil {
			t.Errorf("Env() with header %q succeeded", h)
		} else if strings.Contains(err.Error(), "s3") {
			t.Errorf("Env() error %q quotes the header", err)
		}
	}
	if err := (Remote{URL: "https://m/o/r.git", Header: []string{"bad"}}).Checkout(context.Background(), t.TempDir(), strings.Repeat("a", 40), nil); err == nil {
		t.Error("Checkout with a bad header succeeded")
	}
}
