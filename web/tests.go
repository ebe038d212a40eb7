package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Tests: the flakiest tests (/tests, JSON at /api/v1/tests?flaky=true)
// and one test's history (/tests/history, JSON at /api/v1/tests/history):
// pass or fail on each recent commit and context as a grid, TestGrid's
// view, and its flake rate.

// defaultSince is how far back the test pages look unless told.
const defaultSince = 14 * 24 * time.Hour

// testFilter reads the parameters shared by the test pages. The pages
// count whole days (UTC), as the history keeps each test's stats: since
// is the start of its day. (The JSON API counts from since exactly.)
func (s *Server) testFilter(q url.Values) (state.TestFilter, error) {
	f := state.TestFilter{Repo: q.Get("repo"), Context: q.Get("context"), Name: q.Get("name"),
		Since: s.cfg.Now().Add(-defaultSince)}
	if v := q.Get("since"); v != "" {
		var err error
		if f.Since, err = parseTime("since", v, s.cfg.Now(), false); err != nil {
			return f, err
		}
	}
	f.Since = f.Since.UTC().Truncate(24 * time.Hour)
	return f, nil
}

// listTests answers GET /api/v1/tests?repo=&context=&name=&since=14d&flaky=1:
// per test and context, runs, failures, retried-then-passed and the last
// failure with its log link, worst first.
func (s *Server) listTests(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "repo", "context", "name", "since", "flaky", "limit")
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	f := state.TestFilter{Repo: q.Get("repo"), Context: q.Get("context"), Name: q.Get("name")}
	if v := q.Get("since"); v != "" { // the API's default is all
		if f.Since, err = parseTime("since", v, s.cfg.Now(), false); err != nil {
			s.apiFailed(w, r, err)
			return
		}
	}
	if v := q.Get("flaky"); v != "" {
		if f.FlakyOnly, err = strconv.ParseBool(v); err != nil {
			s.apiFailed(w, r, bad("flaky must be true or false"))
			return
		}
	}
	if f.Limit, err = parseLimit(q, 500, 5000); err != nil {
		s.apiFailed(w, r, err)
		return
	}
	who := s.viewer(r)
	if f.Repo != "" && !who.canRead(f.Repo) {
		writeJSON(w, http.StatusOK, map[string]any{"tests": []state.TestStats{}})
		return
	}
	tests, err := s.cfg.History.Tests(r.Context(), f)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tests": readableTests(who, tests)})
}

func readableTests(who *viewer, tests []state.TestStats) []state.TestStats {
	out := tests[:0:0]
	for _, t := range tests {
		if who.canRead(t.Repo) {
			out = append(out, t)
		}
	}
	return out
}

type flakyView struct {
	chrome
	Form  url.Values
	Since time.Time
	Tests []state.TestStats
	Error string
}

// flakyPage shows the flakiest tests: those retried-then-passed, most
// flakes first.
func (s *Server) flakyPage(w http.ResponseWriter, r *http.Request) {
	who := s.viewer(r)
	v := flakyView{chrome: s.chrome(who, "Flaky tests", "tests", true)}
	q, err := query(r, "repo", "context", "since", "limit")
	var f state.TestFilter
	if err == nil {
		v.Form = q
		f, err = s.testFilter(q)
	}
	if err == nil {
		f.FlakyOnly, v.Since = true, f.Since
		f.Limit, err = parseLimit(q, 50, 500)
	}
	if err == nil && (f.Repo == "" || who.canRead(f.Repo)) {
		var tests []state.TestStats
		if tests, err = s.cfg.History.Tests(r.Context(), f); err == nil {
			v.Tests = readableTests(who, tests)
		}
	}
	if reason, ok := isBad(err); ok {
		v.Error, v.Live = reason, false
		s.render(w, r, http.StatusBadRequest, "flaky.html", v)
		return
	}
	if err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	s.render(w, r, http.StatusOK, "flaky.html", v)
}

// maxGridCommits is how many commits a test's grid shows.
const maxGridCommits = 30

// testView is one test's history.
type testView struct {
	chrome  `json:"-"`
	Repo    string            `json:"repo"`
	Name    string            `json:"name"`
	Context string            `json:"context,omitempty"`
	Since   time.Time         `json:"since"`
	Stats   []state.TestStats `json:"stats"`
	Runs    []state.TestRun   `json:"runs"`
	Grid    grid              `json:"grid"`
}

// grid is the runs as rows of contexts by columns of commits, newest
// first; a cell holds the attempts of one commit and context.
type grid struct {
	Commits []gridCommit `json:"commits"`
	Rows    []gridRow    `json:"rows"`
	// Flaky of Cells: cells where an attempt failed the test and a later
	// one passed it, of those where it passed or failed: the flake rate.
	Flaky int `json:"flaky"`
	Cells int `json:"cells"`
}

type gridCommit struct {
	SHA      string    `json:"sha"`
	Finished time.Time `json:"finished"`
}

type gridRow struct {
	Context string     `json:"context"`
	Cells   []gridCell `json:"cells"`
	Flaky   int        `json:"flaky"`
	Ran     int        `json:"cells_run"`
}

type gridCell struct {
	// Runs are its attempts, first to last; none where the test did not
	// run on that commit in that context.
	Runs  []state.TestRun `json:"runs"`
	Flaky bool            `json:"flaky,omitempty"`
}

// gridOf lays runs (newest first, as TestRuns gives them) out as a grid
// of the newest maxGridCommits commits.
func gridOf(runs []state.TestRun) grid {
	var g grid
	col := map[string]int{}
	rows := map[string]map[int][]state.TestRun{}
	for _, r := range runs {
		i, ok := col[r.SHA]
		if !ok {
			if len(g.Commits) == maxGridCommits {
				continue
			}
			i = len(g.Commits)
			col[r.SHA] = i
			g.Commits = append(g.Commits, gridCommit{SHA: r.SHA, Finished: r.Finished})
		}
		if rows[r.Context] == nil {
			rows[r.Context] = map[int][]state.TestRun{}
		}
		rows[r.Context][i] = append(rows[r.Context][i], r)
	}
	for _, ctx := range sortedKeys(rows) {
		row := gridRow{Context: ctx, Cells: make([]gridCell, len(g.Commits))}
		for i, rs := range rows[ctx] {
			slices.SortFunc(rs, func(a, b state.TestRun) int { return a.Attempt - b.Attempt })
			c := gridCell{Runs: rs}
			failed, ran := false, false
			for _, r := range rs {
				switch r.Outcome {
				case turtles.TestFailed:
					failed, ran = true, true
				case turtles.TestPassed:
					ran = true
					c.Flaky = c.Flaky || failed
				}
			}
			if ran {
				row.Ran++
			}
			if c.Flaky {
				row.Flaky++
			}
			row.Cells[i] = c
		}
		g.Flaky += row.Flaky
		g.Cells += row.Ran
		g.Rows = append(g.Rows, row)
	}
	if g.Commits == nil {
		g.Commits, g.Rows = []gridCommit{}, []gridRow{}
	}
	return g
}

// test reads the test of r's query.
func (s *Server) test(r *http.Request, who *viewer) (testView, error) {
	q, err := query(r, "repo", "name", "context", "since")
	if err != nil {
		return testView{}, err
	}
	f, err := s.testFilter(q)
	if err != nil {
		return testView{}, err
	}
	if f.Repo == "" || f.Name == "" {
		return testView{}, bad("a test's history needs repo and name")
	}
	v := testView{Repo: f.Repo, Name: f.Name, Context: f.Context, Since: f.Since, Stats: []state.TestStats{}, Runs: []state.TestRun{}}
	if !who.canRead(f.Repo) {
		v.Grid = gridOf(nil)
		return v, nil
	}
	if v.Stats, err = s.cfg.History.Tests(r.Context(), f); err != nil {
		return v, err
	}
	// Enough runs for the grid's commits in a few contexts, with retries.
	f.Limit = maxGridCommits * 16
	if v.Runs, err = s.cfg.History.TestRuns(r.Context(), f); err != nil {
		return v, err
	}
	v.Grid = gridOf(v.Runs)
	return v, nil
}

func (s *Server) testPage(w http.ResponseWriter, r *http.Request) {
	who := s.viewer(r)
	v, err := s.test(r, who)
	if err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	code := http.StatusOK
	if len(v.Runs) == 0 && len(v.Stats) == 0 {
		code = http.StatusNotFound
	}
	v.chrome = s.chrome(who, v.Name, "tests", code == http.StatusOK)
	s.render(w, r, code, "test.html", v)
}

func (s *Server) testAPI(w http.ResponseWriter, r *http.Request) {
	v, err := s.test(r, s.viewer(r))
	if err != nil {
		s.apiFailed(w, r, err)
		return
	}
	if len(v.Runs) == 0 && len(v.Stats) == 0 {
		writeError(w, http.StatusNotFound, "no run of this test")
		return
	}
	writeJSON(w, http.StatusOK, v)
}
