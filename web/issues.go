package web

import (
	"net/http"
	"time"

	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
)

// listKnownIssues answers GET /api/v1/known-issues?repo=&since=28d&limit=:
// per known issue, how many attempts its pattern decided, per week, most
// first, with the latest one.
func (s *Server) listKnownIssues(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "repo" && k != "since" && k != "limit" {
			writeError(w, http.StatusBadRequest, "unknown parameter "+k+": known are repo, since and limit")
			return
		}
	}
	f := state.IssueFilter{Repo: q.Get("repo")}
	since := q.Get("since")
	if since == "" {
		since = "28d"
	}
	age, err := results.ParseAge(since)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Since = state.WeekOf(time.Now().Add(-age))
	if f.Limit, err = queryLimit(q); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	issues, err := s.cfg.History.KnownIssues(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"since": f.Since, "issues": issues})
}
