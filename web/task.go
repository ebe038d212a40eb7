package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/store"
)

// The page of one attempt of a task (/tasks/{id} is its last attempt):
// a one-line summary, the outcome and its triage, the attempts, what
// people did to it, the tests (failed first) and the log, live while the
// attempt runs.

type taskView struct {
	chrome
	Task    state.Task
	Attempt int
	// Running says the attempt runs: the log viewer follows it.
	Running bool
	LogKey  string
	Prefix  string // the attempt's files, for the viewer
	Log     string
	// LogSize is the raw byte length behind Log, where a live page resumes.
	LogSize int
	Files   []store.Info
	Result  *turtles.Result
	// Tests are the attempt's tests, failed first; Counts its summary.
	Tests   []turtles.TestResult
	Counts  testCounts
	Actions []state.Action
	// Debug is the command that resumes the attempt's held VM, "" when
	// it has none (docs/vms.md).
	Debug string
}

// testCounts is the one-line summary of an attempt's tests.
type testCounts struct{ Passed, Failed, Skipped, Other int }

func countTests(tests []turtles.TestResult) testCounts {
	var c testCounts
	for _, t := range tests {
		switch t.Outcome {
		case turtles.TestPassed:
			c.Passed++
		case turtles.TestFailed:
			c.Failed++
		case turtles.TestSkipped:
			c.Skipped++
		default:
			c.Other++
		}
	}
	return c
}

// failedFirst orders tests failed first, each group as reported.
func failedFirst(tests []turtles.TestResult) []turtles.TestResult {
	out := slices.Clone(tests)
	slices.SortStableFunc(out, func(a, b turtles.TestResult) int {
		af, bf := a.Outcome == turtles.TestFailed, b.Outcome == turtles.TestFailed
		switch {
		case af && !bf:
			return -1
		case bf && !af:
			return 1
		}
		return 0
	})
	return out
}

// maxInlineLog bounds how much log the page embeds; the rest is a link.
const maxInlineLog = 4 << 20

// task returns the task of the request's {id} that the viewer may see.
func (s *Server) task(r *http.Request, v *viewer) (state.Task, error) {
	t, err := s.cfg.History.Get(r.Context(), r.PathValue("id"))
	if err == nil && !v.canRead(t.Repo) {
		err = state.ErrNotFound
	}
	return t, err
}

func (s *Server) taskPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	who := s.viewer(r)
	if _, err := query(r); err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	t, err := s.task(r, who)
	if errors.Is(err, state.ErrNotFound) {
		s.pageError(w, r, who, http.StatusNotFound, "No such task. It may not have been picked up yet: try again in a moment.")
		return
	}
	if err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	v := taskView{Task: t, Attempt: len(t.Attempts)}
	if a := lastAttempt(t); a != nil {
		v.Attempt = a.Number
	}
	if a := r.PathValue("attempt"); a != "" {
		if v.Attempt, err = strconv.Atoi(a); err != nil || v.Attempt < 1 {
			s.pageError(w, r, who, http.StatusBadRequest, "The attempt must be a number from 1.")
			return
		}
	}
	for _, a := range t.Attempts {
		if a.Number == v.Attempt {
			v.Running = a.State == state.Running
		}
	}
	if v.Attempt > 0 {
		prefix := store.AttemptPrefix(turtles.Task{Repo: turtles.Repo{Name: t.Repo}, SHA: t.SHA, Context: t.Context, Attempt: v.Attempt})
		v.LogKey = prefix + store.LogName
		v.Prefix = prefix
		v.Log, v.LogSize = s.readLog(ctx, v.LogKey)
		v.Files, _ = s.cfg.Store.List(ctx, prefix)
		for _, f := range v.Files {
			if f.Key == prefix+store.HeldName {
				v.Debug = "turtles debug " + s.publicURL(r) + "/tasks/" + t.ID + "/" + strconv.Itoa(v.Attempt)
			}
		}
		v.Result = s.readResult(ctx, prefix+store.ResultName)
	}
	if v.Result != nil {
		v.Tests = failedFirst(v.Result.Tests)
		v.Counts = countTests(v.Result.Tests)
	}
	v.Actions = s.actions(ctx, t.ID)
	// The state line and attempts follow the task; the log has its viewer.
	v.chrome = s.chrome(who, t.Context+" · "+t.SHA[:min(len(t.SHA), 12)], "", t.State != state.Finished)
	s.render(w, r, http.StatusOK, "task.html", v)
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		s.apiFailed(w, r, err)
		return
	}
	t, err := s.task(r, s.viewer(r))
	if errors.Is(err, state.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such task")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// actions returns what people did to task id, oldest first; none when
// the server has no record of actions or cannot read it now (the page
// is still worth showing; the log has the cause).
func (s *Server) actions(ctx context.Context, id string) []state.Action {
	if s.cfg.Actions == nil {
		return nil
	}
	as, err := s.cfg.Actions.Actions(ctx, id)
	if err != nil {
		s.cfg.Log.Warn("list a task's actions", "task", id, "err", err)
	}
	return as
}

// readLog returns the start of a log without terminal escapes, and how
// many raw bytes that was.
func (s *Server) readLog(ctx context.Context, key string) (string, int) {
	rc, _, err := s.cfg.Store.Get(ctx, key)
	if err != nil {
		return "", 0
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, maxInlineLog))
	return stripANSI(string(b)), len(b)
}

func (s *Server) readResult(ctx context.Context, key string) *turtles.Result {
	rc, _, err := s.cfg.Store.Get(ctx, key)
	if err != nil {
		return nil
	}
	defer rc.Close()
	var res turtles.Result
	if json.NewDecoder(rc).Decode(&res) != nil {
		return nil
	}
	return &res
}

// stripANSI drops terminal escape sequences so that coloured test output
// reads cleanly in the page (the raw log keeps them).
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
		}
	}
	return b.String()
}

// publicURL is where people reach this server: Config.PublicURL, or the
// request's scheme and host.
func (s *Server) publicURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
