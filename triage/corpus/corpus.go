// Package corpus makes a triage corpus out of real faults and runs it
// through a real bot: a guest kernel that panics on boot, sshd killed in
// the guest under a test, a checkout of a commit that does not exist, a
// full disk in the guest, a known issue's line in a failing test, a test
// that fails now and then, a deterministic regression, and a regression
// whose log also has a known issue's line in an unrelated test. Nothing
// is a canned log: each fault happens, on QEMU, git, the sandbox and the
// bot as a user runs them, and the verdicts the bot gives are compared
// with what each fault is.
//
// The triage test (corpus_test.go) and `make bench BENCH=triage` use it;
// nothing else imports it.
package corpus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/bot"
	"github.com/turtles-ci/turtles/config"
	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/queue/sqlite"
	"github.com/turtles-ci/turtles/sandbox"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/triage"
)

// Config is what Run needs.
type Config struct {
	// Dir holds the repository, the queue, the store and the bot's work.
	Dir string
	// Images is a directory with the Debian test image (debian-12.json,
	// image/debian); "" leaves the VM cases out.
	Images string
	// Counts is how many tasks of each case (Cases' names) to run; a case
	// not named runs none. Nil runs one of each.
	Counts map[string]int
	// Random makes the flaky test fail 30 % of its attempts at random,
	// with 5 retries; otherwise it fails its first attempt only.
	Random bool
	// Slots is how many tasks the bot runs at once (default 2).
	Slots int
	// MaxDeliveries bounds every task's attempts, as --max-deliveries
	// does (default 6: the flaky test's first try and its 5 retries).
	MaxDeliveries int
	// Sandbox isolates nothing here (the corpus is trusted work) but is
	// passed to the bot as cmd/turtles does when set.
	Sandbox *sandbox.Sandbox
	Log     *slog.Logger
	// Progress, if set, gets a line at the end of every attempt.
	Progress io.Writer
}

// Case is one kind of fault and the verdicts it must get.
type Case struct {
	Name string
	// VM: the case boots the Debian test image.
	VM bool
	// Regression: the case is a real regression, which must never be
	// given another verdict.
	Regression bool
	// check says what is wrong with the attempts' outcomes, in order,
	// the last one final; "" when they are right.
	check func(attempts []turtles.Outcome) string
	// task fills in the task's command, image and retries.
	task func(t *turtles.Task, random bool)
}

// Result is one task of the corpus and how it went.
type Result struct {
	Case     string
	Task     turtles.Task
	Attempts []turtles.Outcome
	// Wrong says why its verdicts are wrong; "" when they are right.
	Wrong string
}

// Report is what Run found.
type Report struct {
	Results []Result
	// Correct counts the results whose verdicts were all right.
	Correct int
	// RegressionsHidden counts real regressions that ended with another
	// verdict: the goal is 0.
	RegressionsHidden int
	Took              time.Duration
}

// Share is the share of correct runs, 0 to 1.
func (r Report) Share() float64 {
	if len(r.Results) == 0 {
		return 0
	}
	return float64(r.Correct) / float64(len(r.Results))
}

// Summary is one line per case: how many of its runs were right.
func (r Report) Summary() string {
	var b strings.Builder
	for _, c := range Cases {
		n, ok := 0, 0
		for _, x := range r.Results {
			if x.Case == c.Name {
				n++
				if x.Wrong == "" {
					ok++
				}
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "%-22s %3d of %3d right\n", c.Name, ok, n)
		}
	}
	return b.String()
}

// Run runs the corpus: the tasks cfg.Counts asks for, through one bot,
// to their final events.
func Run(ctx context.Context, cfg Config) (Report, error) {
	began := time.Now()
	if cfg.Slots == 0 {
		cfg.Slots = 2
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = 6
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	repo := filepath.Join(cfg.Dir, "repo")
	sha, err := makeRepo(ctx, repo)
	if err != nil {
		return Report{}, err
	}
	// Warm starts, as a bot has them by default: the first machine saves
	// the state, the others restore it.
	vmc := bot.VMConfig{Dir: filepath.Join(cfg.Dir, "vms"), CPUs: 1, MemoryMB: 768,
		BootTimeout: 5 * time.Minute, StopGrace: time.Second, QEMU: "qemu-system-x86_64",
		Warm: filepath.Join(cfg.Dir, "warm")}
	if cfg.Images != "" {
		if vmc.ImagesDir, err = panickyImages(cfg.Images, filepath.Join(cfg.Dir, "images")); err != nil {
			return Report{}, err
		}
	}
	opts := queue.Options{Poll: 10 * time.Millisecond, Clock: clockwork.NewRealClock(), Lease: 2 * time.Minute,
		MaxDeliveries: cfg.MaxDeliveries}
	q, err := sqlite.Open(filepath.Join(cfg.Dir, "queue.db"), opts, nil)
	if err != nil {
		return Report{}, err
	}
	defer q.Close()
	st, err := store.NewDir(filepath.Join(cfg.Dir, "store"))
	if err != nil {
		return Report{}, err
	}
	known, errs := triage.Defaults()
	if len(errs) > 0 {
		return Report{}, fmt.Errorf("turtles' own patterns: %w", errors.Join(errs...))
	}
	b, err := bot.New(bot.Config{
		Name: "corpus", Queue: q, Events: q, Store: st, Pool: turtles.DefaultPool, Slots: cfg.Slots,
		WorkDir:       filepath.Join(cfg.Dir, "work"),
		LogURL:        func(t turtles.Task) string { return "https://ci.example/logs/" + store.AttemptPrefix(t) },
		Triage:        known,
		MaxDeliveries: cfg.MaxDeliveries, RetryDelays: []time.Duration{10 * time.Millisecond},
		Heartbeat: 5 * time.Second, Clock: clockwork.NewRealClock(), KillGrace: time.Second,
		VM: vmc, Sandbox: cfg.Sandbox, Policy: config.Policy{HostPools: []string{turtles.DefaultPool}},
		Registerer: prometheus.NewRegistry(), Log: cfg.Log,
	})
	if err != nil {
		return Report{}, err
	}

	runs := map[string]*Result{}
	var order []string
	for _, c := range Cases {
		n := 1
		if cfg.Counts != nil {
			n = cfg.Counts[c.Name]
		}
		if c.VM && cfg.Images == "" {
			n = 0
		}
		for i := range n {
			t := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest,
				Repo: turtles.Repo{Name: "corpus/repo", CloneURL: "file://" + repo}, SHA: sha,
				Context: fmt.Sprintf("%s-%d", c.Name, i+1), Pool: turtles.DefaultPool, Attempt: 1,
				Trusted: true, Timeout: turtles.Duration(5 * time.Minute), Created: time.Now()}
			c.task(&t, cfg.Random)
			runs[t.Key()] = &Result{Case: c.Name, Task: t}
			order = append(order, t.Key())
		}
	}
	// Interleaved, so that slow and fast cases share the run.
	slices.SortStableFunc(order, func(a, b string) int {
		return strings.Compare(runs[a].Task.Context[len(runs[a].Case):], runs[b].Task.Context[len(runs[b].Case):])
	})
	for _, k := range order {
		if err := q.Publish(ctx, runs[k].Task); err != nil {
			return Report{}, fmt.Errorf("publish %s: %w", k, err)
		}
	}

	botCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(botCtx, botCtx) }()
	defer func() {
		stop()
		<-done
	}()
	for left := len(runs); left > 0; {
		d, err := q.Receive(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("waiting for %d tasks: %w", left, err)
		}
		ev := d.Event()
		if r := runs[ev.Task.Key()]; r != nil && ev.Outcome != nil &&
			(ev.Type == turtles.EventRetrying || ev.Type == turtles.EventFinished) {
			r.Attempts = append(r.Attempts, *ev.Outcome)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "%s attempt %d: %s %s (%s) after %s\n", ev.Task.Context, len(r.Attempts),
					ev.Outcome.Class, turtles.VerdictOf(*ev.Outcome), ev.Outcome.Reason, time.Since(began).Round(time.Second))
			}
			if ev.Type == turtles.EventFinished {
				left--
			}
		}
		if err := d.Ack(ctx); err != nil {
			return Report{}, err
		}
	}

	rep := Report{Took: time.Since(began)}
	for _, k := range order {
		r := runs[k]
		c := caseNamed(r.Case)
		r.Wrong = c.check(r.Attempts)
		if r.Wrong == "" {
			rep.Correct++
		} else if c.Regression && turtles.VerdictOf(r.Attempts[len(r.Attempts)-1]) != turtles.VerdictRegression {
			rep.RegressionsHidden++
		}
		rep.Results = append(rep.Results, *r)
	}
	return rep, nil
}

func caseNamed(name string) Case {
	for _, c := range Cases {
		if c.Name == name {
			return c
		}
	}
	panic("corpus: no case " + name)
}

// missingSHA is a commit that no repository has.
func missingSHA() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// verdicts is the attempts' verdicts, for messages.
func verdicts(attempts []turtles.Outcome) string {
	var s []string
	for _, o := range attempts {
		v := string(turtles.VerdictOf(o))
		if v == "" {
			v = "none"
		}
		s = append(s, fmt.Sprintf("%s/%s (%s)", o.Class, v, o.Reason))
	}
	return strings.Join(s, ", ")
}

var errNoAttempts = errors.New("no attempt ended")
