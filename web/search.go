package web

import (
	"net/http"
	"net/url"

	"github.com/turtles-ci/turtles/state"
)

// History and search (/history, JSON at /api/v1/tasks): the tasks that
// match a filter (parseFilter), most recently updated first, a page at a
// time. The next page continues after the last task shown (?after=), so
// that a page never repeats or skips a task when new ones arrive.

// historyView is the search page: the form as it was filled, and a page
// of tasks.
type historyView struct {
	chrome
	Form  url.Values
	Tasks []state.Task
	// Next is the address of the next page, "" on the last; First that of
	// the first page, "" on it.
	Next, First string
	// Error is why the filter was refused, shown above the form.
	Error string
	// Choices for the form's selects.
	States, Outcomes, Verdicts []string
}

const (
	historyPageSize = 50
	apiPageSize     = 100
	maxPageSize     = 1000
)

func (s *Server) historyPage(w http.ResponseWriter, r *http.Request) {
	who := s.viewer(r)
	v := historyView{chrome: s.chrome(who, "History", "history", false),
		States:   []string{"queued", "running", "retrying", "finished"},
		Outcomes: []string{"success", "failure", "infra", "cancelled"},
		Verdicts: []string{"regression", "flake", "known-issue", "infra"}}
	q, err := query(r, filterParams...)
	if err == nil {
		v.Form = q
		var page []state.Task
		var next *state.Cursor
		if page, next, err = s.search(r, who, q, historyPageSize); err == nil {
			v.Tasks = page
			// Only the first page follows new tasks live: later ones are
			// where the reader paged to.
			v.Live = q.Get("after") == ""
			if next != nil {
				v.Next = pageURL(r, q, formatCursor(next))
			}
			if q.Get("after") != "" {
				v.First = pageURL(r, q, "")
			}
		}
	}
	if reason, ok := isBad(err); ok {
		v.Error = reason
		s.render(w, r, http.StatusBadRequest, "history.html", v)
		return
	}
	if err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	s.render(w, r, http.StatusOK, "history.html", v)
}

// listTasks answers GET /api/v1/tasks: a page of the search, and the
// cursor of the next ("next", absent on the last page).
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, filterParams...)
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	tasks, next, err := s.search(r, s.viewer(r), q, apiPageSize)
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	out := map[string]any{"tasks": tasks}
	if next != nil {
		out["next"] = formatCursor(next)
	}
	writeJSON(w, http.StatusOK, out)
}

// search returns the page of tasks q asks for that the viewer may see,
// and the cursor of the next page (nil on the last). It reads one task
// more than the page to know whether there is a next; the cursor is the
// last task read into the page, seen or not, so that hidden tasks do not
// stop the paging.
func (s *Server) search(r *http.Request, who *viewer, q url.Values, size int) ([]state.Task, *state.Cursor, error) {
	f, err := parseFilter(q, s.cfg.Now(), size, maxPageSize)
	if err != nil {
		return nil, nil, err
	}
	if f.Repo != "" && !who.canRead(f.Repo) {
		return []state.Task{}, nil, nil
	}
	n := f.Limit
	f.Limit = min(n+1, maxPageSize)
	tasks, err := s.cfg.History.List(r.Context(), f)
	if err != nil {
		return nil, nil, err
	}
	var next *state.Cursor
	switch {
	case len(tasks) > n:
		tasks = tasks[:n]
		next = state.CursorOf(tasks[n-1])
	case len(tasks) == n && n == maxPageSize:
		// A full page of the most List gives: is there one more?
		f.After, f.Limit = state.CursorOf(tasks[n-1]), 1
		more, err := s.cfg.History.List(r.Context(), f)
		if err != nil {
			return nil, nil, err
		}
		if len(more) > 0 {
			next = f.After
		}
	}
	return who.tasks(tasks), next, nil
}

// pageURL is r's page with q, continuing after cursor ("" for the first
// page); empty parameters, as a form sends them, are left out.
func pageURL(r *http.Request, q url.Values, cursor string) string {
	out := url.Values{}
	for k, v := range q {
		if k != "after" && len(v) > 0 && v[0] != "" {
			out.Set(k, v[0])
		}
	}
	if cursor != "" {
		out.Set("after", cursor)
	}
	if len(out) == 0 {
		return r.URL.Path
	}
	return r.URL.Path + "?" + out.Encode()
}
