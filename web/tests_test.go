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

func TestTestsAPI(t *testing.T) {
	srv, task := fixture(t)
	// The fixture's database is private; record into a second server's.
	res, err := openHistory(t, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for i, o := range []turtles.TestOutcome{turtles.TestFailed, turtles.TestPassed} {
		tt := task
		tt.Attempt = i + 1
		err := res.RecordTests(context.Background(), turtles.Result{Task: tt, Finished: time.Now(), LogURL: "http://x/log",
			Tests: []turtles.TestResult{{Name: "login", Outcome: o, Line: 7, Source: "log"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	srv.Config.Handler = New(Config{History: res})
	tests := []struct {
		name, query string
		code        int
		wantIn      string
	}{
		{"all", "", 200, `"retried_then_passed": 1`},
		{"repo and context", "?repo=octo/hello&context=debian-12/unit&since=14d", 200, `"log_url": "http://x/log#L7"`},
		{"flaky only", "?flaky=true", 200, `"name": "login"`},
		{"other repo", "?repo=x/y", 200, `"tests": []`},
		{"bad since", "?since=fortnight", 400, "since must be a date"},
		{"bad flaky", "?flaky=maybe", 400, "flaky"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := get(t, srv.URL+"/api/v1/tests"+tt.query)
			if code != tt.code || !strings.Contains(body, tt.wantIn) {
				t.Errorf("GET /api/v1/tests%s = %d %s; want %d containing %q", tt.query, code, body, tt.code, tt.wantIn)
			}
			if code == 200 && !json.Valid([]byte(body)) {
				t.Errorf("invalid JSON: %s", body)
			}
		})
	}
}
