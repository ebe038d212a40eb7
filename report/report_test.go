package report_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/forge"
	"github.com/turtles-ci/turtles/forge/github"
	"github.com/turtles-ci/turtles/forge/github/githubtest"
	"github.com/turtles-ci/turtles/report"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
	"github.com/turtles-ci/turtles/syncio"
)

const (
	token = "ghp_s3cretT0kenThatMustNeverLeak"
	repo  = "octo/cat"
	sha   = "0123456789abcdef0123456789abcdef01234567"
)

type env struct {
	clock *clockwork.FakeClock // the state database's
	srv   *githubtest.Server
	db    state.DB
	gh    *github.Client
	rep   *report.Reporter
	logs  *syncio.Buffer
	log   *slog.Logger
	reg   *prometheus.Registry
}

// setup wires a Reporter to the fake GitHub through the real client. The
// client uses clientToken; the server accepts token. Every test checks
// that neither token reached the log.
func setup(t *testing.T, clientToken string) *env {
	t.Helper()
	e := &env{srv: githubtest.NewServer(t, token), logs: &syncio.Buffer{}, reg: prometheus.NewRegistry()}
	e.log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gh, err := github.New(github.Config{BaseURL: e.srv.URL, Token: clientToken, Log: e.log})
	if err != nil {
		t.Fatalf("github.New: %v", err)
	}
	e.clock = clockwork.NewFakeClock()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), state.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db, e.gh = db, gh
	e.rep = report.New(report.Config{Forge: gh, Finals: db, Holder: "rep-a", Claim: claim, Statuses: gh, Log: e.log, Registerer: e.reg})
	t.Cleanup(func() {
		if out := e.logs.String(); strings.Contains(out, token) || strings.Contains(out, clientToken) {
			t.Errorf("a token appears in the log:\n%s", out)
		}
	})
	return e
}

// claim is how long a reporter's claim to post a final lasts.
const claim = time.Minute

// reporter returns another reporter on e's forge, named holder, with
// finals in db; statuses says whether it reads the forge's statuses.
func (e *env) reporter(holder string, db report.Finals, statuses bool) *report.Reporter {
	cfg := report.Config{Forge: e.gh, Finals: db, Holder: holder, Claim: claim, Log: e.log}
	if statuses {
		cfg.Statuses = e.gh
	}
	return report.New(cfg)
}

func task(context string, attempt int) turtles.Task {
	kind := turtles.KindTest
	if context == turtles.PlanContext {
		kind = turtles.KindPlan
	}
	return turtles.Task{
		Version: turtles.TaskVersion, Kind: kind,
		Repo: turtles.Repo{Name: repo, CloneURL: "https://github.com/" + repo + ".git"},
		SHA:  sha, Context: context, Pool: turtles.DefaultPool, Attempt: attempt,
	}
}

var nextID int

func event(typ turtles.EventType, context string, attempt int) turtles.Event {
	nextID++
	ev := turtles.Event{ID: fmt.Sprintf("ev%d", nextID), Type: typ, Task: task(context, attempt)}
	if typ != turtles.EventQueued {
		ev.Bot = "bot-1"
		ev.LogURL = "https://ci.example/logs/" + context
	}
	return ev
}

func queued(c string, a int) turtles.Event  { return event(turtles.EventQueued, c, a) }
func started(c string, a int) turtles.Event { return event(turtles.EventStarted, c, a) }

func retrying(c string, a int) turtles.Event {
	ev := event(turtles.EventRetrying, c, a)
	ev.Outcome = &turtles.Outcome{Class: turtles.Infra, Reason: "the VM did not boot within 5m0s"}
	return ev
}

func finished(c string, a int, class turtles.Class, reason string) turtles.Event {
	ev := event(turtles.EventFinished, c, a)
	ev.Outcome = &turtles.Outcome{Class: class, Reason: reason}
	return ev
}

func status(context, state, target, desc string) githubtest.Status {
	return githubtest.Status{Repo: repo, SHA: sha, Context: context, State: state, TargetURL: target, Description: desc}
}

const logLinux = "https://ci.example/logs/linux"

func TestReporter(t *testing.T) {
	plan := turtles.PlanContext
	logPlan := "https://ci.example/logs/" + plan
	long := strings.Repeat("é", 300)
	noOutcome := event(turtles.EventFinished, "linux", 1)

	tests := []struct {
		name   string
		events []turtles.Event
		want   []githubtest.Status
	}{
		{name: "queued", events: []turtles.Event{queued("linux", 1)},
			want: []githubtest.Status{status("linux", "pending", "", "Queued")}},
		{name: "started", events: []turtles.Event{started("linux", 1)},
			want: []githubtest.Status{status("linux", "pending", logLinux, "Running on bot-1")}},
		{name: "retrying names the next attempt", events: []turtles.Event{retrying("linux", 1)},
			want: []githubtest.Status{status("linux", "pending", logLinux, "Infrastructure problem, retrying (attempt 2): the VM did not boot within 5m0s")}},
		{name: "success", events: []turtles.Event{finished("linux", 1, turtles.Success, "")},
			want: []githubtest.Status{status("linux", "success", logLinux, "Tests passed")}},
		{name: "failure with reason", events: []turtles.Event{finished("linux", 1, turtles.Failure, "3 tests failed")},
			want: []githubtest.Status{status("linux", "failure", logLinux, "3 tests failed")}},
		{name: "failure without reason", events: []turtles.Event{finished("linux", 1, turtles.Failure, "")},
			want: []githubtest.Status{status("linux", "failure", logLinux, "Tests failed")}},
		{name: "infra", events: []turtles.Event{finished("linux", 3, turtles.Infra, "image debian-12-0123456789ab could not be fetched")},
			want: []githubtest.Status{status("linux", "error", logLinux, "Infrastructure failure: image debian-12-0123456789ab could not be fetched")}},
		{name: "cancelled", events: []turtles.Event{finished("linux", 1, turtles.Cancelled, "superseded by a newer push")},
			want: []githubtest.Status{status("linux", "error", logLinux, "Cancelled: superseded by a newer push")}},
		{name: "cancelled without reason", events: []turtles.Event{finished("linux", 1, turtles.Cancelled, "")},
			want: []githubtest.Status{status("linux", "error", logLinux, "Cancelled")}},
		{name: "finished without outcome", events: []turtles.Event{noOutcome},
			want: []githubtest.Status{status("linux", "error", logLinux, "Finished without an outcome")}},
		{name: "long reason is cut", events: []turtles.Event{finished("linux", 1, turtles.Failure, long)},
			want: []githubtest.Status{status("linux", "failure", logLinux, strings.Repeat("é", 139)+"…")}},
		{
			name: "life with a retry",
			events: []turtles.Event{
				queued("linux", 1), started("linux", 1), retrying("linux", 1),
				started("linux", 2), finished("linux", 2, turtles.Success, ""),
			},
			want: []githubtest.Status{
				status("linux", "pending", "", "Queued"),
				status("linux", "pending", logLinux, "Running on bot-1"),
				status("linux", "pending", logLinux, "Infrastructure problem, retrying (attempt 2): the VM did not boot within 5m0s"),
				status("linux", "pending", logLinux, "Running on bot-1"),
				status("linux", "success", logLinux, "Tests passed"),
			},
		},
		{
			name: "no going back after final",
			events: []turtles.Event{
				started("linux", 1), finished("linux", 1, turtles.Success, ""),
				started("linux", 1), queued("linux", 1), retrying("linux", 1), finished("linux", 1, turtles.Failure, ""),
			},
			want: []githubtest.Status{
				status("linux", "pending", logLinux, "Running on bot-1"),
				status("linux", "success", logLinux, "Tests passed"),
			},
		},
		{
			name:   "an older attempt's final does not undo a later attempt's",
			events: []turtles.Event{finished("linux", 2, turtles.Success, ""), finished("linux", 1, turtles.Failure, "")},
			want:   []githubtest.Status{status("linux", "success", logLinux, "Tests passed")},
		},
		{
			name:   "a late queued does not report over running",
			events: []turtles.Event{started("linux", 1), queued("linux", 1)},
			want:   []githubtest.Status{status("linux", "pending", logLinux, "Running on bot-1")},
		},
		{
			name:   "a stale attempt does not report over a running one",
			events: []turtles.Event{started("linux", 2), started("linux", 1)},
			want:   []githubtest.Status{status("linux", "pending", logLinux, "Running on bot-1")},
		},
		{
			name: "a retest reports again",
			events: []turtles.Event{
				finished("linux", 1, turtles.Failure, "flaky"),
				queued("linux", 2), started("linux", 2), finished("linux", 2, turtles.Success, ""),
			},
			want: []githubtest.Status{
				status("linux", "failure", logLinux, "flaky"),
				status("linux", "pending", "", "Queued"),
				status("linux", "pending", logLinux, "Running on bot-1"),
				status("linux", "success", logLinux, "Tests passed"),
			},
		},
		{
			name: "contexts are independent",
			events: []turtles.Event{
				finished("linux", 1, turtles.Success, ""), started("bsd", 1),
			},
			want: []githubtest.Status{
				status("linux", "success", logLinux, "Tests passed"),
				status("bsd", "pending", "https://ci.example/logs/bsd", "Running on bot-1"),
			},
		},
		{
			name:   "healthy plan is silent",
			events: []turtles.Event{queued(plan, 1), started(plan, 1), retrying(plan, 1), finished(plan, 2, turtles.Success, "")},
		},
		{
			name:   "broken .turtles.yaml",
			events: []turtles.Event{queued(plan, 1), started(plan, 1), finished(plan, 1, turtles.Failure, ".turtles.yaml:7: unknown key \"comand\"")},
			want:   []githubtest.Status{status(plan, "failure", logPlan, ".turtles.yaml:7: unknown key \"comand\"")},
		},
		{
			name:   "plan infra",
			events: []turtles.Event{finished(plan, 5, turtles.Infra, "the repository could not be fetched")},
			want:   []githubtest.Status{status(plan, "error", logPlan, "Infrastructure failure: the repository could not be fetched")},
		},
		{
			name: "a fixed plan clears its red status",
			events: []turtles.Event{
				finished(plan, 1, turtles.Failure, ".turtles.yaml:1: bad"),
				started(plan, 2), finished(plan, 2, turtles.Success, ""),
			},
			want: []githubtest.Status{
				status(plan, "failure", logPlan, ".turtles.yaml:1: bad"),
				status(plan, "success", logPlan, "Read .turtles.yaml"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, token)
			for _, ev := range tt.events {
				if err := e.rep.Handle(context.Background(), ev); err != nil {
					t.Fatalf("Handle(%s attempt %d): %v", ev.Type, ev.Task.Attempt, err)
				}
			}
			if diff := cmp.Diff(tt.want, e.srv.Statuses()); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	}
}

// Finals live in the state database: a reporter that restarts, or a
// second one on the same database, posts no final status again, nor a
// stale non-final one over it.
func TestReporterRemembersFinals(t *testing.T) {
	e := setup(t, token)
	ctx := t.Context()
	fin := finished("linux", 1, turtles.Success, "")
	if err := e.rep.Handle(ctx, fin); err != nil {
		t.Fatal(err)
	}
	again := e.reporter("rep-b", e.db, true)
	for _, ev := range []turtles.Event{fin, finished("linux", 1, turtles.Failure, "a duplicate run"), started("linux", 1), queued("linux", 1)} {
		if err := again.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := again.PostUnposted(ctx); err != nil || n != 0 {
		t.Errorf("PostUnposted = %d, %v; want 0, nil", n, err)
	}
	want := []githubtest.Status{status("linux", "success", logLinux, "Tests passed")}
	if diff := cmp.Diff(want, e.srv.Statuses()); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// TestTwoReportersOneFinal: two reporters on one state database receive
// the same final events, each a different run's of the same attempt (a
// duplicate delivery ran twice), in either order: the forge gets exactly
// one final status per attempt, the first one recorded, also when the
// first reporter died before it posted.
func TestTwoReportersOneFinal(t *testing.T) {
	e := setup(t, token)
	ctx := t.Context()
	other := e.reporter("rep-b", e.db, true)
	passed, failed := finished("linux", 1, turtles.Success, ""), finished("linux", 1, turtles.Failure, "a duplicate run")
	for _, step := range []struct {
		rep *report.Reporter
		ev  turtles.Event
	}{{e.rep, passed}, {other, failed}, {other, passed}, {e.rep, failed}} {
		if err := step.rep.Handle(ctx, step.ev); err != nil {
			t.Fatal(err)
		}
	}
	// A reporter dies after recording the final of attempt 2: the
	// forge answers 502, and it is never tried again by this one.
	e.srv.FailNext(1, 502)
	fin2 := finished("linux", 2, turtles.Failure, "tests failed")
	if err := e.rep.Handle(ctx, fin2); err == nil {
		t.Fatal("Handle with a 502 succeeded")
	}
	// The other one leaves it while the dead one's claim holds, then
	// takes over: the unposted final is posted once, and the event,
	// delivered again, posts nothing more.
	if n, err := other.PostUnposted(ctx); err != nil || n != 0 {
		t.Fatalf("PostUnposted while the claim holds = %d, %v; want 0, nil", n, err)
	}
	e.clock.Advance(claim)
	if n, err := other.PostUnposted(ctx); err != nil || n != 1 {
		t.Fatalf("PostUnposted = %d, %v; want 1, nil", n, err)
	}
	if err := other.Handle(ctx, fin2); err != nil {
		t.Fatal(err)
	}
	if n, err := other.PostUnposted(ctx); err != nil || n != 0 {
		t.Errorf("PostUnposted again = %d, %v; want 0, nil", n, err)
	}
	want := []githubtest.Status{
		status("linux", "success", logLinux, "Tests passed"),
		status("linux", "failure", logLinux, "tests failed"),
	}
	if diff := cmp.Diff(want, e.srv.Statuses()); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// A final of an older attempt recorded after a newer one's is never
// posted, also by PostUnposted, and is marked so that it is not listed
// again.
func TestUnpostedOlderAttempt(t *testing.T) {
	e := setup(t, token)
	ctx := t.Context()
	if _, _, err := e.db.RecordFinal(ctx, finished("linux", 1, turtles.Failure, "old")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.db.RecordFinal(ctx, finished("linux", 2, turtles.Success, "")); err != nil {
		t.Fatal(err)
	}
	if n, err := e.rep.PostUnposted(ctx); err != nil || n != 2 {
		t.Fatalf("PostUnposted = %d, %v; want 2 handled, nil", n, err)
	}
	if left, err := e.db.Unposted(ctx, 0); err != nil || len(left) != 0 {
		t.Errorf("Unposted after PostUnposted = %+v, %v; want none", left, err)
	}
	want := []githubtest.Status{status("linux", "success", logLinux, "Tests passed")}
	if diff := cmp.Diff(want, e.srv.Statuses()); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestReporterMetrics(t *testing.T) {
	e := setup(t, token)
	ctx := context.Background()
	for _, ev := range []turtles.Event{queued("linux", 1), started("linux", 1), finished("linux", 1, turtles.Failure, "")} {
		if err := e.rep.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.FailNext(1, 502)
	if err := e.rep.Handle(ctx, finished("bsd", 1, turtles.Success, "")); err == nil {
		t.Fatal("Handle with a 502 succeeded")
	}
	e.srv.FailNext(1, 404)
	if err := e.rep.Handle(ctx, finished("bsd", 1, turtles.Success, "")); err == nil {
		t.Fatal("Handle with a 404 succeeded")
	}
	const help = `# HELP turtles_forge_errors_total Failed attempts to set a commit status, by kind: permanent, rate_limit, retryable.
# TYPE turtles_forge_errors_total counter
turtles_forge_errors_total{kind="permanent"} 1
turtles_forge_errors_total{kind="retryable"} 1
# HELP turtles_statuses_total Commit statuses set on the forge, by state.
# TYPE turtles_statuses_total counter
turtles_statuses_total{state="failure"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(help+`turtles_statuses_total{state="pending"} 2
`)); err != nil {
		t.Errorf("metrics: %v", err)
	}
	// A second reporter on the same registry shares the counters.
	rep2 := report.New(report.Config{Forge: e.gh, Finals: e.db, Holder: "rep-b", Claim: claim, Registerer: e.reg})
	if err := rep2.Handle(ctx, queued("arm", 1)); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(help+`turtles_statuses_total{state="pending"} 3
`)); err != nil {
		t.Errorf("metrics after a second reporter: %v", err)
	}
}

// markFails is Finals whose MarkPosted fails: a reporter that dies after
// the forge took its status and before it recorded that.
type markFails struct{ report.Finals }

func (markFails) MarkPosted(context.Context, string, int) error {
	return fmt.Errorf("the reporter died")
}

// TestTakeover: a reporter claims a final and dies, at one of two
// moments. Another takes over only when the claim lapsed, and reads the
// forge first: what the dead one posted is not posted again; what it did
// not post is. Without a way to read statuses, it is posted twice.
func TestTakeover(t *testing.T) {
	for _, tt := range []struct {
		name     string
		posted   bool // the dead reporter's status reached the forge
		statuses bool // the one taking over reads the forge's statuses
		want     int  // final statuses on the forge, in the end
	}{
		{"died after posting", true, true, 1},
		{"died before posting", false, true, 1},
		{"died after posting, no status reader", true, false, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, token)
			ctx := t.Context()
			dead := e.reporter("rep-dead", markFails{e.db}, true)
			if !tt.posted {
				e.srv.FailNext(1, 502)
			}
			if err := dead.Handle(ctx, finished("linux", 1, turtles.Failure, "tests failed")); err == nil {
				t.Fatal("Handle by the dying reporter succeeded")
			}
			other := e.reporter("rep-b", e.db, tt.statuses)
			e.clock.Advance(claim - time.Second)
			if n, err := other.PostUnposted(ctx); err != nil || n != 0 {
				t.Fatalf("PostUnposted while the claim holds = %d, %v; want 0", n, err)
			}
			e.clock.Advance(time.Second)
			if n, err := other.PostUnposted(ctx); err != nil || n != 1 {
				t.Fatalf("PostUnposted after the claim lapsed = %d, %v; want 1", n, err)
			}
			if n, err := e.rep.PostUnposted(ctx); err != nil || n != 0 {
				t.Errorf("PostUnposted by a third reporter = %d, %v; want 0", n, err)
			}
			var got int
			for _, st := range e.srv.Statuses() {
				if st.State == "failure" {
					got++
				}
			}
			if got != tt.want {
				t.Errorf("%d final statuses on the forge, want %d: %+v", got, tt.want, e.srv.Statuses())
			}
			if tt.posted && tt.statuses && !strings.Contains(e.logs.String(), "final status found on the forge") {
				t.Errorf("the takeover did not log what it found:\n%s", e.logs.String())
			}
		})
	}
}

// markFailsOnce is Finals whose next MarkPosted fails, as when the state
// database restarts between posting and marking.
type markFailsOnce struct {
	report.Finals
	failed *bool
}

func (m markFailsOnce) MarkPosted(ctx context.Context, key string, attempt int) error {
	if !*m.failed {
		*m.failed = true
		return fmt.Errorf("state database unavailable")
	}
	return m.Finals.MarkPosted(ctx, key, attempt)
}

// TestMarkFailsThenRetry: the forge took a final and the state database
// failed before it was marked posted. The retry of the event marks it and
// does not post it again, with or without a way to read the forge.
func TestMarkFailsThenRetry(t *testing.T) {
	for _, statuses := range []bool{true, false} {
		t.Run(fmt.Sprintf("statuses=%v", statuses), func(t *testing.T) {
			e := setup(t, token)
			ctx := t.Context()
			failed := false
			rep := e.reporter("rep-db-down", markFailsOnce{e.db, &failed}, statuses)
			ev := finished("linux", 1, turtles.Success, "")
			if err := rep.Handle(ctx, ev); err == nil {
				t.Fatal("Handle succeeded while marking failed")
			}
			if err := rep.Handle(ctx, ev); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if n, err := rep.PostUnposted(ctx); err != nil || n != 0 {
				t.Errorf("PostUnposted after the retry = %d, %v; want 0", n, err)
			}
			if n := len(e.srv.Statuses()); n != 1 {
				t.Errorf("%d statuses on the forge, want 1: %+v", n, e.srv.Statuses())
			}
		})
	}
}

// TestLiveReportersOneFinal: two live reporters get the two final events
// of one attempt (a duplicate run) at the same moment, while one of them
// sweeps, many times over: the forge gets exactly one final status per
// attempt.
func TestLiveReportersOneFinal(t *testing.T) {
	e := setup(t, token)
	ctx := t.Context()
	reps := []*report.Reporter{e.rep, e.reporter("rep-b", e.db, true)}
	const attempts = 20
	for a := 1; a <= attempts; a++ {
		evs := []turtles.Event{finished("linux", a, turtles.Success, ""), finished("linux", a, turtles.Failure, "a duplicate run")}
		start := make(chan struct{})
		errs := make(chan error, 3)
		for i, rep := range reps {
			go func() {
				<-start
				errs <- rep.Handle(ctx, evs[(i+a)%2])
			}()
		}
		go func() { // and one reporter's own sweep, at the same time
			<-start
			_, err := reps[0].PostUnposted(ctx)
			errs <- err
		}()
		close(start)
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(e.srv.Statuses()); n != attempts {
		t.Errorf("%d statuses for %d attempts, want one each", n, attempts)
	}
}

// gatedForge holds every SetStatus until release is closed, and tells of
// the first on setting.
type gatedForge struct {
	forge.Forge
	setting chan struct{}
	release chan struct{}
}

func (g gatedForge) SetStatus(ctx context.Context, repo, sha string, st forge.Status) error {
	select {
	case g.setting <- struct{}{}:
	default:
	}
	<-g.release
	return g.Forge.SetStatus(ctx, repo, sha, st)
}

// listedFinals holds PostUnposted after it listed, until proceed closes.
type listedFinals struct {
	report.Finals
	listed  chan struct{}
	proceed chan struct{}
}

func (l listedFinals) Unposted(ctx context.Context, n int) ([]state.Final, error) {
	fs, err := l.Finals.Unposted(ctx, n)
	l.listed <- struct{}{}
	<-l.proceed
	return fs, err
}

// TestSweepWhilePosting: a reporter's sweep listed a final just before
// its event consumer claimed and began to post it; the sweep must not
// post it too (the claim is the reporter's, both goroutines hold it).
func TestSweepWhilePosting(t *testing.T) {
	e := setup(t, token)
	ctx := t.Context()
	gf := gatedForge{Forge: e.gh, setting: make(chan struct{}, 1), release: make(chan struct{})}
	lf := listedFinals{Finals: e.db, listed: make(chan struct{}, 1), proceed: make(chan struct{})}
	rep := report.New(report.Config{Forge: gf, Finals: lf, Holder: "rep-x", Claim: claim, Log: e.log})
	fin := finished("linux", 1, turtles.Success, "")
	if _, _, err := e.db.RecordFinal(ctx, fin); err != nil {
		t.Fatal(err)
	}
	swept := make(chan error, 1)
	go func() { _, err := rep.PostUnposted(ctx); swept <- err }()
	<-lf.listed
	handled := make(chan error, 1)
	go func() { handled <- rep.Handle(ctx, fin) }()
	<-gf.setting // the consumer is posting
	close(lf.proceed)
	close(gf.release)
	if err := <-handled; err != nil {
		t.Fatal(err)
	}
	if err := <-swept; err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Statuses()); n != 1 {
		t.Errorf("%d statuses, want 1: %+v", n, e.srv.Statuses())
	}
}

// TestSweepPlanSuccess: a sweep posts a plan's success (after a first
// attempt) only to clear a red plan status the forge shows; the event
// consumer, handling the same final at the same time, posted nothing for
// a healthy commit, and neither must the sweep.
func TestSweepPlanSuccess(t *testing.T) {
	plan := turtles.PlanContext
	for _, tt := range []struct {
		name     string
		before   []turtles.Event // handled first
		statuses bool
		want     int // plan statuses on the forge after the sweep
	}{
		{"nothing red on the forge", nil, true, 0},
		{"a red plan status", []turtles.Event{finished(plan, 1, turtles.Infra, "planning failed")}, true, 2},
		{"no status reader", nil, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, token)
			ctx := t.Context()
			for _, ev := range tt.before {
				if err := e.rep.Handle(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := e.db.RecordFinal(ctx, finished(plan, 2, turtles.Success, "queued 3 of 3 contexts")); err != nil {
				t.Fatal(err)
			}
			sweeper := e.reporter("rep-b", e.db, tt.statuses)
			if n, err := sweeper.PostUnposted(ctx); err != nil || n != 1 {
				t.Fatalf("PostUnposted = %d, %v; want 1 handled", n, err)
			}
			if got := len(e.srv.Statuses()); got != tt.want {
				t.Errorf("%d plan statuses, want %d: %+v", got, tt.want, e.srv.Statuses())
			}
		})
	}
}
