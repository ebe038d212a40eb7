package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/git"
	"github.com/turtles-ci/turtles/gitmirror"
	"github.com/turtles-ci/turtles/sandbox"
)

// workspacePrefix names workspace directories under a work directory, so
// that a sweep removes only what a bot made.
const workspacePrefix = "ws-"

// workspace is the private directory tree of one attempt.
type workspace struct {
	dir       string
	src       string // the checkout
	home      string // $HOME
	tmp       string // $TMPDIR
	artifacts string // $TURTLES_ARTIFACTS
}

func newWorkspace(root string) (workspace, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return workspace{}, turtles.InfraFault(reasonWorkspace, fmt.Errorf("create workspace: %w", err))
	}
	dir, err := os.MkdirTemp(root, workspacePrefix)
	if err != nil {
		return workspace{}, turtles.InfraFault(reasonWorkspace, fmt.Errorf("create workspace: %w", err))
	}
	ws := workspace{
		dir:       dir,
		src:       filepath.Join(dir, "src"),
		home:      filepath.Join(dir, "home"),
		tmp:       filepath.Join(dir, "tmp"),
		artifacts: filepath.Join(dir, "artifacts"),
	}
	for _, d := range []string{ws.home, ws.tmp, ws.artifacts} {
		if err := os.Mkdir(d, 0o755); err != nil {
			removeAll(dir)
			return workspace{}, turtles.InfraFault(reasonWorkspace, fmt.Errorf("create workspace: %w", err))
		}
	}
	return ws, nil
}

const reasonWorkspace = "the bot could not create a workspace"

// removeAll removes dir even where a task took away write permission (the
// Go module cache is read-only, for one).
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// runner runs test tasks; bots and RunLocal share it so that a developer
// reproduces exactly what a bot does.
//
// Its methods that run an attempt return an outcome, or an error that
// stopped the attempt before it had one (then the outcome is zero): a
// turtles.Fault written where the problem was found says how the attempt
// ends and why, for people (turtles.OutcomeOf). The error's text is the
// cause, for the bot's log.
type runner struct {
	killGrace time.Duration
	env       []string // extra environment, from Config.Env
	timeout   time.Duration
	vm        VMConfig
	// secretsDir holds the secrets by name (see resolveSecrets); secrets
	// are the NAME=value pairs of the attempt being run.
	secretsDir string
	secrets    []string
	// sandbox isolates commands that run on the bot; nil runs them as
	// the bot's own processes, which only trusted work may (see policy).
	sandbox *sandbox.Sandbox
	// untrustedHost: this bot's pool is one the operator dedicated to
	// untrusted host-mode and image-less work (still isolated).
	untrustedHost bool
	// mirror, if set, is the git mirror commits are fetched from.
	mirror *gitmirror.Client
	// noStore: turtles run, which has no store to keep a held VM in.
	noStore bool
}

// at is ws as a command sees it when its workspace is mounted at root.
func (ws workspace) at(root string) workspace {
	rebase := func(p string) string { return filepath.Join(root, strings.TrimPrefix(p, ws.dir)) }
	return workspace{dir: root, src: rebase(ws.src), home: rebase(ws.home), tmp: rebase(ws.tmp), artifacts: rebase(ws.artifacts)}
}

// onBot returns the spec of command run on the bot itself (no VM, or a
// host-mode task beside its VM): sandboxed when the runner has a sandbox,
// with the task's environment as the command sees its workspace, plus
// extra. The task's secrets are written into the workspace as files only
// it can read ($TURTLES_SECRETS/NAME) as well.
func (r runner) onBot(t turtles.Task, ws workspace, command string, timeout time.Duration, out io.Writer, extra ...string) (execSpec, error) {
	seen := ws
	if r.sandbox != nil {
		seen = ws.at(sandbox.Root)
	}
	env := append(r.taskEnv(t, seen), extra...)
	if len(r.secrets) > 0 {
		dir := filepath.Join(ws.dir, "secrets")
		if err := writeSecretFiles(dir, r.secrets); err != nil {
			return execSpec{}, turtles.InfraFault("the bot could not hand the task its secrets", fmt.Errorf("write secret files: %w", err))
		}
		env = append(env, "TURTLES_SECRETS="+filepath.Join(seen.dir, "secrets"))
	}
	return execSpec{
		Command: command, Dir: seen.src, Env: env, Timeout: timeout, KillGrace: r.killGrace, Out: out,
		Sandbox: r.sandbox, Workspace: ws.dir,
	}, nil
}

// refuseOnBot says why t may not run on this bot outside a VM: refused
// when no bot of this pool runs it (the task fails), an infra Fault when
// this bot cannot but another might.
func (r runner) refuseOnBot(t turtles.Task) (refused string, err error) {
	switch {
	case t.Trusted:
		return "", nil
	case !r.untrustedHost:
		return "untrusted work runs only in guest-mode VMs (an image, mode guest); this pool takes no host-mode or image-less work from untrusted authors", nil
	case r.sandbox == nil:
		return "", turtles.InfraFault("this bot cannot isolate untrusted work on the host (no bubblewrap, or no user namespaces)",
			errors.New("no sandbox: bubblewrap is missing or user namespaces are off (see the bot's log at start)"))
	}
	return "", nil
}

// env is the complete environment of a task command: nothing of the
// process running it. Config.Env comes after the defaults so it may set
// PATH, then the task's secrets, then turtles' own variables, so that
// neither can fake them.
func (r runner) taskEnv(t turtles.Task, ws workspace) []string {
	env := []string{"PATH=" + defaultPath, "LANG=C.UTF-8"}
	env = append(env, r.env...)
	env = append(env, r.secrets...)
	pr := ""
	if t.PR > 0 {
		pr = strconv.Itoa(t.PR)
	}
	return append(env,
		"HOME="+ws.home,
		"TMPDIR="+ws.tmp,
		"CI=true",
		"TURTLES=1",
		"TURTLES_REPO="+t.Repo.Name,
		"TURTLES_SHA="+t.SHA,
		"TURTLES_CONTEXT="+t.Context,
		"TURTLES_ATTEMPT="+strconv.Itoa(t.Attempt),
		"TURTLES_PR="+pr,
		"TURTLES_ARTIFACTS="+ws.artifacts,
	)
}

// checkout puts the task's commit into ws.src. Its failures are infra
// Faults with git.Checkout's reason.
func (r runner) checkout(ctx context.Context, t turtles.Task, ws workspace, out io.Writer) error {
	remote, err := r.remote(t)
	if err != nil {
		return err
	}
	logf(out, "checking out %s %s", git.Redact(remote.URL), t.SHA)
	if err := remote.Checkout(ctx, ws.src, t.SHA, out); err != nil {
		return fmt.Errorf("check out %s: %w", t.SHA, err)
	}
	return nil
}

// remote is where t's commit is fetched from: its clone URL, or the
// same repository at the git mirror.
func (r runner) remote(t turtles.Task) (git.Remote, error) {
	if r.mirror == nil {
		return git.Remote{URL: t.Repo.CloneURL}, nil
	}
	remote, err := r.mirror.Remote(t)
	if err != nil {
		return git.Remote{}, turtles.InfraFault("the git mirror cannot serve this repository's name", fmt.Errorf("git mirror: %w", err))
	}
	return remote, nil
}

// test runs a test task in a checked-out workspace: task.Command, or the
// command of the task's context in the checkout's .turtles.yaml. Its
// secrets are the task's (t.Secrets, which the plan took from the
// configuration and config.Restrict kept for trusted work only), never
// the checkout's.
func (r runner) test(ctx context.Context, t turtles.Task, ws workspace, out io.Writer) (turtles.Outcome, error) {
	r, err := r.withSecrets(t, out)
	if err != nil {
		return turtles.Outcome{}, err
	}
	command, timeout := t.Command, time.Duration(t.Timeout)
	v := vmTask{image: t.Image, mode: t.Mode, cpus: t.CPUs, memoryMB: t.MemoryMB, forward: t.Forward, machines: t.Machines, provider: t.Provider}
	if command == "" {
		cfg, bad, err := readConfig(ws.src)
		if err != nil {
			return turtles.Outcome{}, err
		}
		if bad != nil {
			logf(out, "%s", bad.Reason)
			return *bad, nil
		}
		x, ok := cfg.Find(t.Context)
		if !ok {
			return failure(out, fmt.Sprintf("context %s is not in %s", t.Context, config.FileName)), nil
		}
		command = x.Command
		v = vmTask{image: x.Image, mode: x.Mode, cpus: x.CPUs, memoryMB: int(x.Memory), forward: x.Forward}
		for _, m := range x.Machines {
			v.machines = append(v.machines, turtles.Machine{Name: m.Name, Image: m.Image, CPUs: m.CPUs, MemoryMB: int(m.Memory), Forward: m.Forward})
		}
		if x.Cluster != nil {
			v.machines, v.provider = x.Cluster.Machines(), x.Cluster.Provider
		}
		if timeout == 0 {
			timeout = time.Duration(x.Timeout)
		}
	}
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	if r.timeout > 0 {
		timeout = r.timeout
	}
	if (v.image == "" && len(v.machines) == 0) || v.mode == turtles.ModeHost {
		refused, err := r.refuseOnBot(t)
		if err != nil {
			return turtles.Outcome{}, err
		}
		if refused != "" {
			return failure(out, refused), nil
		}
	}
	if len(v.machines) > 0 {
		return r.testMachines(ctx, t, ws, out, command, timeout, v)
	}
	if v.image != "" {
		return r.testVM(ctx, t, ws, out, command, timeout, v)
	}
	spec, err := r.onBot(t, ws, command, timeout, out)
	if err != nil {
		return turtles.Outcome{}, err
	}
	logf(out, "running: %s", command)
	return execute(ctx, spec)
}

func failure(out io.Writer, reason string) turtles.Outcome {
	logf(out, "%s", reason)
	return turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: reason}
}

const reasonConfig = "the bot could not read " + config.FileName + " from the checkout"

// readConfig reads and parses the checkout's .turtles.yaml. A missing or
// invalid file is the commit's fault: it comes back as a failure outcome
// whose reason names the file and line. err is for our own failures.
func readConfig(src string) (cfg *config.Config, bad *turtles.Outcome, err error) {
	fail := func(reason string) (*config.Config, *turtles.Outcome, error) {
		return nil, &turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: reason}, nil
	}
	path := filepath.Join(src, config.FileName)
	// O_NOFOLLOW: the file comes from the repository, and a symlink to a
	// file of the bot's must not end up quoted in an error message.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail("no " + config.FileName + " in this commit")
	case errors.Is(err, syscall.ELOOP):
		return fail(config.FileName + " is a symbolic link; it must be a regular file")
	case err != nil:
		return nil, nil, turtles.InfraFault(reasonConfig, fmt.Errorf("read %s: %w", config.FileName, err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fail(config.FileName + " is not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, config.MaxSize+1))
	if err != nil {
		return nil, nil, turtles.InfraFault(reasonConfig, fmt.Errorf("read %s: %w", config.FileName, err))
	}
	cfg, err = config.Parse(config.FileName, data)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return fail(ce.Error())
		}
		return fail(strings.TrimSpace(err.Error()))
	}
	return cfg, nil, nil
}
