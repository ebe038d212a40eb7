package triage

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// benchLog returns about n bytes of a log that looks like a real one:
// timestamps, PIDs, addresses, paths, test lines.
func benchLog(n int) []byte {
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

// benchPatterns are 20 patterns of the kinds projects write, none of
// which matches benchLog: the worst case, every byte is searched.
func benchPatterns(t testing.TB) []*Pattern {
	globs := []string{
		"Could not resolve host: *", "No space left on device", "Kernel panic - not syncing: *",
		"kex_exchange_identification: *", "Connection reset by peer", "Out of memory: Killed process *",
		"error: RPC failed; curl 56 *", "Timed out waiting for * to appear", "segfault at * ip * sp *",
		"BUG: soft lockup - CPU#? stuck for *", "systemd-coredump[<pid>]: Process * dumped core.",
		"not ok * - test_storage_*", "Unexpected journal message '*'", "ERROR: * failed to reach target",
	}
	regexes := []string{
		`qemu[^\n]*: [^\n]*(?i:cannot allocate memory)`, `ssh[^\n]*: Connection reset by peer|client_loop: send disconnect`,
		`timeout after <dur> waiting for #\w+_never`, `(Failed|Error) to start [A-Za-z-]+\.service: exit-code=9\d`,
		`audit: type=1400 apparmor="DENIED" operation="[a-z]+"`, `libvirt: [^\n]*error: internal error: process exited while connecting to monitor`,
	}
	var pats []*Pattern
	for i, g := range globs {
		pats = append(pats, mustParse(t, fmt.Sprintf("g%d.yaml", i), fmt.Sprintf("issue: https://x.org/%d\nmatch:\n  glob: %q\n", i, g)))
	}
	for i, r := range regexes {
		pats = append(pats, mustParse(t, fmt.Sprintf("r%d.yaml", i), fmt.Sprintf("issue: https://x.org/%d\nmatch:\n  regex: %q\n", i, r)))
	}
	return pats
}

// BenchmarkMatch100MB scans 100 MB of log with 20 patterns that do not
// match. Goal: well under 2 s per 100 MB (issue 16).
func BenchmarkMatch100MB(b *testing.B) {
	log := benchLog(100 << 20)
	pats := benchPatterns(b)
	b.SetBytes(int64(len(log)))
	b.ResetTimer()
	for b.Loop() {
		ms, err := Scan(context.Background(), bytes.NewReader(log), "log", pats)
		if err != nil || len(ms) != 0 {
			b.Fatalf("Scan = %v, %v; want no match", ms, err)
		}
	}
}

// BenchmarkNormalize measures the normalizer alone.
func BenchmarkNormalize(b *testing.B) {
	log := benchLog(8 << 20)
	var m Map
	var out []byte
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		m.reset()
		out = normalize(out[:0], log, &m)
	}
}
