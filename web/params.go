package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/results"
	"github.com/turtles-ci/turtles/state"
)

// Query parameters. Every page and API call names the ones it takes and
// answers 400 with the reason for any other, or for a value that does not
// parse: a mistyped filter must not show unfiltered results as if they
// were filtered.

// badRequest is what is wrong with a request, for the person who sent it.
type badRequest struct{ reason string }

func (e *badRequest) Error() string { return e.reason }

func bad(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// isBad reports whether err is the sender's mistake, and the reason.
func isBad(err error) (string, bool) {
	var b *badRequest
	if errors.As(err, &b) {
		return b.reason, true
	}
	return "", false
}

// pollParam is accepted by every page: live.js refreshes the page's live
// parts every that many milliseconds.
const pollParam = "poll"

// query returns r's query parameters when each is one the handler takes
// (allowed, or "poll") and appears at most once.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, bad("the query string does not parse: %v", err)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k != pollParam && !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, bad("unknown parameter %q: this takes none", k)
			}
			return nil, bad("unknown parameter %q: this takes %s", k, strings.Join(allowed, ", "))
		}
		if n := len(q[k]); n > 1 {
			return nil, bad("parameter %q is given %d times: give it once", k, n)
		}
	}
	if p := q.Get(pollParam); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 100 || n > 600000 {
			return nil, bad("poll must be a number of milliseconds from 100 to 600000")
		}
	}
	return q, nil
}

// parseLimit reads ?limit=: def when absent, at most max.
func parseLimit(q url.Values, def, max int) (int, error) {
	l := q.Get("limit")
	if l == "" {
		return def, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > max {
		return 0, bad("limit must be a number from 1 to %d", max)
	}
	return n, nil
}

// parseTime reads a point in time: a date (2006-01-02, UTC; with
// endOfDay the end of that day, so that "until" includes it), a time in
// RFC 3339, or an age before now (14d, 36h).
func parseTime(name, v string, now time.Time, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if age, err := results.ParseAge(v); err == nil {
		return now.Add(-age), nil
	}
	return time.Time{}, bad("%s must be a date (2025-03-14), a time (2025-03-14T15:09:26Z) or an age (14d, 36h), not %q", name, v)
}

// parseSHA reads a commit hash or the start of one, in any case.
func parseSHA(v string) (string, error) {
	v = strings.ToLower(v)
	if len(v) < 4 || len(v) > 64 || strings.Trim(v, "0123456789abcdef") != "" {
		return "", bad("sha must be 4 to 64 hexadecimal digits, not %q", v)
	}
	return v, nil
}

// A cursor continues a listing after the task it names: "UPDATED.ID",
// UPDATED in unix milliseconds.
func formatCursor(c *state.Cursor) string {
	return strconv.FormatInt(c.Updated.UnixMilli(), 10) + "." + c.ID
}

func parseCursor(v string) (*state.Cursor, error) {
	ms, id, ok := strings.Cut(v, ".")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" || len(id) > 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, bad("after must be the cursor a previous page gave (its next link), not %q", v)
	}
	return &state.Cursor{Updated: time.UnixMilli(n).UTC(), ID: id}, nil
}

// filterParams are the parameters of a search of the history.
var filterParams = []string{"repo", "branch", "pr", "sha", "context", "state", "outcome", "verdict", "since", "until", "after", "limit"}

// parseFilter reads a search of the history from q (filterParams). Empty
// values are absent, as a form sends them.
func parseFilter(q url.Values, now time.Time, defLimit, maxLimit int) (state.Filter, error) {
	var f state.Filter
	var err error
	f.Repo, f.Context = q.Get("repo"), q.Get("context")
	if b := q.Get("branch"); b != "" {
		f.Ref = b
		if !strings.HasPrefix(b, "refs/") {
			f.Ref = "refs/heads/" + b
		}
	}
	if v := q.Get("pr"); v != "" {
		if f.PR, err = strconv.Atoi(v); err != nil || f.PR < 1 {
			return f, bad("pr must be a pull request's number, not %q", v)
		}
		if f.Repo == "" {
			return f, bad("pr needs repo: pull request numbers are per repository")
		}
	}
	if v := q.Get("sha"); v != "" {
		if f.SHA, err = parseSHA(v); err != nil {
			return f, err
		}
	}
	switch st := state.TaskState(q.Get("state")); st {
	case "", state.Queued, state.Running, state.Retrying, state.Finished:
		f.State = st
	default:
		return f, bad("unknown state %q: want queued, running, retrying or finished", st)
	}
	switch c := turtles.Class(q.Get("outcome")); c {
	case "", turtles.Success, turtles.Failure, turtles.Infra, turtles.Cancelled:
		f.Class = c
	default:
		return f, bad("unknown outcome %q: want success, failure, infra or cancelled", c)
	}
	switch v := turtles.Verdict(q.Get("verdict")); v {
	case "", turtles.VerdictRegression, turtles.VerdictFlake, turtles.VerdictKnownIssue, turtles.VerdictInfra:
		f.Verdict = v
	default:
		return f, bad("unknown verdict %q: want regression, flake, known-issue or infra", v)
	}
	if v := q.Get("since"); v != "" {
		if f.Since, err = parseTime("since", v, now, false); err != nil {
			return f, err
		}
	}
	if v := q.Get("until"); v != "" {
		if f.Until, err = parseTime("until", v, now, true); err != nil {
			return f, err
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, bad("since must come before until")
	}
	if v := q.Get("after"); v != "" {
		if f.After, err = parseCursor(v); err != nil {
			return f, err
		}
	}
	f.Limit, err = parseLimit(q, defLimit, maxLimit)
	return f, err
}
