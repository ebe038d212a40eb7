package report

import (
	"context"

	"github.com/turtles-ci/turtles"
)

// Linked returns a Handler that gives each event the link to its
// attempt's page before h sees it. Only the process that serves the pages
// knows where they are, so it builds the links from the task ID and
// attempt; bots leave Event.LogURL empty, and a link an older bot put in
// an event is replaced. A queued event has no attempt yet and gets none.
func Linked(h Handler, link func(turtles.Task) string) Handler {
	return linked{h: h, link: link}
}

type linked struct {
	h    Handler
	link func(turtles.Task) string
}

func (l linked) Handle(ctx context.Context, ev turtles.Event) error {
	ev.LogURL = ""
	if ev.Type != turtles.EventQueued {
		ev.LogURL = l.link(ev.Task)
	}
	return l.h.Handle(ctx, ev)
}
