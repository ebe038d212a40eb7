package sqlstate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Known issues by occurrences: one row per attempt whose verdict a known
// issue's pattern decided (turtles.Outcome.Issue), so that a team sees
// which ones cost it most.

// recordIssue keeps the known issue of ev, an attempt's end, if any. A
// later event of the same attempt replaces it.
func recordIssue(ctx context.Context, tx Querier, ev turtles.Event, at int64) error {
	if ev.Outcome == nil || ev.Outcome.Issue == "" ||
		(ev.Type != turtles.EventRetrying && ev.Type != turtles.EventFinished) {
		return nil
	}
	t := ev.Task
	_, err := tx.Exec(ctx, `INSERT INTO issue_hits (task_id, number, issue, repo, context, reason, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (task_id, number) DO UPDATE SET issue = excluded.issue, reason = excluded.reason, at = excluded.at`,
		t.ID(), t.Attempt, ev.Outcome.Issue, t.Repo.Name, t.Context, ev.Outcome.Reason, at)
	return err
}

// Weeks are counted from Monday 1970-01-05 00:00 UTC, in milliseconds.
const (
	firstMonday = 4 * 24 * 3600 * 1000
	weekMS      = 7 * 24 * 3600 * 1000
)

// KnownIssues implements state.DB.
func (db *DB) KnownIssues(ctx context.Context, f state.IssueFilter) ([]state.IssueStats, error) {
	const op = "known issues"
	if err := db.check(op); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Repo != "" {
		add("repo = $%d", f.Repo)
	}
	if !f.Since.IsZero() {
		add("at >= $%d", ms(f.Since))
	}
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	byIssue := map[string]*state.IssueStats{}
	err := func() error {
		rows, err := db.d.Query(ctx, fmt.Sprintf(`SELECT issue, (at - %d) / %d AS week, COUNT(*)
			FROM issue_hits %s GROUP BY issue, week`, firstMonday, weekMS, cond), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var issue string
			var week, n int64
			if err := rows.Scan(&issue, &week, &n); err != nil {
				return err
			}
			s := byIssue[issue]
			if s == nil {
				s = &state.IssueStats{Issue: issue}
				byIssue[issue] = s
			}
			s.Total += int(n)
			s.Weeks = append(s.Weeks, state.WeekCount{Week: time.UnixMilli(firstMonday + week*weekMS).UTC(), Count: int(n)})
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, db.fail(op, err)
	}
	out := make([]state.IssueStats, 0, len(byIssue))
	for _, s := range byIssue {
		slices.SortFunc(s.Weeks, func(a, b state.WeekCount) int { return b.Week.Compare(a.Week) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b state.IssueStats) int {
		if a.Total != b.Total {
			return b.Total - a.Total
		}
		return strings.Compare(a.Issue, b.Issue)
	})
	out = out[:min(len(out), limit(f.Limit, 100, 1000))]
	for i := range out {
		s := &out[i]
		var at int64
		largs := append(append([]any(nil), args...), s.Issue)
		lcond := append(append([]string(nil), where...), fmt.Sprintf("issue = $%d", len(largs)))
		err := db.d.QueryRow(ctx, `SELECT task_id, reason, at FROM issue_hits WHERE `+strings.Join(lcond, " AND ")+`
			ORDER BY at DESC, task_id LIMIT 1`, largs...).Scan(&s.LastTask, &s.Reason, &at)
		if err != nil {
			return nil, db.fail(op, fmt.Errorf("last occurrence of %s: %w", s.Issue, err))
		}
		s.Last = fromMS(at)
	}
	return out, nil
}
