package web

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/web/logpage"
)

// What every page shares: the templates, their functions, the header
// with its navigation and who is signed in, and the error page.

//go:embed templates/*.html
var templateFS embed.FS

// liveScript refreshes the parts of a page marked data-live.
//
//go:embed live.js
var liveScript string

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"class": func(o *turtles.Outcome) string {
		if o == nil {
			return ""
		}
		return string(o.Class)
	},
	"short": func(s string) string { return s[:min(len(s), 12)] },
	// verdict is the triage of an outcome, "" where its class says all.
	"verdict": func(o turtles.Outcome) string { return string(turtles.VerdictOf(o)) },
	// The log viewer of web/logpage, shared with the static page.
	"viewer": func() template.JS { return template.JS(logpage.Script) },
	"live":   func() template.JS { return template.JS(liveScript) },
	"ago":    func(now, t time.Time) string { return span(now.Sub(t)) },
	"span":   span,
	"stamp":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// ran is how long a task's last attempt ran, or runs, as of now.
	"ran":       func(now time.Time, t state.Task) string { return ran(now, t) },
	"last":      lastAttempt,
	"commitURL": commitURL,
	"testURL":   testURL,
	"taskURL":   func(t state.Task) string { return "/tasks/" + url.PathEscape(t.ID) },
	"pct":       func(n, of int) string { return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(max(of, 1))) },
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	},
	"outcomeOf": outcomeOf,
	"mark":      mark,
	"retries":   func(t state.Task) int { return max(len(t.Attempts)-1, 0) },
	// act is what the action buttons of a task need.
	"act": func(t state.Task, csrf string) any {
		return struct {
			Task state.Task
			CSRF string
		}{t, csrf}
	},
	// tasklist is what the table of tasks needs.
	"tasklist": func(ts []state.Task, now time.Time) any {
		return struct {
			Tasks []state.Task
			Now   time.Time
		}{ts, now}
	},
}).ParseFS(templateFS, "templates/*.html"))

// chrome is what the header and footer of every page need.
type chrome struct {
	Title string
	// Nav is the navigation entry the page is under: now, history, tests.
	Nav string
	// Auth says login is mounted: the header offers to sign in or out.
	Auth bool
	// User is who is signed in, "" for nobody; CSRF their forms' token.
	User, CSRF string
	// Live pages poll themselves (live.js).
	Live bool
	Now  time.Time
}

func (s *Server) chrome(v *viewer, title, nav string, live bool) chrome {
	return chrome{Title: title, Nav: nav, Auth: s.cfg.Auth != nil, User: v.User, CSRF: v.CSRF, Live: live, Now: s.cfg.Now()}
}

// errorView is a page that says what went wrong.
type errorView struct {
	chrome
	Heading, Reason string
}

// pageError answers a page's request with code and the reason for people.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, v *viewer, code int, reason string) {
	heading := http.StatusText(code)
	s.render(w, r, code, "error.html", errorView{chrome: s.chrome(v, heading, "", false), Heading: heading, Reason: reason})
}

// pageFailed answers a page whose reading failed: a 400 with the reason
// for a bad request, else a 500 with the cause in the log.
func (s *Server) pageFailed(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	if reason, ok := isBad(err); ok {
		s.pageError(w, r, v, http.StatusBadRequest, reason)
		return
	}
	s.cfg.Log.Error("request failed", "path", r.URL.Path, "err", err)
	s.pageError(w, r, v, http.StatusInternalServerError, "Something went wrong on our side; the server's log has the cause.")
}

// apiFailed is pageFailed for the JSON API.
func (s *Server) apiFailed(w http.ResponseWriter, r *http.Request, err error) {
	if reason, ok := isBad(err); ok {
		writeError(w, http.StatusBadRequest, reason)
		return
	}
	s.internal(w, r, err)
}

// span is a duration for people: 42s, 3m 05s, 2h 03m, 3d 4h.
func span(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch s := int64(d / time.Second); {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm %02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh %02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd %dh", s/86400, s%86400/3600)
	}
}

func lastAttempt(t state.Task) *state.Attempt {
	if len(t.Attempts) == 0 {
		return nil
	}
	return &t.Attempts[len(t.Attempts)-1]
}

func ran(now time.Time, t state.Task) string {
	a := lastAttempt(t)
	if a == nil || a.Started == nil {
		return ""
	}
	end := now
	if a.Finished != nil {
		end = *a.Finished
	}
	return span(end.Sub(*a.Started))
}

// outcomeOf is a task's state in one word for people: its outcome's class
// once finished, else its state.
func outcomeOf(t state.Task) string {
	if t.State == state.Finished && t.Outcome != nil {
		return string(t.Outcome.Class)
	}
	return string(t.State)
}

// mark is the sign shown beside a state or outcome, so that none is told
// by colour alone (the word is always there too, shown or for screen
// readers).
func mark(word string) string {
	switch word {
	case "success", "passed":
		return "✓"
	case "failure", "failed":
		return "✗"
	case "infra":
		return "⚠"
	case "cancelled", "skipped", "todo":
		return "–"
	case "running":
		return "▶"
	case "retrying":
		return "↻"
	case "queued":
		return "…"
	case "finished":
		return "■"
	}
	return "·"
}

// commitURL is the page of repo's commit sha.
func commitURL(repo, sha string) string {
	segs := strings.Split(repo, "/")
	for i := range segs {
		segs[i] = url.PathEscape(segs[i])
	}
	return "/commits/" + strings.Join(segs, "/") + "/" + url.PathEscape(sha)
}

// testURL is the history page of a test (context "" for all contexts).
func testURL(repo, name, context string) string {
	q := url.Values{"repo": {repo}, "name": {name}}
	if context != "" {
		q.Set("context", context)
	}
	return "/tests/history?" + q.Encode()
}
