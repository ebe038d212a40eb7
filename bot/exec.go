package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/sandbox"
	"github.com/turtles-ci/turtles/syncio"
)

// defaultPath is the PATH of task commands unless Config.Env says
// otherwise; the bot's own PATH is none of the task's business.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputWait bounds how long the output of a finished command is still
// read. A process that escaped the process group (setsid) and kept the
// pipe open must not hold the task forever.
var outputWait = 2 * time.Second

// execSpec is one task command, run the same way by bots and `turtles run`.
type execSpec struct {
	Command   string
	Dir       string   // the checkout
	Env       []string // the whole environment
	Timeout   time.Duration
	KillGrace time.Duration // SIGTERM to SIGKILL
	Out       io.Writer     // stdout and stderr, and turtles' own lines
	// Sandbox, when set, isolates the command (package sandbox): Dir is
	// then the path inside it, and Workspace the host directory that
	// appears at sandbox.Root.
	Sandbox   *sandbox.Sandbox
	Workspace string
}

// execute runs spec with "sh -c" in its own process group, with stdin
// /dev/null. A timeout is a failure; ctx ending (drain, lost lease, Ctrl-C)
// stops the command the same way and returns a Cancelled Fault caused by
// ctx's cause. Either way the whole group gets SIGTERM, then SIGKILL after
// KillGrace, and nothing of it outlives execute. Its other errors are
// infra Faults: the command could not be run.
func execute(ctx context.Context, s execSpec) (turtles.Outcome, error) {
	s.Out = syncio.NewWriter(s.Out) // the copier and our own lines
	pr, pw, err := os.Pipe()
	if err != nil {
		return turtles.Outcome{}, turtles.InfraFault(reasonStart, fmt.Errorf("output pipe: %w", err))
	}
	defer pr.Close()
	cmd := exec.Command("/bin/sh", "-c", s.Command)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	// Pdeathsig: if the bot dies, its commands die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var box *sandbox.Run
	if s.Sandbox != nil {
		box, err = s.Sandbox.Start(sandbox.Spec{Workspace: s.Workspace, Dir: s.Dir, Env: s.Env}, "/bin/sh", "-c", s.Command)
		if err != nil {
			pw.Close()
			return turtles.Outcome{}, turtles.InfraFault("the bot could not start the command in its sandbox", fmt.Errorf("isolate command: %w", err))
		}
		defer box.Close()
		cmd = box.Cmd
	}
	// An *os.File is handed to the child as is: no copying goroutine in
	// exec that Wait would block on.
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return turtles.Outcome{}, turtles.InfraFault(reasonStart, fmt.Errorf("start command: %w", err))
	}
	pgid := cmd.Process.Pid
	stop := func(exited <-chan error) error { return terminate(pgid, exited, s.KillGrace) }
	if box != nil {
		box.Started()
		stop = func(exited <-chan error) error { return terminateBox(box, exited, s.KillGrace) }
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(s.Out, pr)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	timer := time.NewTimer(s.Timeout)
	defer timer.Stop()
	var (
		waitErr  error
		timedOut bool
	)
	select {
	case waitErr = <-exited:
		// Background processes the command left behind go now.
		syscall.Kill(-pgid, syscall.SIGKILL)
		if box != nil {
			box.Kill()
		}
	case <-timer.C:
		timedOut = true
		logf(s.Out, "timed out after %s; stopping the command (SIGTERM, then SIGKILL after %s)", s.Timeout, s.KillGrace)
		waitErr = stop(exited)
	case <-ctx.Done():
		logf(s.Out, "stopping the command: %v", context.Cause(ctx))
		waitErr = stop(exited)
	}
	select {
	case <-copied:
	case <-time.After(outputWait):
		pr.SetReadDeadline(time.Now())
		<-copied
		logf(s.Out, "a process outside the command's process group still holds its output; stopped reading")
	}
	elapsed := time.Since(start).Round(100 * time.Millisecond)

	switch {
	case timedOut:
		return turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: fmt.Sprintf("timed out after %s", s.Timeout)}, nil
	case ctx.Err() != nil:
		logf(s.Out, "command stopped after %s", elapsed)
		return turtles.Outcome{}, cancelled(ctx)
	case waitErr == nil:
		logf(s.Out, "exit status 0 after %s", elapsed)
		return turtles.Outcome{Class: turtles.Success, ExitCode: 0}, nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return turtles.Outcome{}, turtles.InfraFault("the bot lost track of the command", fmt.Errorf("wait for command: %w", waitErr))
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		reason := "killed by signal " + ws.Signal().String()
		logf(s.Out, "%s after %s", reason, elapsed)
		return turtles.Outcome{Class: turtles.Failure, ExitCode: -1, Reason: reason}, nil
	}
	code := ee.ExitCode()
	reason := "exit status " + strconv.Itoa(code)
	logf(s.Out, "%s after %s", reason, elapsed)
	return turtles.Outcome{Class: turtles.Failure, ExitCode: code, Reason: reason}, nil
}

// terminate sends SIGTERM to process group pgid and waits until its leader
// exited and the group is empty, or grace passed; then SIGKILLs what is
// left. It returns the leader's wait error.
func terminate(pgid int, exited <-chan error, grace time.Duration) error {
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	var (
		err  error
		done bool
	)
	for {
		select {
		case err = <-exited:
			done = true
		case <-poll.C:
		case <-deadline.C:
			syscall.Kill(-pgid, syscall.SIGKILL)
			if !done {
				err = <-exited
			}
			return err
		}
		// Only once the leader is reaped can "no such process" mean the
		// whole group is gone.
		if done && !groupAlive(pgid) {
			return err
		}
	}
}

// terminateBox is terminate for a sandboxed command: SIGTERM to the
// command's processes (not to bubblewrap, whose death would end them at
// once), then SIGKILL to all once the command exited or grace passed.
func terminateBox(box *sandbox.Run, exited <-chan error, grace time.Duration) error {
	box.Terminate()
	select {
	case err := <-exited:
		box.Kill()
		return err
	case <-time.After(grace):
		box.Kill()
		return <-exited
	}
}

// groupAlive reports whether process group pgid has a member that is not a
// zombie. Orphaned members are reaped by init, which in some containers
// takes seconds; a zombie holds no files and needs no grace period.
func groupAlive(pgid int) bool {
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid pgrp ...": comm may contain anything, so
		// parse after its last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 {
			continue
		}
		if pg, _ := strconv.Atoi(f[2]); pg == pgid && f[0] != "Z" {
			return true
		}
	}
	return false
}

// reasonStart is the reason of a command that could not be started.
const reasonStart = "the bot could not start the command"

// cancelled is the error of an attempt stopped because ctx ended: its
// class is Cancelled, its cause ctx's (a lost lease, a drain, Ctrl-C).
func cancelled(ctx context.Context) error {
	return turtles.Fail(turtles.Cancelled, "stopped before it finished", context.Cause(ctx))
}

// truncate keeps a reason short enough for a commit status.
func truncate(reason string) string {
	if len(reason) > 200 {
		return reason[:197] + "..."
	}
	return reason
}

// logf writes one of turtles' own lines to a task log.
func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "turtles: "+format+"\n", args...)
}
