package vm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The owner file names the process a machine belongs to while it boots
// (and, unless detached, for its whole life): "PID STARTTIME", the start
// time from /proc/PID/stat so that a reused PID is not mistaken for the
// owner.
func writeOwner(dir string) error { return writeOwnerPID(dir, os.Getpid()) }

// writeOwnerPID makes pid the owner; 0 removes the owner (detached).
func writeOwnerPID(dir string, pid int) error {
	if pid == 0 {
		err := os.Remove(filepath.Join(dir, ownerFile))
		if os.IsNotExist(err) {
			err = nil
		}
		return err
	}
	st, err := startTime(pid)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %s\n", pid, st), 0o600)
}

func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// Fields after the parenthesised command name start at field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return f[19], nil
}

// ownerAlive reports whether the process named in dir's owner file still
// runs. No owner file means a detached machine: nobody owns it.
func ownerAlive(dir string) (owned, alive bool) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false, false
	}
	var pid int
	var st string
	if _, err := fmt.Sscan(string(b), &pid, &st); err != nil {
		return true, false
	}
	cur, err := startTime(pid)
	return true, err == nil && cur == st
}

// qemuAlive reports whether pid is a qemu of the machine in dir (its
// command line names files in dir), so that a reused PID is never killed.
func qemuAlive(pid int, dir string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(st, ')'); i > 0 && bytes.HasPrefix(bytes.TrimSpace(st[i+1:]), []byte("Z")) {
			return false // a zombie is dead, waiting for its parent
		}
	}
	return bytes.Contains(b, []byte(dir+string(filepath.Separator)))
}

// Sweep removes the machines in dir whose owner process is dead (a bot
// killed mid-task, a `turtles vm start` killed mid-boot) or whose qemu
// exited: it kills their qemu if it still runs and deletes their overlay,
// seed, key and sockets. Machines of live owners, and detached machines
// that run, are kept. It returns the names it removed.
func Sweep(dir string, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !nameRe.MatchString(e.Name()) {
			continue
		}
		d := filepath.Join(abs, e.Name())
		pid := readPID(d)
		owned, alive := ownerAlive(d)
		switch {
		case owned && alive:
			continue
		case !owned && qemuAlive(pid, d):
			continue // detached and running
		case !owned && pid == 0:
			// Between Mkdir and the owner file: give it a moment.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) < time.Minute {
				continue
			}
		}
		// The recorded PID, and any other qemu of this machine: an owner
		// killed between starting qemu and recording its PID left one
		// that only its command line names.
		for _, pid := range qemusOf(pid, d) {
			log.Warn("sweep: killing qemu of a dead owner", "machine", e.Name(), "pid", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 100 && qemuAlive(pid, d); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if err := os.RemoveAll(d); err != nil {
			return removed, fmt.Errorf("sweep %s: %w", d, err)
		}
		log.Info("sweep: removed leftover machine", "machine", e.Name())
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// qemusOf returns the live qemu processes of the machine in dir: pid if it
// is one, and every process whose command line names files in dir.
func qemusOf(pid int, dir string) []int {
	var out []int
	if qemuAlive(pid, dir) {
		out = append(out, pid)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		n, err := strconv.Atoi(filepath.Base(p))
		if err != nil || n == pid || n == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p, "cmdline"))
		argv0, _, _ := strings.Cut(string(b), "\x00")
		if err == nil && strings.HasPrefix(filepath.Base(argv0), "qemu-system") && qemuAlive(n, dir) {
			out = append(out, n)
		}
	}
	return out
}

func readPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return 0
	}
	var st State
	if json.Unmarshal(b, &st) != nil {
		return 0
	}
	return st.PID
}
