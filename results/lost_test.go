package results

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestLost(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 16, 2, 0, 0, time.UTC)
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
			lost("l1", 1, 90*time.Second),
			started(2, "bot1", 91*time.Second), at(ev("f2", turtles.EventFinished, 2, turtles.Success), 95*time.Second),
		},
		want:       summary{State: Finished, Class: turtles.Success, Attempts: []string{"1:retrying:infra", "2:finished:success"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:36 UTC",
		wantEnded:  []string{"1: bot bot2 stopped heart-beating at 16:02:36 UTC"},
	}, {
		name:       "no heartbeat yet: the start is the last sign of life",
		events:     []turtles.Event{started(1, "bot2", 5*time.Second), lost("l1", 1, 90*time.Second)},
		want:       summary{State: Retrying, Class: turtles.Infra, Attempts: []string{"1:retrying:infra"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:05 UTC",
		wantEnded:  []string{"1: bot bot2 stopped heart-beating at 16:02:05 UTC"},
	}, {
		name: "the bot ran it as a later attempt",
		events: []turtles.Event{
			started(3, "bot2", 0), beat("b1", 1, 10*time.Second), lost("l1", 1, 90*time.Second),
		},
		want:       summary{State: Retrying, Class: turtles.Infra, Attempts: []string{"3:retrying:infra"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:10 UTC",
		wantEnded:  []string{"3: bot bot2 stopped heart-beating at 16:02:10 UTC"},
	}, {
		name:      "the bot died before it started: nothing to end",
		events:    []turtles.Event{at(ev("q", turtles.EventQueued, 1, ""), 0), lost("l1", 1, 90*time.Second)},
		want:      summary{State: Queued},
		wantEnded: nil,
	}, {
		name: "the lost event delivered twice ends the attempt once",
		events: []turtles.Event{
			started(1, "bot2", 0), lost("l1", 1, 90*time.Second), lost("l1", 1, 90*time.Second),
		},
		want:       summary{State: Retrying, Class: turtles.Infra, Attempts: []string{"1:retrying:infra"}},
		wantReason: "bot bot2 stopped heart-beating at 16:02:00 UTC",
		wantEnded:  []string{"1: bot bot2 stopped heart-beating at 16:02:00 UTC"},
	}, {
		name: "a finished attempt is not lost",
		events: []turtles.Event{
			started(1, "bot2", 0), at(ev("f1", turtles.EventFinished, 1, turtles.Failure), 30*time.Second),
			lost("l1", 1, 90*time.Second),
		},
		want: summary{State: Finished, Class: turtles.Failure, Attempts: []string{"1:finished:failure"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), "results.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var ended []string
			db.EndLostLogs(func(ctx context.Context, res turtles.Result) error {
				if res.Task.Key() != testTask(1).Key() || res.Outcome.Class != turtles.Infra || res.Finished.IsZero() {
					t.Errorf("lost attempt's result = %+v, want the task's, infra, with a finish time", res)
				}
				ended = append(ended, fmt.Sprintf("%d: %s", res.Task.Attempt, res.Outcome.Reason))
				return nil
			})
			for _, e := range tt.events {
				if err := db.Handle(t.Context(), e); err != nil {
					t.Fatalf("Handle(%s): %v", e.ID, err)
				}
			}
			got, err := db.Get(t.Context(), testTask(1).ID())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("task (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEnded, ended); diff != "" {
				t.Errorf("logs ended (-want +got):\n%s", diff)
			}
			for _, a := range got.Attempts {
				if a.State != Retrying {
					continue
				}
				if a.Outcome == nil || a.Outcome.Reason != tt.wantReason || a.Finished == nil {
					t.Errorf("lost attempt %d: outcome %+v, finished %v; want reason %q and a finish time", a.Number, a.Outcome, a.Finished, tt.wantReason)
				}
			}
		})
	}
}
