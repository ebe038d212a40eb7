// Package git checks out commits with the git command-line tool. It is the
// one place turtles runs git; bots and `turtles run` import it.
//
// Every git it starts is isolated from the machine it runs on: no system or
// global configuration, no credential helpers, no terminal prompts, no hooks
// and only the transports that cannot run arbitrary commands, because the
// URLs and commits come from webhooks.
package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/syncio"
)

// allowedSchemes are the transports Checkout fetches over. ext:: and fd::
// would let a clone URL run commands on the bot.
var allowedSchemes = map[string]bool{"https": true, "http": true, "file": true, "ssh": true, "git": true}

// allowProtocol is GIT_ALLOW_PROTOCOL: git itself refuses anything else,
// including in redirects and submodules.
const allowProtocol = "https:http:file:ssh:git"

// extraConfig is added to every git command as -c options. Tests set it to
// force the old wire protocol, whose servers refuse fetching by SHA.
var extraConfig []string

// Remote is a repository to fetch from, and what to send it.
type Remote struct {
	// URL is anything CheckURL accepts.
	URL string
	// Header lists extra HTTP headers, "Name: value", sent with every
	// request to an http(s) URL: a git mirror's bearer token and the task
	// it serves (package gitmirror). They reach git through its
	// environment (GIT_CONFIG_*), never its command line, which other
	// processes may read, nor the checkout's .git/config, which the
	// task's command can read. Redirects are not followed when there
	// are headers, so that they reach no other server.
	Header []string
}

// Checkout makes dir a checkout of commit sha from cloneURL: see
// Remote.Checkout.
func Checkout(ctx context.Context, dir, cloneURL, sha string, log io.Writer) error {
	return Remote{URL: cloneURL}.Checkout(ctx, dir, sha, log)
}

// Checkout makes dir a checkout of commit sha from r: git init, a
// shallow fetch of sha (falling back to fetching all branches, GitHub pull
// request heads and GitLab merge request heads when the server refuses
// unadvertised commits), and a detached checkout. git's output goes to log. dir is created if needed; it
// should be empty.
//
// Bad arguments are plain errors. A repository that cannot be fetched or a
// commit it does not have is a turtles.Fault of class Infra: its reason
// says what failed in words for people, its cause (the error's text, for
// the log) includes git's own message.
func (r Remote) Checkout(ctx context.Context, dir, sha string, log io.Writer) error {
	cloneURL := r.URL
	if err := CheckSHA(sha); err != nil {
		return err
	}
	if err := CheckURL(cloneURL); err != nil {
		return err
	}
	fetchEnv, err := r.Env()
	if err != nil {
		return err
	}
	if log == nil {
		log = io.Discard
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return turtles.InfraFault(reasonPrepare, fmt.Errorf("create checkout directory: %w", err))
	}
	safeURL := Redact(cloneURL)
	// An empty template directory: no sample hooks, nothing from the system.
	if err := run(ctx, dir, nil, log, "init", "-q", "--template=", "."); err != nil {
		return turtles.InfraFault(reasonPrepare, fmt.Errorf("git init: %w", err))
	}
	if err := run(ctx, dir, nil, log, "remote", "add", "origin", cloneURL); err != nil {
		return turtles.InfraFault(reasonPrepare, fmt.Errorf("git remote add: %w", err))
	}
	fetchErr := run(ctx, dir, fetchEnv, log, "fetch", "--depth", "1", "--no-tags", "origin", sha)
	if fetchErr != nil {
		if ctx.Err() != nil {
			return turtles.InfraFault("the checkout was stopped before the commit was fetched",
				fmt.Errorf("fetch %s from %s: %w", sha, safeURL, fetchErr))
		}
		// Old servers, and new ones configured so, refuse commits they do
		// not advertise. Fetch what they do advertise and look for it there.
		fmt.Fprintf(log, "turtles: fetching %s by commit failed; fetching all branches and pull requests\n", sha)
		err := run(ctx, dir, fetchEnv, log, "fetch", "--no-tags", "origin",
			"+refs/heads/*:refs/remotes/origin/*", "+refs/pull/*/head:refs/remotes/origin/pull/*",
			"+refs/merge-requests/*/head:refs/remotes/origin/merge-requests/*")
		if err != nil {
			return turtles.InfraFault("the repository could not be fetched",
				fmt.Errorf("fetch %s from %s: %w", sha, safeURL, err))
		}
		if err := run(ctx, dir, nil, io.Discard, "cat-file", "-e", sha+"^{commit}"); err != nil {
			return turtles.InfraFault("the repository has no commit "+sha[:12]+" in any branch or pull request",
				fmt.Errorf("fetch %s from %s: commit not found in any branch or pull request: %w", sha, safeURL, fetchErr))
		}
	}
	if err := run(ctx, dir, nil, log, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha); err != nil {
		return turtles.InfraFault("git could not check out the commit", fmt.Errorf("check out %s: %w", sha, err))
	}
	return nil
}

// Env is the environment that gives git r's headers: GIT_CONFIG_COUNT
// and its keys and values, none without headers. An error says a header
// is malformed, quoting none of it (it may be a secret).
func (r Remote) Env() ([]string, error) {
	if len(r.Header) == 0 {
		return nil, nil
	}
	kv := [][2]string{{"http.followRedirects", "false"}}
	for _, h := range r.Header {
		name, _, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.TrimSpace(name) != name || strings.ContainsAny(h, "\x00\r\n") {
			// The value may be a secret: name none of it.
			return nil, fmt.Errorf("bad HTTP header for git: want \"Name: value\" on one line")
		}
		kv = append(kv, [2]string{"http.extraHeader", h})
	}
	env := []string{"GIT_CONFIG_COUNT=" + strconv.Itoa(len(kv))}
	for i, p := range kv {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, p[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, p[1]))
	}
	return env, nil
}

// reasonPrepare is the reason of a checkout that failed before git talked
// to the repository: a local problem of the bot.
const reasonPrepare = "the bot could not prepare a directory for the checkout"

// historyDepth is how much history ChangedPaths fetches to find where a
// change branched off.
const historyDepth = 64

// ChangedPaths returns the paths that commit head changes relative to
// base, in the checkout at dir made by Checkout: the paths changed since
// the two commits' merge base when it is within the last historyDepth
// commits of both (a pull request's own changes, or what a push added),
// else the difference between the two trees, which also names the paths
// the base changed since: more contexts run, never fewer. Renames count as
// a deletion and an addition.
func ChangedPaths(ctx context.Context, dir, base, head string, log io.Writer) ([]string, error) {
	return Remote{}.ChangedPaths(ctx, dir, base, head, log)
}

// ChangedPaths is the package's ChangedPaths, fetching from the checkout's
// origin with r's headers (r.URL is not used: origin is where the
// checkout came from).
func (r Remote) ChangedPaths(ctx context.Context, dir, base, head string, log io.Writer) ([]string, error) {
	fetchEnv, err := r.Env()
	if err != nil {
		return nil, err
	}
	for _, sha := range []string{base, head} {
		if err := CheckSHA(sha); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = io.Discard
	}
	if err := run(ctx, dir, fetchEnv, log, "fetch", "-q", "--depth", strconv.Itoa(historyDepth), "--no-tags", "origin", base, head); err != nil {
		return nil, turtles.InfraFault("the commit to compare with could not be fetched", fmt.Errorf("fetch %s to compare with: %w", base, err))
	}
	from := base
	var mb bytes.Buffer
	cmd := command(ctx, dir, nil, "merge-base", base, head)
	cmd.Stdout = &mb
	if cmd.Run() == nil && CheckSHA(strings.TrimSpace(mb.String())) == nil {
		from = strings.TrimSpace(mb.String())
	}
	var out bytes.Buffer
	cmd = command(ctx, dir, nil, "diff", "--name-only", "--no-renames", "-z", from, head, "--")
	cmd.Stdout = &out
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return nil, &Error{Msg: stderr.message(), Err: err}
	}
	paths := []string{}
	for p := range strings.SplitSeq(out.String(), "\x00") {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// ResolveRev returns the commit SHA that rev (a branch, tag, "HEAD", ...)
// names in the local repository at dir.
func ResolveRev(ctx context.Context, dir, rev string) (string, error) {
	if rev == "" || strings.HasPrefix(rev, "-") {
		return "", fmt.Errorf("bad revision %q", rev)
	}
	var out bytes.Buffer
	cmd := command(ctx, dir, nil, "rev-parse", "--verify", "--end-of-options", rev+"^{commit}")
	cmd.Stdout = &out
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("resolve %q in %s: %s: %w", rev, dir, stderr.message(), err)
	}
	sha := strings.TrimSpace(out.String())
	if err := CheckSHA(sha); err != nil {
		return "", fmt.Errorf("resolve %q in %s: %w", rev, dir, err)
	}
	return sha, nil
}

// CheckSHA refuses anything but a full commit ID (SHA-1 or SHA-256), so
// that a SHA can never be taken for an option or a ref name.
func CheckSHA(sha string) error {
	if !turtles.IsSHA(sha) {
		return fmt.Errorf("bad commit SHA %q: want 40 lowercase hex digits", sha)
	}
	return nil
}

// CheckURL refuses clone URLs that git could take for an option or that use
// a transport other than https, http, file, ssh or git (such as ext::,
// which runs a command). Plain absolute paths are allowed.
func CheckURL(cloneURL string) error {
	switch {
	case cloneURL == "":
		return errors.New("empty clone URL")
	case strings.HasPrefix(cloneURL, "-"):
		return fmt.Errorf("bad clone URL %q: starts with '-'", Redact(cloneURL))
	case strings.ContainsAny(cloneURL, "\x00\n\r"):
		return fmt.Errorf("bad clone URL %q: control characters", Redact(cloneURL))
	case strings.Contains(cloneURL, "::"):
		return fmt.Errorf("bad clone URL %q: remote helpers (::) are not allowed", Redact(cloneURL))
	case filepath.IsAbs(cloneURL):
		return nil
	}
	u, err := url.Parse(cloneURL)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("bad clone URL %q: want https://, http://, file://, ssh://, git:// or an absolute path", Redact(cloneURL))
	}
	if !allowedSchemes[strings.ToLower(u.Scheme)] {
		return fmt.Errorf("bad clone URL %q: transport %q not allowed", Redact(cloneURL), u.Scheme)
	}
	return nil
}

// Redact removes a password or token from a URL, for logs and errors.
func Redact(cloneURL string) string {
	u, err := url.Parse(cloneURL)
	if err != nil || u.User == nil {
		return cloneURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Error is a git command that failed.
type Error struct {
	// Msg is git's own message, for the log: its first "fatal:" or
	// "error:" line.
	Msg string
	Err error // usually an *exec.ExitError
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs one git command in dir, isolated as every git of turtles is
// (see the package doc), with extra environment env (GIT_CONFIG_* for
// instance), streaming its output to log (nil discards). A failure is an
// *Error with git's own message. Package gitmirror runs its git through
// it.
func Run(ctx context.Context, dir string, env []string, log io.Writer, args ...string) error {
	if log == nil {
		log = io.Discard
	}
	return run(ctx, dir, env, log, args...)
}

// Environ is the environment of every git turtles runs (see the package
// doc), for a git started by another program, such as git http-backend
// under net/http/cgi.
func Environ() []string { return env() }

// run runs one git command in dir, streaming its output to log and keeping
// the end of stderr for the error.
func run(ctx context.Context, dir string, extraEnv []string, log io.Writer, args ...string) error {
	cmd := command(ctx, dir, extraEnv, args...)
	stderr := &tailBuffer{max: 4096}
	// exec copies stdout and stderr in two goroutines; log may not be safe
	// for concurrent writes (a bytes.Buffer is not).
	out := syncio.NewWriter(log)
	cmd.Stdout = out
	cmd.Stderr = io.MultiWriter(out, stderr)
	if err := cmd.Run(); err != nil {
		return &Error{Msg: stderr.message(), Err: err}
	}
	return nil
}

func command(ctx context.Context, dir string, extraEnv []string, args ...string) *exec.Cmd {
	base := []string{
		"-c", "credential.helper=",
		"-c", "core.hooksPath=/dev/null",
		"-c", "core.fsmonitor=false",
	}
	for _, c := range extraConfig {
		base = append(base, "-c", c)
	}
	cmd := exec.CommandContext(ctx, "git", append(base, args...)...)
	cmd.Dir = dir
	cmd.Env = append(env(), extraEnv...)
	// git's helpers (remote-https, ssh) may outlive a killed git and hold
	// its output open; do not wait for them forever.
	cmd.WaitDelay = 5 * time.Second
	// A bot killed with SIGKILL cannot stop its git: without this, git
	// goes on writing into a workspace the next bot (or a cleanup) is
	// removing. In its own process group, a cancelled git is killed with
	// its helpers: a remote-https left behind would hold its connection
	// to a server that does not answer for as long as the server likes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// env is the environment of every git: nothing from the bot's GIT_*
// variables (GIT_DIR would point git elsewhere), English messages, and
// only what transports need from the machine.
func env() []string {
	e := []string{
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_ALLOW_PROTOCOL=" + allowProtocol,
		"GIT_ASKPASS=true",
		"SSH_ASKPASS=true",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
		"LC_ALL=C",
	}
	for _, k := range []string{"PATH", "HOME", "SSH_AUTH_SOCK", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			e = append(e, k+"="+v)
		}
	}
	return e
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// message is git's first "fatal:" or "error:" line (the cause; later ones
// are consequences), or its last line.
func (t *tailBuffer) message() string {
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "fatal:") || strings.HasPrefix(l, "error:") {
			return l
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}
