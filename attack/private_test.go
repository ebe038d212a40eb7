package attack

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/e2e"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
)

// A private repository's work on a server started with --private, under
// attack by people the forge would not show the repository to: someone
// not signed in, and a signed-in stranger. Both know every address there
// is, the log page's from the commit status among them. A reader of the
// repository, who must see it all, is the barrier: without it a server
// that showed nobody anything would pass.

const (
	privateRepo = "octo/hidden"
	// privateMark is in the context's name and in its log: wherever the
	// task shows, it shows.
	privateMark = "zq-hidden-mark"
)

func TestAttackPrivate(t *testing.T) {
	attack(t, "private: someone signed out, or signed in without access, reads a private repository's tasks and logs on a --private server")
	gh := githubtest.NewServer(t, e2e.Token)
	base := t.TempDir()
	repoDir := filepath.Join(base, "octo", "hidden.git")
	os.MkdirAll(repoDir, 0o755)
	matrix := "contexts:\n  - name: " + privateMark + "\n    command: echo " + privateMark + "-in-the-log\n"
	sha := e2e.GitRepo(t, repoDir, map[string]string{".turtles.yaml": matrix})
	gh.SetFile(privateRepo, sha, ".turtles.yaml", []byte(matrix))
	gh.SetPrivate(privateRepo)
	gh.SetPermission(privateRepo, "reader", "read")
	creds := t.TempDir()
	secretFile, keyFile := filepath.Join(creds, "oauth-secret"), filepath.Join(creds, "session-key")
	os.WriteFile(secretFile, []byte("dash-secret\n"), 0o600)
	os.WriteFile(keyFile, []byte(sessionKey+"\n"), 0o600)
	s := e2e.Serve(t, gh, t.TempDir(), "--private", "--oauth-github-client-id", "dash", "--oauth-github-client-secret-file", secretFile,
		"--session-key-file", keyFile, "--clone-base-url", "file://"+base)
	gh.OAuth().AddClient("dash", "dash-secret", s.URL+"/oauth/github/callback")

	push := e2e.PushPayload(privateRepo, repoDir, sha)
	if code, out := s.Webhook("push", "push-1", push, e2e.Sign(push)); code/100 != 2 {
		t.Fatalf("push: %d %s", code, out)
	}
	st := e2e.WaitFinal(t, gh, privateRepo, sha, 60*time.Second, privateMark)[privateMark]
	if st.State != "success" || st.TargetURL == "" {
		t.Fatalf("the private task: %+v, want success with a log page", st)
	}
	logPage, err := url.Parse(st.TargetURL)
	if err != nil {
		t.Fatal(err)
	}

	// Every address of the server that lists or shows tasks, tests,
	// issues, bots or logs, and those the status and the pages link to.
	paths := []string{
		"/", "/now", "/api/v1/now", "/history", "/api/v1/tasks",
		"/history?repo=" + privateRepo, "/api/v1/tasks?repo=" + privateRepo, "/api/v1/tasks?sha=" + sha,
		"/commits/" + privateRepo + "/" + sha, "/api/v1/commits/" + privateRepo + "/" + sha,
		"/tests", "/api/v1/tests", "/api/v1/tests?repo=" + privateRepo,
		"/tests/history?repo=" + privateRepo + "&context=" + privateMark + "&test=" + privateMark,
		"/api/v1/tests/history?repo=" + privateRepo + "&context=" + privateMark + "&test=" + privateMark,
		"/api/v1/known-issues?repo=" + privateRepo,
		"/api/v1/bots", "/api/v1/deadletters", "/metrics",
		logPage.RequestURI(),
	}
	reader := newPrivateBrowser(t, s, gh, "reader")
	// The barrier: the reader finds the task's own addresses and its log.
	seen := reader.crawl(t, paths)
	if !strings.Contains(seen, privateMark+"-in-the-log") {
		t.Fatalf("a reader of %s did not find its log on %d pages; the attack below proves nothing", privateRepo, len(paths))
	}
	if !slices.ContainsFunc(reader.links, func(l string) bool { return strings.HasPrefix(l, "/logs/") }) {
		t.Fatalf("a reader of %s found no link to a log among %q", privateRepo, reader.links)
	}
	paths = append(paths, reader.links...)

	// An attacker learns nothing the request did not say already, and
	// the server answers as it would for a repository that does not
	// exist: a name in the address is echoed in both, say in a search
	// form; no status, log line, context or other commit shows.
	absent := strings.NewReplacer(privateRepo, "octo/absent", sha, strings.Repeat("0", len(sha)), privateMark, "zq-absent-mark")
	for _, who := range []string{"", "mallory"} {
		b := newPrivateBrowser(t, s, gh, who)
		for _, p := range paths {
			code, body := b.get(t, p)
			for _, secret := range []string{privateMark + "-in-the-log", privateRepo, sha, privateMark} {
				if !strings.Contains(p, secret) && strings.Contains(body, secret) {
					t.Errorf("%s: GET %s answered %d with %q:\n%.400s", b.name, p, code, secret, body)
				}
			}
			if twin := absent.Replace(p); twin != p {
				if tc, _ := b.get(t, twin); tc != code {
					t.Errorf("%s: GET %s answered %d, but %d for a repository that does not exist (%s): the private one shows it exists", b.name, p, code, tc, twin)
				}
			}
		}
	}
}

// privateBrowser keeps a session (none for who ""), and collects the
// server's own links it was shown.
type privateBrowser struct {
	s     *e2e.Server
	name  string
	c     *http.Client
	links []string
}

func newPrivateBrowser(t *testing.T, s *e2e.Server, gh *githubtest.Server, who string) *privateBrowser {
	w := &loginWorld{gh: gh, s: s}
	b := w.browser()
	p := &privateBrowser{s: s, name: "someone signed out", c: &http.Client{Jar: b.jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if who != "" {
		b.signIn(t, who, "/")
		p.name = "signed-in " + who
	}
	return p
}

func (p *privateBrowser) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := p.c.Get(p.s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

// crawl gets paths and the links of theirs that name the task's pages
// and logs, and returns everything it read.
func (p *privateBrowser) crawl(t *testing.T, paths []string) string {
	var all strings.Builder
	for _, path := range paths {
		_, body := p.get(t, path)
		all.WriteString(body)
		for _, l := range hrefs(body) {
			if strings.HasPrefix(l, "/tasks/") || strings.HasPrefix(l, "/logs/") || strings.HasPrefix(l, "/commits/") {
				p.links = append(p.links, l)
				_, b := p.get(t, l)
				all.WriteString(b)
			}
		}
	}
	return all.String()
}

// hrefs returns the values of the href attributes in an HTML page.
func hrefs(page string) []string {
	var out []string
	for _, part := range strings.Split(page, `href="`)[1:] {
		if end := strings.IndexByte(part, '"'); end > 0 {
			out = append(out, strings.ReplaceAll(part[:end], "&amp;", "&"))
		}
	}
	return out
}
