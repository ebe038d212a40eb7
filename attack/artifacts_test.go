package attack

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/store"
)

const (
	leakRepo = "octo/leaky"
	// leakSecret needs escaping in URLs and XML, and gives + and / in
	// base64.
	leakSecret = "e2e-deploy/t0ken+v@lue~Q&x"
)

// leakMatrix is a trusted context with a secret.
const leakMatrix = "contexts:\n  - name: leak\n    command: ./leak.sh\n    secrets: [DEPLOY_TOKEN]\n"

// leakScript prints the secret encoded every usual way, one form split
// across two writes, writes it into text and binary artifacts, and leaves
// active artifacts and markup for people to open.
const leakScript = `#!/bin/sh
T="$DEPLOY_TOKEN"
b64() { base64 | tr -d '\n'; }
leaks() {
	echo "plain: $T"
	echo "base64: $(printf %s "$T" | b64)"
	echo "bearer: $(printf 'Bearer %s' "$T" | b64)"
	echo "basic: $(printf 'user:%s' "$T" | b64)"
	echo "b64url: $(printf %s "$T" | b64 | tr '+/' '-_')"
	echo "query: $(printf %s "$T" | sed 's/%/%25/g; s/\//%2F/g; s/+/%2B/g; s/@/%40/g; s/~/%7E/g; s/&/%26/g')"
	echo "path: $(printf %s "$T" | sed 's/%/%25/g; s/\//%2F/g')"
	echo "hex: $(printf %s "$T" | od -An -tx1 | tr -d ' \n')"
	echo "HEX: $(printf %s "$T" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
}
leaks
printf 'split: %s' "$(printf %s "$T" | b64 | cut -c1-9)"; sleep 0.3; printf '%s\n' "$(printf %s "$T" | b64 | cut -c10-)"
echo 'ok 1 - <script>alert("test name")</script>'
echo '</pre><script>alert("log line")</script>'
A="$TURTLES_ARTIFACTS"
mkdir -p "$A"
leaks > "$A/report.txt"
cat > "$A/junit.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="deploy"><testcase name="push $(printf %s "$T" | b64)"><failure message="$(printf %s "$T" | od -An -tx1 | tr -d ' \n')">$(leaks | sed 's/&/\&amp;/g; s/</\&lt;/g')</failure></testcase></testsuite>
XML
printf '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>' > "$A/evil.svg"
printf '<html><script>alert(document.domain)</script></html>' > "$A/evil.html"
printf %s "$T" | gzip > "$A/token.gz"
`

// leakForms are the encodings the script prints, computed here apart from
// the scrubber: none may be stored or served.
func leakForms() map[string]string {
	hx := hex.EncodeToString([]byte(leakSecret))
	return map[string]string{
		"plain":      leakSecret,
		"base64":     strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(leakSecret)), "="),
		"bearer":     base64Inside("Bearer ", leakSecret),
		"basic":      base64Inside("user:", leakSecret),
		"base64 url": strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(leakSecret)), "="),
		"query":      url.QueryEscape(leakSecret),
		"path":       url.PathEscape(leakSecret),
		"hex":        hx,
		"HEX":        strings.ToUpper(hx),
		"XML":        strings.ReplaceAll(leakSecret, "&", "&amp;"),
	}
}

// base64Inside is the run of base64 characters of prefix+secret that hold
// bits of the secret only.
func base64Inside(prefix, secret string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(prefix + secret))
	lo, hi := 8*len(prefix), 8*(len(prefix)+len(secret))
	var b strings.Builder
	for c := range len(enc) {
		if 6*c >= lo && 6*c+6 <= hi {
			b.WriteByte(enc[c])
		}
	}
	return b.String()
}

// TestAttackArtifactLeaks: a trusted push whose task has a secret prints
// it in base64 (alone and inside longer texts, at two alignments), URL-
// escaped and hex, splits one form across writes, writes it into a JUnit
// report, a text file and a gzip file, and leaves an SVG and an HTML file
// with scripts, and a test name and log line with markup. At HEAD the
// encoded forms reached the log and junit.xml as they were, and the SVG
// ran its script on turtles' origin. One server run serves the three
// attacks, one per subtest.
func TestAttackArtifactLeaks(t *testing.T) {
	gh := githubtest.NewServer(t, e2e.Token)
	secrets := t.TempDir()
	os.WriteFile(filepath.Join(secrets, "DEPLOY_TOKEN"), []byte(leakSecret+"\n"), 0o600)
	repoDir := filepath.Join(t.TempDir(), "octo", "leaky.git")
	os.MkdirAll(repoDir, 0o755)
	s := e2e.Serve(t, gh, t.TempDir(), "--secrets-dir", secrets)

	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": leakMatrix, "leak.sh": leakScript})
	gh.SetFile(leakRepo, sha, ".turtles.yaml", []byte(leakMatrix))
	push, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"full_name": leakRepo, "clone_url": "file://" + repoDir}})
	if code, out := s.Webhook("push", "leak-1", push, e2e.Sign(push)); code != 200 {
		t.Fatalf("push: %d %s", code, out)
	}
	e2e.WaitFinal(t, gh, leakRepo, sha, 90*time.Second, "leak")
	id, attempt := "", 0
	for _, tk := range s.Tasks(sha) {
		if tk.Context == "leak" && len(tk.Attempts) > 0 {
			id, attempt = tk.ID, tk.Attempts[len(tk.Attempts)-1].Number
		}
	}
	if id == "" {
		t.Fatalf("no attempt of the leak context: %+v", s.Tasks(sha))
	}
	prefix := "/logs/" + store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: leakRepo}, SHA: sha, Context: "leak", Attempt: attempt})

	t.Run("no form of the secret is served", func(t *testing.T) {
		attack(t, "scrub: a trusted task prints its secret base64, URL-escaped, hex, split, and into junit.xml and a .gz")
		for _, path := range []string{prefix + store.LogName, prefix + "artifacts/report.txt", prefix + "artifacts/junit.xml",
			prefix + store.ResultName, "/tasks/" + id, "/api/v1/tasks/" + id} {
			resp, body := s.Get(path)
			if resp.StatusCode != 200 {
				t.Errorf("GET %s: %s", path, resp.Status)
				continue
			}
			for name, form := range leakForms() {
				if strings.Contains(string(body), form) {
					t.Errorf("GET %s: the secret's %s form %q is in it:\n%s", path, name, form, body)
				}
			}
			if strings.Contains(path, "artifacts/") && !strings.Contains(string(body), "***") {
				t.Errorf("GET %s: nothing masked; was the file written?\n%s", path, body)
			}
		}
		_, log := s.Get(prefix + store.LogName)
		for _, want := range []string{"base64: ***", "query: ***", "hex: ***", "HEX: ***", "split: ***", "artifact token.gz skipped"} {
			if !strings.Contains(string(log), want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		if _, res := s.Get(prefix + store.ResultName); !strings.Contains(string(res), `push ***"`) {
			t.Errorf("result.json lacks the JUnit test, its name masked:\n%s", res)
		}
		if resp, body := s.Get(prefix + "artifacts/token.gz"); resp.StatusCode != 404 {
			t.Errorf("GET token.gz: %s, %q; a binary artifact of a task with secrets must not be stored", resp.Status, body)
		}
	})

	t.Run("active artifacts are sandboxed downloads", func(t *testing.T) {
		attack(t, "artifacts: an .svg and an .html artifact with a script, opened from turtles' origin")
		for _, name := range []string{"evil.svg", "evil.html"} {
			resp, _ := s.Get(prefix + "artifacts/" + name)
			h := resp.Header
			csp := h.Get("Content-Security-Policy")
			if resp.StatusCode != 200 || !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") ||
				!strings.HasPrefix(h.Get("Content-Disposition"), "attachment") || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: %s, CSP %q, disposition %q, nosniff %q, type %q; want a sandboxed download",
					name, resp.Status, csp, h.Get("Content-Disposition"), h.Get("X-Content-Type-Options"), h.Get("Content-Type"))
			}
		}
		resp, _ := s.Get(prefix + store.LogName)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || resp.Header.Get("Content-Disposition") != "" {
			t.Errorf("raw log served as %q, %q; want plain text inline", ct, resp.Header.Get("Content-Disposition"))
		}
	})

	t.Run("markup from the task is text on the pages", func(t *testing.T) {
		attack(t, "pages: a test name and a log line that are <script> markup")
		for _, path := range []string{"/", "/tasks/" + id} {
			_, body := s.Get(path)
			if strings.Contains(string(body), "<script>alert(") || strings.Contains(string(body), "</pre><script") {
				t.Errorf("GET %s: the task's markup is in the page unescaped:\n%s", path, body)
			}
		}
		if _, body := s.Get("/tasks/" + id); !strings.Contains(string(body), "&lt;/pre&gt;&lt;script&gt;alert(") {
			t.Errorf("the task page does not show the log line as text:\n%s", body)
		}
	})
}
