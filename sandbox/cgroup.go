package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroups is where task cgroups are made: a cgroup v2 directory (the
// unified hierarchy), or the v1 pids hierarchy (hybrid hosts such as
// these CI machines), or nothing.
type cgroups struct {
	dir string
	v2  bool
}

func (c cgroups) String() string {
	switch {
	case c.dir == "":
		return "none (the PID namespace alone ends a task's processes)"
	case c.v2:
		return "cgroup v2 under " + c.dir
	}
	return "cgroup v1 pids under " + c.dir
}

// findCgroups picks the parent of task cgroups: root if given; on cgroup
// v2 a "turtles-tasks" child of the bot's own cgroup; on v1 a "turtles"
// child of the pids hierarchy. One that cannot be made is no cgroup.
func findCgroups(root string) cgroups {
	if root != "" {
		_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
		return cgroups{dir: root, v2: err == nil}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return cgroups{}
		}
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "0::"); ok {
				dir := filepath.Join("/sys/fs/cgroup", rest, "turtles-tasks")
				if os.Mkdir(dir, 0o755) == nil || isDir(dir) {
					return cgroups{dir: dir, v2: true}
				}
			}
		}
		return cgroups{}
	}
	dir := "/sys/fs/cgroup/pids/turtles"
	if os.Mkdir(dir, 0o755) == nil || isDir(dir) {
		return cgroups{dir: dir}
	}
	return cgroups{}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// cgroup is one task's.
type cgroup struct {
	dir string
	v2  bool
	fd  *os.File // v2: the directory, for clone into it
}

// create makes a cgroup for one task; nil when there is no hierarchy.
func (c cgroups) create() (*cgroup, error) {
	if c.dir == "" {
		return nil, nil
	}
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join(c.dir, "task-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	cg := &cgroup{dir: dir, v2: c.v2}
	if c.v2 {
		f, err := os.Open(dir)
		if err != nil {
			os.Remove(dir)
			return nil, err
		}
		cg.fd = f
	}
	return cg, nil
}

// prepare makes cmd start inside the cgroup (v2: clone3 puts it there
// before it runs a single instruction).
func (cg *cgroup) prepare(cmd *exec.Cmd) {
	if cg == nil || cg.fd == nil {
		return
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(cg.fd.Fd())
}

// add moves pid in (v1, where clone cannot) and lets go of the v2 fd.
func (cg *cgroup) add(pid int) {
	if cg == nil {
		return
	}
	if cg.fd != nil {
		cg.fd.Close()
		cg.fd = nil
		return
	}
	os.WriteFile(filepath.Join(cg.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// procs lists the processes in the cgroup.
func (cg *cgroup) procs() []int {
	b, err := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// kill ends every process in the cgroup and waits (up to 5 s) until it
// is empty.
func (cg *cgroup) kill() {
	if cg == nil {
		return
	}
	if cg.v2 && os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0o644) == nil {
		wait(context.Background(), 5*time.Second, func() bool { return len(cg.procs()) == 0 })
		return
	}
	wait(context.Background(), 5*time.Second, func() bool {
		pids := cg.procs()
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(pids) == 0
	})
}

// remove deletes the (empty) cgroup.
func (cg *cgroup) remove() {
	if cg == nil {
		return
	}
	if cg.fd != nil {
		cg.fd.Close()
	}
	os.Remove(cg.dir) // fails only when kill gave up on a process; the cgroup then stays
}
