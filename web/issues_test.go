package web

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
)

func TestKnownIssuesAPI(t *testing.T) {
	srv, task := fixture(t)
	hist, err := openHistory(t, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	const issue = "https://github.com/octo/hello/issues/5494"
	now := time.Now()
	for i, at := range []time.Time{now, now.Add(-time.Hour), now.AddDate(0, 0, -60)} {
		tt := task
		tt.Context = "ctx-" + string(rune('a'+i))
		o := &turtles.Outcome{Class: turtles.Failure, Reason: "Known issue", Verdict: turtles.VerdictKnownIssue, Issue: issue}
		if _, err := hist.Record(context.Background(), turtles.Event{ID: tt.Context, Type: turtles.EventFinished, Task: tt, Time: at, Outcome: o}); err != nil {
			t.Fatal(err)
		}
	}
	srv.Config.Handler = New(Config{History: hist})
	for _, tt := range []struct {
		name, query string
		code        int
		wantIn      string
	}{
		{"default 4 weeks", "", 200, `"total": 2`},
		{"a year", "?since=365d", 200, `"total": 3`},
		{"other repo", "?repo=x/y", 200, `"issues": []`},
		{"bad since", "?since=fortnight", 400, "since must be a date"},
		{"bad limit", "?limit=-1", 400, "limit"},
		{"unknown parameter", "?context=x", 400, `unknown parameter \"context\"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := get(t, srv.URL+"/api/v1/known-issues"+tt.query)
			if code != tt.code || !strings.Contains(body, tt.wantIn) {
				t.Errorf("GET /api/v1/known-issues%s = %d %s; want %d containing %q", tt.query, code, body, tt.code, tt.wantIn)
			}
			if code == 200 && !json.Valid([]byte(body)) {
				t.Errorf("invalid JSON: %s", body)
			}
		})
	}
}
