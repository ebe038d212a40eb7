package web

import (
	"net/http"

	"github.com/turtles-ci/turtles/state"
)

// listKnownIssues answers GET /api/v1/known-issues?repo=&since=28d&limit=:
// per known issue, how many attempts its pattern decided, per week, most
// first, with the latest one. Weeks are whole: since goes back to the
// Monday of its week.
func (s *Server) listKnownIssues(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "repo", "since", "limit")
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	f := state.IssueFilter{Repo: q.Get("repo")}
	since := q.Get("since")
	if since == "" {
		since = "28d"
	}
	at, err := parseTime("since", since, s.cfg.Now(), false)
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	f.Since = state.WeekOf(at)
	if f.Limit, err = parseLimit(q, 100, 1000); err != nil {
		s.apiFailed(w, r, err)
		return
	}
	// Issues are counted across repositories: where the forge decides who
	// reads which (sign-in is on), only one repository's, for its readers.
	who := s.viewer(r)
	if f.Repo == "" && who.auth != nil {
		s.apiFailed(w, r, bad("give repo=OWNER/NAME: this server shows each repository to those the forge lets read it"))
		return
	}
	if f.Repo != "" && !who.canRead(f.Repo) {
		writeJSON(w, http.StatusOK, map[string]any{"since": f.Since, "issues": []state.IssueStats{}})
		return
	}
	issues, err := s.cfg.History.KnownIssues(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"since": f.Since, "issues": issues})
}
