package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/turtles-ci/turtles/triage"
)

func init() { register("triage-match", triageMatch) }

// triageMatch times matching 100 MB of log with 20 known-issue patterns
// that do not match (so every byte is searched), against reading the same
// 100 MB through the same reader, and prints the time matching adds: the
// delay it adds to the finish of a task with a 100 MB log (issue 16: at
// most 2 s).
func triageMatch(ctx context.Context) error {
	log := triageBenchLog(100 << 20)
	var pats []*triage.Pattern
	for i, m := range triageBenchMatches {
		p, err := triage.Parse(fmt.Sprintf("p%d.yaml", i), []byte(fmt.Sprintf("issue: https://x.org/%d\nmatch:\n  %s\n", i, m)))
		if err != nil {
			return err
		}
		pats = append(pats, p)
	}
	best := func(f func() error) (time.Duration, error) {
		var min time.Duration
		for range 3 {
			start := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			if d := time.Since(start); min == 0 || d < min {
				min = d
			}
		}
		return min, nil
	}
	read, err := best(func() error { _, err := io.Copy(io.Discard, onlyReader{bytes.NewReader(log)}); return err })
	if err != nil {
		return err
	}
	match, err := best(func() error {
		ms, err := triage.Scan(ctx, onlyReader{bytes.NewReader(log)}, "log", pats)
		if err == nil && len(ms) != 0 {
			err = fmt.Errorf("pattern %s matched the benchmark log: %v", ms[0].Pattern, ms[0].Lines)
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("read 100 MB: %d ms, match with %d patterns: %d ms\n", read.Milliseconds(), len(pats), match.Milliseconds())
	result("triage-match", fmt.Sprint((match - read).Milliseconds()), "ms added per 100 MB log", "< 2000")
	return nil
}

// onlyReader hides WriterTo from io.Copy, so both runs read alike.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// triageBenchMatches are 20 patterns of the kinds projects write.
var triageBenchMatches = []string{
	`glob: "Could not resolve host: *"`, `glob: "No space left on device"`, `glob: "Kernel panic - not syncing: *"`,
	`glob: "kex_exchange_identification: *"`, `glob: "Connection reset by peer"`, `glob: "Out of memory: Killed process *"`,
	`glob: "error: RPC failed; curl 56 *"`, `glob: "Timed out waiting for * to appear"`, `glob: "segfault at * ip * sp *"`,
	`glob: "BUG: soft lockup - CPU#? stuck for *"`, `glob: "systemd-coredump[<pid>]: Process * dumped core."`,
	`glob: "not ok * - test_storage_*"`, `glob: "Unexpected journal message '*'"`, `glob: "ERROR: * failed to reach target"`,
	`regex: 'qemu[^\n]*: [^\n]*(?i:cannot allocate memory)'`, `regex: 'ssh[^\n]*: Connection reset by peer|client_loop: send disconnect'`,
	`regex: 'timeout after <dur> waiting for #\w+_never'`, `regex: '(Failed|Error) to start [A-Za-z-]+\.service: exit-code=9\d'`,
	`regex: 'audit: type=1400 apparmor="DENIED" operation="[a-z]+"'`, `regex: 'libvirt: [^\n]*error: internal error: process exited'`,
}

// triageBenchLog returns about n bytes of a log that looks like a real
// one: timestamps, PIDs, addresses, paths, test lines.
func triageBenchLog(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "Dec  3 02:25:%02d fedora-40 sshd[%d]: Accepted publickey for admin from 10.0.2.%d port %d ssh2\n", i%60, 1000+i%9000, i%255, 30000+i%30000)
		case 1:
			fmt.Fprintf(&b, "[%6d.%06d] audit: type=1400 apparmor=\"ALLOWED\" operation=\"open\" name=\"/usr/lib/x86_64-linux-gnu/libc.so.%d\" pid=%d\n", i/1000, i%1000000, i%7, 2000+i%5000)
		case 2:
			fmt.Fprintf(&b, "ok %d - test_login_%d (%d.%03ds)\n", i, i%97, i%3, i%1000)
		case 3:
			fmt.Fprintf(&b, "2024-05-01T12:%02d:%02d.%03dZ DEBUG cockpit-ws: received message on channel %x-%d\n", i%60, i%60, i%1000, 0xdeadbeef00+i, i%13)
		default:
			b.WriteString("    wait_js_cond(ph_is_visible(\"#system_information_os_text\")): waiting for the page to settle\n")
		}
	}
	return b.Bytes()
}
