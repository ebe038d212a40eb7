package report_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/report"
)

func TestLinked(t *testing.T) {
	link := func(t turtles.Task) string { return "http://reporter:8081/tasks/" + t.Context }
	tests := []struct {
		name string
		ev   turtles.Event
		want string
	}{
		{name: "started, no link from the bot", ev: started("c", 1), want: "http://reporter:8081/tasks/c"},
		{name: "finished with an old bot's default link", ev: withURL(event(turtles.EventFinished, "c", 2), "http://localhost:8080/tasks/x/2"), want: "http://reporter:8081/tasks/c"},
		{name: "retrying", ev: event(turtles.EventRetrying, "c", 1), want: "http://reporter:8081/tasks/c"},
		{name: "queued has no attempt to link", ev: withURL(queued("c", 1), "http://localhost:8080/tasks/x/1"), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []turtles.Event
			rec := handlerFunc(func(_ context.Context, ev turtles.Event) error {
				got = append(got, ev)
				return nil
			})
			if err := report.Linked(rec, link).Handle(context.Background(), tt.ev); err != nil {
				t.Fatal(err)
			}
			want := tt.ev
			want.LogURL = tt.want
			if diff := cmp.Diff([]turtles.Event{want}, got); diff != "" {
				t.Errorf("handled (-want +got):\n%s", diff)
			}
		})
	}
}

func withURL(ev turtles.Event, u string) turtles.Event {
	ev.LogURL = u
	return ev
}
