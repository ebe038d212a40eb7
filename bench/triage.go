package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/turtles-ci/turtles/image/debian"
	"github.com/turtles-ci/turtles/triage/corpus"
	"github.com/turtles-ci/turtles/vm"
)

func init() { register("triage", triageCorpus) }

// triageCounts is the bench's 200 tasks. The VM faults cost one to six
// boots of the Debian image each under TCG, so there are fewer of them;
// every case is run at least 4 times.
var triageCounts = map[string]int{
	"kernel-panic": 4, "sshd-killed": 4, "disk-full": 4,
	"missing-commit": 36, "known-issue": 38, "flaky": 38, "regression": 38, "unrelated-known": 38,
}

// triageCorpus runs 200 tasks of real faults (package triage/corpus)
// through a real bot, the flaky test failing 30 % of its attempts at
// random with 5 retries, and prints the share of right verdicts. Goal
// (issue 16): >= 99 %, and no regression given another verdict.
func triageCorpus(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("building the Debian test image needs root")
	}
	fmt.Println("==> the Debian test image (built once, then cached)")
	m, err := debian.Cached(ctx, debian.CacheDir(), "debian-12", "http://deb.debian.org/debian", nil, slog.Default())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "turtles-bench-triage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	n := 0
	for _, c := range triageCounts {
		n += c
	}
	fmt.Printf("==> %d tasks through a bot with 2 slots (VMs under %s)\n", n, map[bool]string{true: "KVM", false: "TCG"}[vm.KVMUsable()])
	rep, err := corpus.Run(ctx, corpus.Config{Dir: dir, Images: filepath.Dir(m), Counts: triageCounts, Random: true, Progress: os.Stderr,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		return err
	}
	fmt.Print(rep.Summary())
	for _, r := range rep.Results {
		if r.Wrong != "" {
			fmt.Printf("wrong: %s: %s\n", r.Task.Context, r.Wrong)
		}
	}
	fmt.Printf("%d of %d right in %s; %d regressions given another verdict (goal: 0)\n",
		rep.Correct, len(rep.Results), rep.Took.Round(1e9), rep.RegressionsHidden)
	result("triage", fmt.Sprintf("%.1f", 100*rep.Share()), "% right", ">= 99")
	if rep.RegressionsHidden != 0 {
		return fmt.Errorf("%d regressions given another verdict", rep.RegressionsHidden)
	}
	return nil
}
