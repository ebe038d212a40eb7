package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
)

// listTests answers GET /api/v1/tests?repo=&context=&since=14d&flaky=1:
// per test and context, runs, failures, retried-then-passed and the last
// failure with its log link.
func (s *Server) listTests(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := state.TestFilter{Repo: q.Get("repo"), Context: q.Get("context")}
	if v := q.Get("since"); v != "" {
		age, err := results.ParseAge(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Since = time.Now().Add(-age)
	}
	if v := q.Get("flaky"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "flaky must be true or false")
			return
		}
		f.FlakyOnly = b
	}
	limit, err := queryLimit(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Limit = limit
	tests, err := s.cfg.History.Tests(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tests": tests})
}
