// Package sandbox runs a task's command isolated on its bot, with what
// Linux gives and bubblewrap (Debian's bubblewrap package) drives: its own
// user, PID, mount, IPC and UTS namespaces; a user id of its own while it
// runs (when the bot is root); a read-only view of the host in which the
// bot's data, secrets, other workspaces, VMs and credential files are
// empty; a fresh /proc that shows only the task's processes; and a cgroup
// that is killed whole when the task ends. When the first process of the
// task's PID namespace exits, the kernel kills the rest: nothing of a task
// outlives it, not even a daemon that left its process group.
//
// The bot imports it; cmd/turtles decides what is hidden and which user
// ids are used. It knows nothing of tasks or queues.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrUnavailable is returned by New when the host cannot isolate tasks;
// the error it wraps says what is missing. A bot without a sandbox must
// refuse untrusted work.
var ErrUnavailable = errors.New("tasks cannot be isolated on this host")

// Config says how tasks are isolated. cmd/turtles fills it.
type Config struct {
	// Bwrap is the bubblewrap binary; empty looks "bwrap" up in PATH.
	Bwrap string
	// UIDBase is the first of the user (and group) ids tasks run as when
	// the bot is root: one per concurrent task, so that two tasks never
	// share a uid. Ignored when the bot is not root: tasks then run as the
	// bot's own uid in a user namespace, and what they must not read is
	// hidden by mounts alone.
	UIDBase int
	// UIDs is how many ids from UIDBase may be in use at once (the bot's
	// slots).
	UIDs int
	// Hide lists paths no task may see: a directory is covered by an empty
	// tmpfs, a file by an empty one. The bot's data directory, secrets
	// directory, work directory (other workspaces) and credential files
	// belong here.
	Hide []string
	// CgroupRoot is the cgroup directory under which each task gets one of
	// its own; empty finds one (see findCgroup). None found is not an
	// error: the PID namespace still kills every process of a task.
	CgroupRoot string
	// HostTmp shows the host's /tmp (read-only) instead of an empty one:
	// for tests that signal a running task through a file there.
	HostTmp bool
}

// Sandbox starts isolated commands.
type Sandbox struct {
	cfg    Config
	bwrap  string
	root   bool
	cgroup cgroups
	mu     sync.Mutex
	inUse  map[int]bool
	// etc holds passwd and group with the task uids added: programs such
	// as ssh refuse to run as a uid without a name.
	etc string
}

// New checks that the host can isolate a command (it runs one) and
// returns a Sandbox, or an error wrapping ErrUnavailable that says what
// is missing.
func New(cfg Config) (*Sandbox, error) {
	bw := cfg.Bwrap
	if bw == "" {
		bw = "bwrap"
	}
	path, err := exec.LookPath(bw)
	if err != nil {
		return nil, fmt.Errorf("%w: bubblewrap (%s) is not installed: apt-get install bubblewrap", ErrUnavailable, bw)
	}
	s := &Sandbox{cfg: cfg, bwrap: path, root: os.Geteuid() == 0, inUse: map[int]bool{}}
	if s.root && (cfg.UIDBase <= 0 || cfg.UIDs <= 0) {
		return nil, fmt.Errorf("sandbox: a root bot needs UIDBase and UIDs")
	}
	s.cgroup = findCgroups(cfg.CgroupRoot)
	if s.root {
		if s.etc, err = writeEtc(cfg.UIDBase, cfg.UIDs); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := s.probe(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return s, nil
}

// Cgroups says which cgroup hierarchy tasks are put in, for the log.
func (s *Sandbox) Cgroups() string { return s.cgroup.String() }

// probe runs `true` isolated, as a task would be.
func (s *Sandbox) probe() error {
	dir, err := os.MkdirTemp("", "turtles-sandbox-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r, err := s.Start(Spec{Workspace: dir, Dir: Root, Env: []string{"PATH=/usr/bin:/bin"}}, "/bin/sh", "-c", "test \"$(cat /proc/1/comm)\" = bwrap")
	if err != nil {
		return err
	}
	var out bytes.Buffer
	r.Cmd.Stdout, r.Cmd.Stderr = &out, &out
	if err := r.Cmd.Start(); err != nil {
		r.Close()
		return fmt.Errorf("start %s: %w", s.bwrap, err)
	}
	r.Started()
	err = r.Cmd.Wait()
	r.Close()
	if err != nil {
		return fmt.Errorf("%s cannot start an isolated command: %v: %s", s.bwrap, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Root is where a task sees its workspace. It is the same for every task
// (and needs no path of the bot's to be searchable by the task's uid).
const Root = "/run/turtles/task"

// Spec is one isolated command.
type Spec struct {
	// Workspace is the task's own directory, the only writable place it
	// sees besides a private /tmp, at Root; owned by the task's uid after
	// Start.
	Workspace string
	// Dir is the working directory as the task sees it (under Root).
	Dir string
	// Env is the whole environment.
	Env []string
}

// Run is a started-to-be isolated command. Start it with Cmd.Start, then
// call Started; call Close when it has exited.
type Run struct {
	Cmd    *exec.Cmd
	s      *Sandbox
	uid    int
	cg     *cgroup
	closed bool
}

// Start prepares argv to run isolated as spec says. The returned Cmd has
// its SysProcAttr set (own process group, killed with the bot); set its
// output and call Cmd.Start.
func (s *Sandbox) Start(spec Spec, argv ...string) (*Run, error) {
	r := &Run{s: s, uid: -1}
	args := []string{
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--hostname", "turtles-task",
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/var/tmp", "--tmpfs", "/run",
	}
	if !s.cfg.HostTmp {
		args = append(args, "--tmpfs", "/tmp")
	}
	if s.etc != "" {
		args = append(args, "--ro-bind", filepath.Join(s.etc, "passwd"), "/etc/passwd",
			"--ro-bind", filepath.Join(s.etc, "group"), "/etc/group")
	}
	for _, p := range s.cfg.Hide {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			continue // nothing there to hide
		case fi.IsDir():
			args = append(args, "--tmpfs", p)
		default:
			args = append(args, "--ro-bind", "/dev/null", p)
		}
	}
	args = append(args, "--bind", spec.Workspace, Root, "--chdir", spec.Dir, "--cap-drop", "ALL", "--")
	args = append(args, argv...)

	cmd := exec.Command(s.bwrap, args...)
	cmd.Env = spec.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.root {
		if err := searchable(spec.Workspace); err != nil {
			return nil, err
		}
		uid, err := s.acquire()
		if err != nil {
			return nil, err
		}
		r.uid = uid
		if err := chownTree(spec.Workspace, uid); err != nil {
			s.release(uid)
			return nil, fmt.Errorf("give the workspace to uid %d: %w", uid, err)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: false, Groups: []uint32{}}
	}
	cg, err := s.cgroup.create()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("create the task's cgroup: %w", err)
	}
	r.cg = cg
	cg.prepare(cmd)
	r.Cmd = cmd
	return r, nil
}

// UID is the host uid the command runs as, -1 when it is the bot's own.
func (r *Run) UID() int { return r.uid }

// Started puts the started command in its cgroup, where clone could not.
func (r *Run) Started() {
	if r.cg != nil && r.Cmd.Process != nil {
		r.cg.add(r.Cmd.Process.Pid)
	}
}

// Terminate asks every process of the command but bubblewrap's own to
// stop (SIGTERM): bubblewrap would take the whole sandbox down at once,
// leaving the task no grace. Kill ends the rest.
func (r *Run) Terminate() {
	if r.Cmd.Process == nil {
		return
	}
	outer := r.Cmd.Process.Pid
	for _, pid := range groupMembers(outer) {
		if pid != outer {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

// Kill ends every process of the command: the process group, then
// whatever its cgroup still holds (a daemon that left the group).
// Bubblewrap's death takes the PID namespace, and with it every process
// of the task, down.
func (r *Run) Kill() {
	if r.Cmd.Process != nil {
		syscall.Kill(-r.Cmd.Process.Pid, syscall.SIGKILL)
	}
	if r.cg != nil {
		r.cg.kill()
	}
}

// Close kills what is left, removes the cgroup and frees the uid; call it
// after the command exited. Files the task wrote stay owned by its uid
// until the bot removes the workspace.
func (r *Run) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Kill()
	if r.cg != nil {
		r.cg.remove()
	}
	if r.uid >= 0 {
		r.s.release(r.uid)
	}
}

func (s *Sandbox) acquire() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < s.cfg.UIDs; i++ {
		uid := s.cfg.UIDBase + i
		if !s.inUse[uid] {
			s.inUse[uid] = true
			return uid, nil
		}
	}
	return 0, fmt.Errorf("sandbox: all %d task uids from %d are in use", s.cfg.UIDs, s.cfg.UIDBase)
}

func (s *Sandbox) release(uid int) {
	s.mu.Lock()
	delete(s.inUse, uid)
	s.mu.Unlock()
}

// chownTree gives dir and everything in it to uid (and the group of the
// same number), without following symbolic links.
func chownTree(dir string, uid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

// writeEtc writes the host's /etc/passwd and /etc/group with a user and
// group "turtles-taskN" for each task uid into a new directory.
func writeEtc(base, n int) (string, error) {
	dir, err := os.MkdirTemp("", "turtles-sandbox-etc-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	for _, name := range []string{"passwd", "group"} {
		b, err := os.ReadFile("/etc/" + name)
		if err != nil {
			return "", err
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		for i := range n {
			if name == "passwd" {
				b = fmt.Appendf(b, "turtles-task%d:x:%d:%d:turtles task:%s/home:/bin/sh\n", i, base+i, base+i, Root)
			} else {
				b = fmt.Appendf(b, "turtles-task%d:x:%d:\n", i, base+i)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// searchable makes every directory above dir searchable by others (o+x,
// not readable), so that bubblewrap, running as the task's uid, reaches
// the workspace it binds. What those directories hold stays hidden from
// the task by Hide and unreadable by name listing.
func searchable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("make %s searchable for task uids: %w", d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// groupMembers lists the processes of process group pgid, from /proc.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// wait polls until cond holds or d passed.
func wait(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
