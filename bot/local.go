package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/git"
	"github.com/turtles-ci/turtles/syncio"
)

// LocalOptions says what RunLocal runs.
type LocalOptions struct {
	// Dir is a local git repository. Uncommitted changes are not part of
	// the run: a commit is what CI runs. Required.
	Dir string
	// Rev names the commit to run, such as HEAD. Required.
	Rev string
	// Context is the .turtles.yaml context to run. Required.
	Context string
	// Out gets the log, as a bot would store it. Nil discards.
	Out io.Writer
	// WorkDir holds the temporary workspace. Required.
	WorkDir string
	// Timeout overrides the context's timeout when positive.
	Timeout time.Duration
	// KillGrace is the time from SIGTERM to SIGKILL. Required.
	KillGrace time.Duration
	// Env is extra environment for the command, as Config.Env.
	Env []string
	// VM configures the VM of a context that names an image.
	VM VMConfig
	// SecretsDir holds the secrets the context names, as Config.SecretsDir.
	// Empty runs the context without them.
	SecretsDir string
}

// RunLocal runs one context of a commit of a local repository exactly as a
// bot would: a fresh workspace, the same checkout (over file://), the same
// environment and timeout handling. The outcome says how the command did.
// An error is what kept it from running to an outcome of its own: bad
// options (a zero outcome), or an infra failure or ctx ending, whose
// outcome is turtles.OutcomeOf(err). Its text is the reason and the
// cause, for the person at the terminal.
func RunLocal(ctx context.Context, opts LocalOptions) (turtles.Outcome, error) {
	switch {
	case opts.Context == "":
		return turtles.Outcome{}, errors.New("no context to run")
	case opts.Dir == "":
		return turtles.Outcome{}, errors.New("no repository directory")
	case opts.Rev == "":
		return turtles.Outcome{}, errors.New("no revision to run")
	case opts.WorkDir == "":
		return turtles.Outcome{}, errors.New("no work directory")
	case opts.KillGrace <= 0:
		return turtles.Outcome{}, fmt.Errorf("KillGrace is %s, want more than 0", opts.KillGrace)
	}
	if err := opts.VM.check(); err != nil {
		return turtles.Outcome{}, err
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	out := syncio.NewWriter(opts.Out)
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return turtles.Outcome{}, fmt.Errorf("repository directory: %w", err)
	}
	sha, err := git.ResolveRev(ctx, dir, opts.Rev)
	if err != nil {
		return turtles.Outcome{}, err
	}
	t := turtles.Task{
		Version:  turtles.TaskVersion,
		Kind:     turtles.KindTest,
		Repo:     turtles.Repo{Name: "local/" + repoNameRe.ReplaceAllString(filepath.Base(dir), "-"), CloneURL: "file://" + dir},
		SHA:      sha,
		Context:  opts.Context,
		Pool:     turtles.DefaultPool,
		Attempt:  1,
		Trusted:  true,
		Created:  time.Now(),
		Priority: 0,
	}
	if err := t.Validate(); err != nil {
		return turtles.Outcome{}, err
	}
	r := runner{killGrace: opts.KillGrace, env: opts.Env, timeout: opts.Timeout, vm: opts.VM, secretsDir: opts.SecretsDir}
	r.noStore = true
	o, err := r.local(ctx, t, opts, out)
	if err != nil {
		return turtles.OutcomeOf(err), err
	}
	return o, nil
}

// local runs t in a fresh workspace under opts.WorkDir.
func (r runner) local(ctx context.Context, t turtles.Task, opts LocalOptions, out io.Writer) (turtles.Outcome, error) {
	ws, err := newWorkspace(opts.WorkDir)
	if err != nil {
		return turtles.Outcome{}, err
	}
	defer removeAll(ws.dir)
	if err := r.checkout(ctx, t, ws, out); err != nil {
		return turtles.Outcome{}, err
	}
	// A bot gets the secret names from the plan; here they come from the
	// checkout, and only when the person running it has them.
	if cfg, bad, err := readConfig(ws.src); err == nil && bad == nil {
		if x, ok := cfg.Find(t.Context); ok && len(x.Secrets) > 0 {
			if opts.SecretsDir == "" {
				logf(out, "running without the secrets %s names (%s): give --secrets-dir to pass them", t.Context, strings.Join(x.Secrets, ", "))
			} else {
				t.Secrets = x.Secrets
			}
		}
	}
	return r.test(ctx, t, ws, out)
}

var repoNameRe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
