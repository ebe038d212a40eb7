package statetest

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// The history of tasks and attempts.

// ev is an event of context "unit", timed by the length of its ID so
// that the order of a table's events is the order of their times.
func ev(id string, typ turtles.EventType, attempt int, class turtles.Class) turtles.Event {
	e := turtles.Event{ID: id, Type: typ, Task: Task("unit", attempt), Bot: "bot-1",
		LogURL: fmt.Sprintf("http://x/tasks/t/%d", attempt), Time: t0.Add(time.Duration(len(id)) * time.Second)}
	if class != "" {
		e.Outcome = &turtles.Outcome{Class: class, Reason: string(class)}
	}
	return e
}

type summary struct {
	State    state.TaskState
	Class    turtles.Class
	Attempts []string // "N:state:class"
}

func summarize(t state.Task) summary {
	s := summary{State: t.State}
	if t.Outcome != nil {
		s.Class = t.Outcome.Class
	}
	for _, a := range t.Attempts {
		c := ""
		if a.Outcome != nil {
			c = string(a.Outcome.Class)
		}
		s.Attempts = append(s.Attempts, fmt.Sprintf("%d:%s:%s", a.Number, a.State, c))
	}
	return s
}

func testRecord(t *testing.T, o opener) {
	tests := []struct {
		name   string
		events []turtles.Event
		want   summary
	}{{
		name:   "queued",
		events: []turtles.Event{ev("q", turtles.EventQueued, 1, "")},
		want:   summary{State: state.Queued},
	}, {
		name:   "success",
		events: []turtles.Event{ev("q", turtles.EventQueued, 1, ""), ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success)},
		want:   summary{State: state.Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}},
	}, {
		name: "infra retry then failure",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("r1x", turtles.EventRetrying, 1, turtles.Infra),
			ev("s2xxx", turtles.EventStarted, 2, ""), ev("f2xxxx", turtles.EventFinished, 2, turtles.Failure)},
		want: summary{State: state.Finished, Class: turtles.Failure, Attempts: []string{"1:retrying:infra", "2:finished:failure"}},
	}, {
		name: "late start of a lost lease does not reopen",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success),
			ev("s1-late", turtles.EventStarted, 1, "")},
		want: summary{State: state.Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}},
	}, {
		name: "older attempt's events are history only",
		events: []turtles.Event{ev("s2xxx", turtles.EventStarted, 2, ""),
			ev("f1x", turtles.EventFinished, 1, turtles.Infra)},
		want: summary{State: state.Running, Attempts: []string{"1:finished:infra", "2:running:"}},
	}, {
		name:   "queued arriving after started",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("q", turtles.EventQueued, 1, "")},
		want:   summary{State: state.Running, Attempts: []string{"1:running:"}},
	}, {
		name:   "queued arriving after finished",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success), ev("q", turtles.EventQueued, 1, "")},
		want:   summary{State: state.Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}},
	}, {
		name:   "duplicate event applied once",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("s1", turtles.EventStarted, 1, "")},
		want:   summary{State: state.Running, Attempts: []string{"1:running:"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One database for all cases: a case's task is its own, by
			// its context.
			ctx := t.Context()
			db := o.db(t)
			seen := map[string]bool{}
			for _, e := range tt.events {
				e.Task.Context = contextOf(tt.name)
				e.ID = tt.name + "/" + e.ID
				rec, err := db.Record(ctx, e)
				if err != nil {
					t.Fatalf("Record(%s): %v", e.ID, err)
				}
				if rec.New == seen[e.ID] {
					t.Errorf("Record(%s).New = %v, want %v", e.ID, rec.New, !seen[e.ID])
				}
				seen[e.ID] = true
			}
			task := Task(contextOf(tt.name), 1)
			got, err := db.Get(ctx, task.ID())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("task (-want +got):\n%s", diff)
			}
			if got.Key != task.Key() || got.Repo != task.Repo.Name || got.SHA != task.SHA || got.Context != task.Context ||
				got.Kind != task.Kind || got.Pool != task.Pool {
				t.Errorf("task = %+v, want the identity of %+v", got, task)
			}
		})
	}
}

// contextOf makes a valid context name of a test case's name.
func contextOf(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// testRecordRace records each event of a task from 8 recorders on 4
// handles at once: each is applied exactly once.
func testRecordRace(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 4, state.Options{})
	for _, e := range []turtles.Event{ev("q", turtles.EventQueued, 1, ""), ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success)} {
		var news atomic.Int32
		race(8, func(i int) {
			rec, err := dbs[i%len(dbs)].Record(ctx, e)
			if err != nil {
				t.Errorf("Record(%s): %v", e.ID, err)
			}
			if rec.New {
				news.Add(1)
			}
		})
		if n := news.Load(); n != 1 {
			t.Errorf("%s: %d recorders applied it, want exactly 1", e.ID, n)
		}
	}
	got, err := dbs[0].Get(ctx, Task("unit", 1).ID())
	if err != nil {
		t.Fatal(err)
	}
	want := summary{State: state.Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}}
	if diff := cmp.Diff(want, summarize(got)); diff != "" {
		t.Errorf("task (-want +got):\n%s", diff)
	}
}

// testRecordConcurrentEvents records the different events of 10 tasks at
// once from 4 handles, each task's in any order: none fails, and every
// task ends finished, with its attempts.
func testRecordConcurrentEvents(t *testing.T, o opener) {
	ctx := t.Context()
	dbs := o.handles(t, 4, state.Options{})
	var evs []turtles.Event
	for k := range 10 {
		c := fmt.Sprintf("ctx%d", k)
		for _, e := range []turtles.Event{
			ev("q", turtles.EventQueued, 1, ""), ev("s1", turtles.EventStarted, 1, ""),
			ev("r1x", turtles.EventRetrying, 1, turtles.Infra), ev("s2xxx", turtles.EventStarted, 2, ""),
			ev("h2xxxx", turtles.EventHeartbeat, 2, ""), ev("f2xxxxx", turtles.EventFinished, 2, turtles.Success),
		} {
			e.Task.Context, e.ID = c, c+"/"+e.ID
			evs = append(evs, e)
		}
	}
	race(len(evs), func(i int) {
		if _, err := dbs[i%len(dbs)].Record(ctx, evs[i]); err != nil {
			t.Errorf("Record(%s): %v", evs[i].ID, err)
		}
	})
	tasks, err := dbs[1].List(ctx, state.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 10 {
		t.Fatalf("List = %d tasks, want 10", len(tasks))
	}
	want := summary{State: state.Finished, Class: turtles.Success, Attempts: []string{"1:retrying:infra", "2:finished:success"}}
	for _, task := range tasks {
		if diff := cmp.Diff(want, summarize(task)); diff != "" {
			t.Errorf("task %s (-want +got):\n%s", task.Context, diff)
		}
	}
}

func testListAndGet(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	other := ev("o", turtles.EventQueued, 1, "")
	other.Task.Context = "integration"
	otherRepo := ev("p", turtles.EventQueued, 1, "")
	otherRepo.Task.Repo.Name, otherRepo.Task.Context = "octo/other", "lint"
	otherRepo.Time = t0.Add(1500 * time.Millisecond) // between the two others
	for _, e := range []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), other, otherRepo} {
		if _, err := db.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    state.Filter
		want []string // contexts, most recently updated first
	}{
		{"all", state.Filter{}, []string{"unit", "lint", "integration"}},
		{"by state", state.Filter{State: state.Queued}, []string{"lint", "integration"}},
		{"by sha and repo", state.Filter{SHA: Task("unit", 1).SHA, Repo: "octo/hello"}, []string{"unit", "integration"}},
		{"by repo", state.Filter{Repo: "octo/other"}, []string{"lint"}},
		{"limited", state.Filter{Limit: 1}, []string{"unit"}},
		{"unknown repo", state.Filter{Repo: "octo/none"}, nil},
	}
	for _, tt := range tests {
		got, err := db.List(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, x := range got {
			names = append(names, x.Context)
		}
		if diff := cmp.Diff(tt.want, names); diff != "" {
			t.Errorf("%s: List(%+v) (-want +got):\n%s", tt.name, tt.f, diff)
		}
	}
	got, err := db.Get(ctx, Task("unit", 1).ID())
	if err != nil {
		t.Fatal(err)
	}
	started := t0.Add(2 * time.Second)
	want := state.Task{
		ID: Task("unit", 1).ID(), Key: Task("unit", 1).Key(), Kind: turtles.KindTest, Repo: "octo/hello",
		SHA: Task("unit", 1).SHA, Context: "unit", Pool: "public", State: state.Running,
		LogURL: "http://x/tasks/t/1", Created: started, Updated: started,
		Attempts: []state.Attempt{{Number: 1, Bot: "bot-1", State: state.Running, LogURL: "http://x/tasks/t/1", Started: &started}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	if _, err := db.Get(ctx, "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
}

func testLost(t *testing.T, o opener) {
	at := func(e turtles.Event, d time.Duration) turtles.Event { e.Time = t0.Add(d); return e }
	started := func(attempt int, bot string, d time.Duration) turtles.Event {
		e := at(ev("s"+string(rune('0'+attempt)), turtles.EventStarted, attempt, ""), d)
		e.Bot = bot
		return e
	}
	beat := func(id string, attempt int, d time.Duration) turtles.Event {
		return at(ev(id, turtles.EventHeartbeat, attempt, ""), d)
	}
	lost := func(id string, attempt int, d time.Duration) turtles.Event {
		e := at(ev(id, turtles.EventLost, attempt, turtles.Infra), d)
		e.Bot, e.LogURL = "", ""
		return e
	}
	tests := []struct {
		name       string
		events     []turtles.Event
		want       summary
		wantReason string // of the lost attempt
		wantEnded  []string
	}{{
		name: "the bot died; the next attempt passed",
		events: []turtles.Event{
			started(1, "bot2", 0), beat("b1", 1, 20*time.Second), beat("b2", 1, 36*time.Second),
			beat("b-late", 1, 30*time.Second), // out of order: the latest stays
			lost("l1", 1, 90*time.Second),
			started(2, "bot1", 91*time.Second), at(ev("f2", turtles.EventFinished, 2, turtles.Success), 95*time.Second),
		},
		want:       summary{State: state.Finished, Class: turtles.Success, Attempts: []string{"1:retrying:infra", "2:finished:success"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:36 UTC",
		wantEnded:  []string{"1: bot bot2 stopped heart-beating at 16:02:36 UTC (ran 90s)"},
	}, {
		name:       "no heartbeat yet: the start is the last sign of life",
		events:     []turtles.Event{started(1, "bot2", 5*time.Second), lost("l1", 1, 90*time.Second)},
		want:       summary{State: state.Retrying, Class: turtles.Infra, Attempts: []string{"1:retrying:infra"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:05 UTC",
		wantEnded:  []string{"1: bot bot2 stopped heart-beating at 16:02:05 UTC (ran 85s)"},
	}, {
		name: "the bot ran it as a later attempt",
		events: []turtles.Event{
			started(3, "bot2", 0), beat("b1", 1, 10*time.Second), lost("l1", 1, 90*time.Second),
		},
		want:       summary{State: state.Retrying, Class: turtles.Infra, Attempts: []string{"3:retrying:infra"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:10 UTC",
		wantEnded:  []string{"3: bot bot2 stopped heart-beating at 16:02:10 UTC (ran 90s)"},
	}, {
		name:      "the bot died before it started: nothing to end",
		events:    []turtles.Event{at(ev("q", turtles.EventQueued, 1, ""), 0), lost("l1", 1, 90*time.Second)},
		want:      summary{State: state.Queued},
		wantEnded: nil,
	}, {
		name: "the lost event delivered twice ends the attempt once",
		events: []turtles.Event{
			started(1, "bot2", 0), lost("l1", 1, 90*time.Second), lost("l1", 1, 90*time.Second),
		},
		want:       summary{State: state.Retrying, Class: turtles.Infra, Attempts: []string{"1:retrying:infra"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:00 UTC",
		wantEnded:  []string{"1: bot bot2 stopped heart-beating at 16:02:00 UTC (ran 90s)"},
	}, {
		name: "a finished attempt is not lost",
		events: []turtles.Event{
			started(1, "bot2", 0), at(ev("f1", turtles.EventFinished, 1, turtles.Failure), 30*time.Second),
			lost("l1", 1, 90*time.Second),
		},
		want: summary{State: state.Finished, Class: turtles.Failure, Attempts: []string{"1:finished:failure"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := o.db(t)
			c := contextOf(tt.name)
			var ended []string
			for _, e := range tt.events {
				e.Task.Context, e.ID = c, c+"/"+e.ID
				rec, err := db.Record(ctx, e)
				if err != nil {
					t.Fatalf("Record(%s): %v", e.ID, err)
				}
				if res := rec.Lost; res != nil {
					if res.Task.Key() != e.Task.Key() || res.Outcome.Class != turtles.Infra || res.Outcome.ExitCode != -1 || !res.Finished.Equal(e.Time) {
						t.Errorf("lost attempt's result = %+v, want the task's, infra, exit -1, finished at %v", res, e.Time)
					}
					ended = append(ended, fmt.Sprintf("%d: %s (ran %gs)", res.Task.Attempt, res.Outcome.Reason, res.Duration))
				}
			}
			got, err := db.Get(ctx, Task(c, 1).ID())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("task (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEnded, ended); diff != "" {
				t.Errorf("attempts ended (-want +got):\n%s", diff)
			}
			for _, a := range got.Attempts {
				if a.State != state.Retrying {
					continue
				}
				if a.Outcome == nil || a.Outcome.Reason != tt.wantReason || a.Finished == nil {
					t.Errorf("lost attempt %d: outcome %+v, finished %v; want reason %q and a finish time", a.Number, a.Outcome, a.Finished, tt.wantReason)
				}
			}
		})
	}
}

// sorted returns a sorted copy, for comparing sets.
func sorted(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

// testVerdicts: an attempt's verdict is kept as set, or as its class
// implies, for the task and the attempt.
func testVerdicts(t *testing.T, o opener) {
	ctx := t.Context()
	db := o.db(t)
	for _, tt := range []struct {
		context string
		outcome turtles.Outcome
		want    turtles.Verdict
	}{
		{"known", turtles.Outcome{Class: turtles.Failure, Reason: "Known issue", Verdict: turtles.VerdictKnownIssue}, turtles.VerdictKnownIssue},
		{"regression", turtles.Outcome{Class: turtles.Failure, Reason: "exit status 1"}, turtles.VerdictRegression},
		{"flake", turtles.Outcome{Class: turtles.Success, Reason: "Flaky", Verdict: turtles.VerdictFlake}, turtles.VerdictFlake},
		{"infra", turtles.Outcome{Class: turtles.Infra, Reason: "VM"}, turtles.VerdictInfra},
		{"pass", turtles.Outcome{Class: turtles.Success}, ""},
	} {
		task := Task(tt.context, 1)
		for i, ev := range []turtles.Event{
			{ID: tt.context + "-s", Type: turtles.EventStarted, Task: task, Bot: "bot-1", Time: t0},
			{ID: tt.context + "-f", Type: turtles.EventFinished, Task: task, Bot: "bot-1", Time: t0.Add(time.Minute), Outcome: &tt.outcome},
		} {
			if _, err := db.Record(ctx, ev); err != nil {
				t.Fatalf("%s: Record %d: %v", tt.context, i, err)
			}
		}
		got, err := db.Get(ctx, task.ID())
		if err != nil {
			t.Fatal(err)
		}
		if got.Outcome == nil || got.Outcome.Verdict != tt.want || len(got.Attempts) != 1 || got.Attempts[0].Outcome == nil ||
			got.Attempts[0].Outcome.Verdict != tt.want {
			t.Errorf("%s: task %+v, attempts %+v; want verdict %q on both", tt.context, got.Outcome, got.Attempts, tt.want)
		}
	}
}
