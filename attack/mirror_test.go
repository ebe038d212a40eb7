package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/gitmirror"
)

const mirrorToken = "mirror-token-5c1d0e7b2a94f3"

// liveOf is a state database in which every task of the named
// repositories is live: the private repository too, as if turtles were
// testing it for another team at that moment.
type liveOf []string

func (l liveOf) Live(_ context.Context, key string) (bool, error) {
	for _, r := range l {
		if strings.HasPrefix(key, r+"@") {
			return true, nil
		}
	}
	return false, nil
}

// TestAttackGitMirror: bots fetch through the git mirror (the task's
// clone URL does not resolve), and a task's command, on the network the
// bot is on, tries to read a private repository through it: with the
// mirror's token from the bot's file or a process's environment, or
// without it, naming a task of the private repository.
func TestAttackGitMirror(t *testing.T) {
	attack(t, "git mirror: a task reads the mirror's token or another repository through the mirror")
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	repoDir := filepath.Join(base, "octo", "hello.git")
	privDir := filepath.Join(base, "octo", "private.git")
	os.MkdirAll(repoDir, 0o755)
	os.MkdirAll(privDir, 0o755)
	privSHA := e2e.GitRepo(t, privDir, map[string]string{"key.txt": "the crown jewels\n"})

	m, err := gitmirror.New(gitmirror.Config{
		Dir: t.TempDir(), Token: mirrorToken, Tasks: liveOf{"octo/hello", "octo/private"},
		Upstream:     func(name string) string { return "file://" + filepath.Join(base, name+".git") },
		FetchTimeout: time.Minute, MaxSize: 1 << 30, MaxRequest: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	tokenDir := t.TempDir()
	tokenFile := filepath.Join(tokenDir, "git-mirror-token")
	os.WriteFile(tokenFile, []byte(mirrorToken+"\n"), 0o600)

	loot := `set +e
echo "== token file"; cat TOKENFILE 2>&1; ls -la TOKENDIR 2>&1
echo "== environments"; for p in /proc/[0-9]*; do tr '\0' '\n' < $p/environ; done 2>/dev/null | grep -i -e bearer -e GIT_CONFIG
echo "== checkout config"; cat .git/config
echo "== private, naming its task"
git -c http.extraHeader="Turtles-Task: octo/private@PRIVSHA:loot" clone -q MIRROR/octo/private.git p1 2>&1; cat p1/key.txt 2>&1
git -c http.extraHeader="Authorization: Bearer a-guessed-token-0000" -c http.extraHeader="Turtles-Task: octo/private@PRIVSHA:loot" clone -q MIRROR/octo/private.git p2 2>&1; cat p2/key.txt 2>&1
echo "== own repository, naming its task"
git -c http.extraHeader="Turtles-Task: $TURTLES_REPO@$TURTLES_SHA:$TURTLES_CONTEXT" ls-remote MIRROR/octo/hello.git 2>&1
echo done looting`
	loot = strings.NewReplacer("TOKENFILE", tokenFile, "TOKENDIR", tokenDir, "PRIVSHA", privSHA, "MIRROR", srv.URL).Replace(loot)
	matrix := "contexts:\n  - name: loot\n    command: |\n" + indent(loot, "      ") + "\n"
	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": matrix})

	s := e2e.Serve(t, gh, t.TempDir(), "--git-mirror", srv.URL, "--git-mirror-token-file", tokenFile, "--sandbox", "required")
	// A push by a maintainer: trusted work, isolated all the same. The
	// clone URL does not resolve: only the mirror has the commit.
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"full_name": "octo/hello", "clone_url": "https://forge.invalid/octo/hello.git"}})
	if code, out := s.Webhook("push", "push-1", body, e2e.Sign(body)); code/100 != 2 {
		t.Fatalf("push: %d %s", code, out)
	}
	st := e2e.WaitFinal(t, gh, "octo/hello", sha, 90*time.Second, "loot")["loot"]
	resp, b := s.Get(fmt.Sprintf("/logs/octo/hello/%s/loot/1/log", sha))
	log := string(b)
	if resp.StatusCode != 200 || !strings.Contains(log, "done looting") {
		t.Fatalf("the attack did not run (status %+v, log %d):\n%s\n%s", st, resp.StatusCode, log, s.Logs.String())
	}
	if st.State != "success" {
		t.Errorf("status %+v: the checkout through the mirror did not work", st)
	}
	if !strings.Contains(log, srv.URL+"/octo/hello.git") {
		t.Errorf("the checkout's origin is not the mirror")
	}
	for what, v := range map[string]string{"the mirror's token": mirrorToken, "the private repository": "crown jewels",
		"its own repository's refs without the token": "\trefs/heads/"} {
		if strings.Contains(log, v) {
			t.Errorf("the task's command read %s", what)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}
