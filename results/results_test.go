package results

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func testTask(attempt int) turtles.Task {
	return turtles.Task{
		Version: turtles.TaskVersion, Kind: turtles.KindTest,
		Repo: turtles.Repo{Name: "octo/hello", CloneURL: "file:///x"},
		SHA:  "0123456789abcdef0123456789abcdef01234567", Context: "unit", Pool: "public", Attempt: attempt,
	}
}

func ev(id string, typ turtles.EventType, attempt int, class turtles.Class) turtles.Event {
	e := turtles.Event{ID: id, Type: typ, Task: testTask(attempt), Bot: "bot-1",
		LogURL: fmt.Sprintf("http://x/tasks/t/%d", attempt), Time: time.Unix(1700000000, 0).Add(time.Duration(len(id)) * time.Second)}
	if class != "" {
		e.Outcome = &turtles.Outcome{Class: class, Reason: string(class)}
	}
	return e
}

type summary struct {
	State    State
	Class    turtles.Class
	Attempts []string // "N:state:class"
}

func summarize(t Task) summary {
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

func TestHandle(t *testing.T) {
	tests := []struct {
		name   string
		events []turtles.Event
		want   summary
	}{{
		name:   "queued",
		events: []turtles.Event{ev("q", turtles.EventQueued, 1, "")},
		want:   summary{State: Queued},
	}, {
		name:   "success",
		events: []turtles.Event{ev("q", turtles.EventQueued, 1, ""), ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success)},
		want:   summary{State: Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}},
	}, {
		name: "infra retry then failure",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("r1x", turtles.EventRetrying, 1, turtles.Infra),
			ev("s2xxx", turtles.EventStarted, 2, ""), ev("f2xxxx", turtles.EventFinished, 2, turtles.Failure)},
		want: summary{State: Finished, Class: turtles.Failure, Attempts: []string{"1:retrying:infra", "2:finished:failure"}},
	}, {
		name: "late start of a lost lease does not reopen",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success),
			ev("s1-late", turtles.EventStarted, 1, "")},
		want: summary{State: Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}},
	}, {
		name: "older attempt's events are history only",
		events: []turtles.Event{ev("s2xxx", turtles.EventStarted, 2, ""),
			ev("f1x", turtles.EventFinished, 1, turtles.Infra)},
		want: summary{State: Running, Attempts: []string{"1:finished:infra", "2:running:"}},
	}, {
		name:   "queued arriving after started",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("q", turtles.EventQueued, 1, "")},
		want:   summary{State: Running, Attempts: []string{"1:running:"}},
	}, {
		name:   "queued arriving after finished",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("f1x", turtles.EventFinished, 1, turtles.Success), ev("q", turtles.EventQueued, 1, "")},
		want:   summary{State: Finished, Class: turtles.Success, Attempts: []string{"1:finished:success"}},
	}, {
		name:   "duplicate event applied once",
		events: []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), ev("s1", turtles.EventStarted, 1, "")},
		want:   summary{State: Running, Attempts: []string{"1:running:"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), "r.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			for _, e := range tt.events {
				if err := db.Handle(ctx, e); err != nil {
					t.Fatalf("Handle(%s): %v", e.ID, err)
				}
			}
			got, err := db.Get(ctx, testTask(1).ID())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("task (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListAndGet(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	other := ev("o", turtles.EventQueued, 1, "")
	other.Task.Context = "integration"
	for _, e := range []turtles.Event{ev("s1", turtles.EventStarted, 1, ""), other} {
		if err := db.Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, []string{"unit", "integration"}},
		{"by state", Filter{State: Queued}, []string{"integration"}},
		{"by sha", Filter{SHA: testTask(1).SHA, Repo: "octo/hello"}, []string{"unit", "integration"}},
		{"other repo", Filter{Repo: "octo/other"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.List(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, x := range got {
				names = append(names, x.Context)
			}
			if diff := cmp.Diff(tt.want, names, cmp.Transformer("sort", sorted)); diff != "" {
				t.Errorf("List(%+v) (-want +got):\n%s", tt.f, diff)
			}
		})
	}
	if _, err := db.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
}

func sorted(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}
