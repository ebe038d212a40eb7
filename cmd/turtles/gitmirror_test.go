package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/gitmirror/gitmirrortest"
)

// turtles git-mirror as wired here: the state database says which tasks
// are live, the forge's token (--github-token-file) fetches, and a bot's
// client (--git-mirror, --git-mirror-token-file) checks a commit out.
func TestGitMirrorCommand(t *testing.T) {
	forge := gitmirrortest.NewForge(t)
	sha := forge.Push("octo/hello", "a.txt", "one\n")
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := defaults()
	s.DataDir = dir
	s.Listen = "127.0.0.1:0"
	s.LogLevel = "error"
	s.CloneBaseURL = forge.Server.URL + "/"
	s.GitHubTokenFile = write("github-token", gitmirrortest.Token+"\n")
	s.GitMirrorTokenFile = write("mirror-token", "mirror-token-0123456789abcdef\n")
	s.fill()
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := openStateDB(s, newLogger(s, os.Stderr))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	task := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Context: "test", Pool: turtles.DefaultPool, Attempt: 1,
		Repo: turtles.Repo{Name: "octo/hello", CloneURL: "https://forge.invalid/octo/hello.git"}, SHA: sha}

	serving, stop := context.WithCancel(ctx)
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- runGitMirror(serving, s, func(a string) { addr <- a }) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("git-mirror: %v", err)
		}
	}()
	var a string
	select {
	case a = <-addr:
	case err := <-done:
		t.Fatalf("git-mirror did not start: %v", err)
	}

	bs := s
	bs.GitMirror = "http://" + a
	client, err := gitMirrorClient(bs)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := client.Remote(task)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Checkout(ctx, t.TempDir(), sha, nil); err == nil {
		t.Fatal("checkout of a task that is not live succeeded")
	}
	if ok, _, err := db.Reserve(ctx, task.Key(), "token-1"); err != nil || !ok {
		t.Fatalf("Reserve: %v, %v", ok, err)
	}
	out := t.TempDir()
	if err := remote.Checkout(ctx, out, sha, nil); err != nil {
		t.Fatalf("checkout of a live task: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "a.txt")); err != nil || string(b) != "one\n" {
		t.Errorf("a.txt = %q, %v", b, err)
	}
	// The task's final event frees its key: the repository is no longer
	// served.
	if _, err := db.Free(ctx, task.Key(), "token-1"); err != nil {
		t.Fatal(err)
	}
	if err := remote.Checkout(ctx, t.TempDir(), sha, nil); err == nil {
		t.Error("checkout after the task ended succeeded")
	}
}

// Tasks never see the mirror's token file or its mirrors.
func TestGitMirrorFilesHidden(t *testing.T) {
	s := defaults()
	s.GitMirrorTokenFile = "/etc/turtles/git-mirror-token"
	s.GitMirrorDir = "/var/lib/turtles/git-mirror"
	hidden := s.hidden()
	for _, p := range []string{s.GitMirrorTokenFile, s.GitMirrorDir} {
		if !slices.Contains(hidden, p) {
			t.Errorf("hidden() = %q lacks %s", hidden, p)
		}
	}
}
