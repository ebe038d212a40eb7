package corpus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/image"
)

// The repository's known issue: frob tests that time out. Its scope is
// the frob tests, so its line in another test's output explains nothing.
const knownIssue = `issue: https://github.com/corpus/repo/issues/5494
title: frobnicator times out under load
scope:
  tests: ["frob*"]
match:
  glob: "frobnicator timed out after *"
blocking: true
samples:
  - "frobnicator timed out after 3.5s at 0x7f3a2b1c"
`

// suite is the repository's test script: TAP on stdout, as a project's
// test runner prints it.
const suite = `#!/bin/sh
# The corpus's test suite: ./suite.sh KIND
case "$1" in
regression)
	echo "1..2"; echo "ok 1 - frob works"; echo "not ok 2 - login accepts the new password"
	echo "# expected 'welcome', got 'denied'"; exit 1 ;;
known-issue)
	echo "1..2"; echo "ok 1 - login accepts the new password"
	echo "frobnicator timed out after 2.$$s at 0x$(printf %x $$)beef"
	echo "not ok 2 - frob survives a reload"; exit 1 ;;
unrelated-known)
	echo "1..2"; echo "frobnicator timed out after 1.$$s at 0x$(printf %x $$)"
	echo "ok 1 - frob survives a reload"; echo "not ok 2 - login rejects a wrong password"; exit 1 ;;
flaky)
	echo "1..1"
	if [ "$2" = random ]; then
		r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
		[ "$r" -lt 77 ] && { echo "not ok 1 - search finds the page (race, r=$r)"; exit 1; }
	elif [ "$TURTLES_ATTEMPT" = 1 ]; then
		echo "not ok 1 - search finds the page"; exit 1
	fi
	echo "ok 1 - search finds the page" ;;
*) echo "unknown kind $1" >&2; exit 2 ;;
esac
`

// In the guest: kill every sshd, the one serving this command too, then
// wait to be killed with it. Once: a retry runs on a fresh machine.
const killSSHD = `echo "1..1"
if [ "$TURTLES_ATTEMPT" = 1 ]; then echo "killing sshd"; pkill -9 -x sshd; sleep 60; fi
echo "ok 1 - the guest answers"`

// In the guest: fill the root file system, the root-reserved blocks
// too, then write the test's output. Once: a retry gets a fresh overlay.
const fillDisk = `echo "1..1"
if [ "$TURTLES_ATTEMPT" = 1 ]; then
	free=$(( $(stat -f -c %f /) * $(stat -f -c %S /) - 16777216 ))
	fallocate -l "$free" /var/tmp/fill || echo "fallocate failed"
	dd if=/dev/zero of=/var/tmp/fill2 bs=1M 2>&1 | tail -n 2
fi
if echo "the test's output" > /var/tmp/output; then echo "ok 1 - write the output"
else echo "not ok 1 - write the output"; exit 1; fi`

// Cases are the corpus's faults, each with what it must be given.
var Cases = []Case{
	{Name: "kernel-panic", VM: true,
		task:  func(t *turtles.Task, _ bool) { t.Image, t.Command = panicky, "echo never runs" },
		check: every(turtles.VerdictInfra, "kernel panicked", true)},
	{Name: "sshd-killed", VM: true,
		task:  func(t *turtles.Task, _ bool) { t.Image, t.Command = "debian-12", killSSHD },
		check: firstThenPass(turtles.VerdictInfra, "connection to the VM ended")},
	{Name: "disk-full", VM: true,
		task:  func(t *turtles.Task, _ bool) { t.Image, t.Command = "debian-12", fillDisk },
		check: firstThenPass(turtles.VerdictInfra, "No space left on device")},
	{Name: "missing-commit",
		task:  func(t *turtles.Task, _ bool) { t.SHA, t.Command = missingSHA(), "./suite.sh regression" },
		check: every(turtles.VerdictInfra, "has no commit", true)},
	{Name: "known-issue",
		task:  func(t *turtles.Task, _ bool) { t.Command = "./suite.sh known-issue" },
		check: once(turtles.Failure, turtles.VerdictKnownIssue, "issues/5494")},
	{Name: "flaky",
		task: func(t *turtles.Task, random bool) {
			t.Command, t.Retries = "./suite.sh flaky", 1
			if random {
				t.Command, t.Retries = "./suite.sh flaky random", 5
			}
		},
		check: flaky},
	{Name: "regression", Regression: true,
		task:  func(t *turtles.Task, _ bool) { t.Command = "./suite.sh regression" },
		check: once(turtles.Failure, turtles.VerdictRegression, "exit status 1")},
	{Name: "unrelated-known", Regression: true,
		task:  func(t *turtles.Task, _ bool) { t.Command = "./suite.sh unrelated-known" },
		check: once(turtles.Failure, turtles.VerdictRegression, "exit status 1")},
}

// every: each attempt is v with a reason that has why; with final, the
// last is too (the retries ran out), else the last passed.
func every(v turtles.Verdict, why string, final bool) func([]turtles.Outcome) string {
	return func(as []turtles.Outcome) string {
		if len(as) == 0 {
			return errNoAttempts.Error()
		}
		for _, o := range as {
			if turtles.VerdictOf(o) != v || !strings.Contains(o.Reason, why) {
				return fmt.Sprintf("want every attempt %s (%q): %s", v, why, verdicts(as))
			}
		}
		if !final {
			return "want a pass in the end: " + verdicts(as)
		}
		return ""
	}
}

// firstThenPass: the first attempt is v with a reason or log that has
// why, the second passes.
func firstThenPass(v turtles.Verdict, why string) func([]turtles.Outcome) string {
	return func(as []turtles.Outcome) string {
		if len(as) != 2 || turtles.VerdictOf(as[0]) != v || !strings.Contains(as[0].Reason, why) ||
			as[1].Class != turtles.Success || as[1].Verdict != "" {
			return fmt.Sprintf("want %s (%q) then a pass: %s", v, why, verdicts(as))
		}
		return ""
	}
}

// once: a single attempt of class c and verdict v, its reason having why.
func once(c turtles.Class, v turtles.Verdict, why string) func([]turtles.Outcome) string {
	return func(as []turtles.Outcome) string {
		if len(as) != 1 || as[0].Class != c || turtles.VerdictOf(as[0]) != v || !strings.Contains(as[0].Reason, why) {
			return fmt.Sprintf("want one attempt %s/%s (%q): %s", c, v, why, verdicts(as))
		}
		return ""
	}
}

// flaky: a pass at once has no verdict; failures then a pass end as a
// passing flake. Failing every attempt would be a regression, and wrong.
func flaky(as []turtles.Outcome) string {
	n := len(as)
	switch {
	case n == 0:
		return errNoAttempts.Error()
	case n == 1 && as[0].Class == turtles.Success && as[0].Verdict == "":
		return ""
	case n > 1 && as[n-1].Class == turtles.Success && as[n-1].Verdict == turtles.VerdictFlake &&
		strings.Contains(as[n-1].Reason, "search finds the page"):
		return ""
	}
	return "want a pass, or failures then a flaky pass: " + verdicts(as)
}

// makeRepo makes the corpus's repository at dir and returns its commit.
func makeRepo(ctx context.Context, dir string) (string, error) {
	files := map[string]string{
		".turtles.yaml": "contexts:\n  - name: unused\n    command: ./suite.sh regression\n",
		"suite.sh":      suite,
		filepath.Join(bot.RepoKnownIssues, "5494-frob.yaml"): knownIssue,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			return "", err
		}
	}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=corpus", "GIT_AUTHOR_EMAIL=corpus@example.com",
			"GIT_COMMITTER_NAME=corpus", "GIT_COMMITTER_EMAIL=corpus@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "corpus"}} {
		if _, err := git(args...); err != nil {
			return "", err
		}
	}
	return git("rev-parse", "HEAD")
}

// panicky is the image whose kernel panics on boot.
const panicky = "panicky"

// panickyImages makes dir an images directory with the Debian image of
// from and "panicky": the same kernel and disk without the initrd, so the
// kernel cannot mount its root (virtio_blk is a module) and panics; with
// panic=1 it reboots a second later, which ends QEMU (-no-reboot).
func panickyImages(from, dir string) (string, error) {
	m, err := image.Resolve("debian-12", from)
	if err != nil {
		return "", err
	}
	if m.Kernel == "" {
		return "", fmt.Errorf("corpus: image %s boots without a kernel of its own: cannot make it panic", m.Disk)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := *m
	// No warm start for it: it never comes up to be saved.
	p.Name, p.Initrd, p.Append, p.GuestAgent = panicky, "", "root=/dev/vda rw console=ttyS0 panic=1", false
	for name, man := range map[string]*image.Manifest{"debian-12": m, panicky: &p} {
		b, err := json.MarshalIndent(man, "", "  ")
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}
