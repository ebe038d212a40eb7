package gitmirror

// Attacks on the mirror, by someone who reaches it: a task's code on a
// bot (which may reach whatever the bot reaches, but cannot read the
// bot's token file), or anyone else on the cluster's network. Each must
// learn nothing of a repository without the token and a live task of it.

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/git"
	"github.com/turtles-ci/turtles/gitmirror/gitmirrortest"
)

func TestAttacks(t *testing.T) {
	f := gitmirrortest.NewForge(t)
	m := newTestMirror(t, f)
	sha := f.Push("octo/hello", "a.txt", "one\n")
	secret := f.Push("octo/private", "key.txt", "the crown jewels\n")
	task := m.tasks.add("octo/hello", sha)
	// The mirror has a copy of octo/hello once a bot fetched it.
	if _, err := m.checkout(t, task); err != nil {
		t.Fatal(err)
	}
	fetches := f.Fetches.Load()
	refs := "/octo/hello.git/info/refs?service=git-upload-pack"

	for _, tc := range []struct {
		name         string
		method, path string
		task, token  string
		want         int
	}{
		{"no token", "GET", refs, task.Key(), "", http.StatusUnauthorized},
		{"wrong token", "GET", refs, task.Key(), "mirror-secret-abcdef012345678X", http.StatusUnauthorized},
		{"token prefix", "GET", refs, task.Key(), mirrorToken[:16], http.StatusUnauthorized},
		{"no task", "GET", refs, "", mirrorToken, http.StatusForbidden},
		{"task of another repository", "GET", "/octo/private.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusForbidden},
		{"task that is not live", "GET", "/octo/private.git/info/refs?service=git-upload-pack", "octo/private@" + secret + ":test", mirrorToken, http.StatusNotFound},
		{"task key with a bad SHA", "GET", refs, "octo/hello@HEAD:test", mirrorToken, http.StatusForbidden},
		{"push", "POST", "/octo/hello.git/git-receive-pack", task.Key(), mirrorToken, http.StatusForbidden},
		{"push advertisement", "GET", "/octo/hello.git/info/refs?service=git-receive-pack", task.Key(), mirrorToken, http.StatusMethodNotAllowed},
		{"dumb protocol refs", "GET", "/octo/hello.git/info/refs", task.Key(), mirrorToken, http.StatusMethodNotAllowed},
		{"dumb protocol HEAD", "GET", "/octo/hello.git/HEAD", task.Key(), mirrorToken, http.StatusNotFound},
		{"dumb protocol config", "GET", "/octo/hello.git/config", task.Key(), mirrorToken, http.StatusNotFound},
		{"dumb protocol packs", "GET", "/octo/hello.git/objects/info/packs", task.Key(), mirrorToken, http.StatusNotFound},
		{"upload-pack by GET", "GET", "/octo/hello.git/git-upload-pack", task.Key(), mirrorToken, http.StatusMethodNotAllowed},
		{"traversal", "GET", "/octo/../../etc.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusNotFound},
		{"encoded traversal", "GET", "/octo/%2e%2e/hello.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusNotFound},
		{"encoded slash", "GET", "/octo%2f..%2fhello.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusNotFound},
		{"absolute", "GET", "//etc/passwd.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusNotFound},
		{"option as owner", "GET", "/--upload-pack=touch%20x/hello.git/info/refs?service=git-upload-pack", "--upload-pack=touch x/hello@" + sha + ":test", mirrorToken, http.StatusNotFound},
		{"one segment", "GET", "/hello.git/info/refs?service=git-upload-pack", "hello@" + sha + ":test", mirrorToken, http.StatusNotFound},
		{"nested .git", "GET", "/octo/hello.git/x.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusNotFound},
		{"newline in name", "GET", "/octo/hel%0alo.git/info/refs?service=git-upload-pack", task.Key(), mirrorToken, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.do(t, tc.method, tc.path, tc.task, tc.token); got != tc.want {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, got, tc.want)
			}
		})
	}
	// None of them reached the forge, and none made a directory.
	if n := f.Fetches.Load(); n != fetches {
		t.Errorf("the refused requests fetched from the forge %d times", n-fetches)
	}
	var dirs []string
	filepath.WalkDir(m.cfg.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasSuffix(p, ".git") {
			rel, _ := filepath.Rel(m.cfg.Dir, p)
			dirs = append(dirs, rel)
		}
		return nil
	})
	if len(dirs) != 1 || dirs[0] != "octo/hello.git" {
		t.Errorf("mirrors on disk = %q, want [octo/hello.git]", dirs)
	}
}

// git itself, pointed at the mirror the way a task's code would do it
// (no token, or a task of another repository), cannot clone.
func TestAttackWithGit(t *testing.T) {
	f := gitmirrortest.NewForge(t)
	m := newTestMirror(t, f)
	task := m.tasks.add("octo/hello", f.Push("octo/hello", "a.txt", "one\n"))
	private := f.Push("octo/private", "key.txt", "the crown jewels\n")
	for _, tc := range []struct {
		name   string
		remote git.Remote
	}{
		{"no headers", git.Remote{URL: m.srv.URL + "/octo/hello.git"}},
		{"task but no token", git.Remote{URL: m.srv.URL + "/octo/hello.git", Header: []string{TaskHeader + ": " + task.Key()}}},
		{"token but a task of another repository", git.Remote{URL: m.srv.URL + "/octo/private.git",
			Header: []string{"Authorization: Bearer " + mirrorToken, TaskHeader + ": " + task.Key()}}},
		{"token and a made-up task", git.Remote{URL: m.srv.URL + "/octo/private.git",
			Header: []string{"Authorization: Bearer " + mirrorToken, TaskHeader + ": octo/private@" + private + ":test"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sha := task.SHA
			if strings.Contains(tc.remote.URL, "private") {
				sha = private
			}
			var log bytes.Buffer
			err := tc.remote.Checkout(ctxT(t), t.TempDir(), sha, &log)
			if err == nil {
				t.Fatalf("checkout succeeded:\n%s", log.String())
			}
			if strings.Contains(log.String(), "crown jewels") {
				t.Errorf("the private repository leaked:\n%s", log.String())
			}
		})
	}
	// And a push through the mirror, with everything a bot has, fails.
	if _, err := m.checkout(t, task); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	g := gitmirrortest.GitIn(t, work)
	g("init", "-q")
	g("commit", "-q", "--allow-empty", "-m", "evil")
	r, _ := m.client().Remote(task)
	env, _ := r.Env()
	err := git.Run(ctxT(t), work, env, nil, "push", r.URL, "HEAD:refs/heads/main")
	var gerr *git.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("push through the mirror = %v, want a git error", err)
	}
}

// FuzzParsePath: whatever the path, an accepted name is a clean relative
// path under the data directory with no segment git could take for an
// option.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/octo/hello.git/info/refs", "/a/b/c.git/git-upload-pack", "/../x.git/info/refs",
		"/-x/y.git/info/refs", "/a/.git/info/refs", "/a/b.git.git/info/refs", "/.github/.github.git/info/refs", "/a//b.git/info/refs"} {
		f.Add(s)
	}
	root := "/srv/mirror"
	f.Fuzz(func(t *testing.T, p string) {
		name, endpoint, err := parsePath(p)
		if err != nil {
			if !errors.Is(err, ErrName) {
				t.Fatalf("parsePath(%q) error %v is not ErrName", p, err)
			}
			return
		}
		if endpoint != endpointRefs && endpoint != endpointUploadPack && endpoint != endpointPush {
			t.Fatalf("parsePath(%q) endpoint %q", p, endpoint)
		}
		if "/"+name+".git/"+endpoint != p {
			t.Fatalf("parsePath(%q) = %q, %q: not the path it came from", p, name, endpoint)
		}
		dir := filepath.Join(root, filepath.FromSlash(name)+".git")
		if rel, err := filepath.Rel(root, dir); err != nil || strings.HasPrefix(rel, "..") || filepath.Clean(dir) != dir {
			t.Fatalf("parsePath(%q) = %q: directory %s outside %s", p, name, dir, root)
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg[0] == '-' || strings.Contains(seg, "..") || strings.ContainsAny(seg, "\x00\n\r :\\") {
				t.Fatalf("parsePath(%q) accepted segment %q", p, seg)
			}
		}
	})
}

// FuzzParseTask: an accepted task header names the repository asked for
// and a commit ID, whatever else it holds.
func FuzzParseTask(f *testing.F) {
	f.Add("octo/hello", "octo/hello@"+strings.Repeat("a", 40)+":test")
	f.Add("octo/hello", "octo/hello@HEAD:test")
	f.Add("octo/hello", "octo/hello.evil@"+strings.Repeat("a", 40)+":x")
	f.Fuzz(func(t *testing.T, name, key string) {
		if CheckName(name) != nil {
			return
		}
		sha, err := parseTask(name, key)
		if err != nil {
			return
		}
		if !strings.HasPrefix(key, name+"@"+sha+":") || git.CheckSHA(sha) != nil {
			t.Fatalf("parseTask(%q, %q) = %q", name, key, sha)
		}
	})
}
