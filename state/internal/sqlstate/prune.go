package sqlstate

import (
	"context"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles/state"
)

// Prune implements state.DB.
func (db *DB) Prune(ctx context.Context, p state.Prune) (state.Pruned, error) {
	const op = "prune state"
	if err := db.check(op); err != nil {
		return state.Pruned{}, err
	}
	finished := string(state.Finished)
	var out state.Pruned
	steps := []struct {
		what   string
		cutoff time.Time
		n      *int64
		// from and where select the rows; args come after the cutoff ($1).
		from, where string
		args        []any
	}{
		{"deliveries", p.Deliveries, &out.Deliveries, "deliveries", "seen < $1", nil},
		{"seen events", p.Events, &out.Events, "events_seen", "at < $1", nil},
		{"final events", p.Finals, &out.Finals, "finals", "recorded < $1", nil},
		// Attempts before their tasks, which say which.
		{"attempts", p.Tasks, &out.Attempts, "attempts", "task_id IN (SELECT id FROM tasks WHERE updated < $1 AND state = $2)", []any{finished}},
		{"tasks", p.Tasks, &out.Tasks, "tasks", "updated < $1 AND state = $2", []any{finished}},
		{"test results", p.Tests, &out.Tests, "test_results", "finished < $1", nil},
		{"known-issue hits", p.Tasks, &out.IssueHits, "issue_hits", "at < $1", nil},
		// Derived from the results: not counted apart.
		{"test flakes", p.Tests, new(int64), "test_flakes", "finished < $1", nil},
		{"approvals", p.Approvals, &out.Approvals, "approvals", "at < $1", nil},
		{"bots", p.Bots, &out.Bots, "bots", "seen < $1", nil},
		{"actions", p.Actions, &out.Actions, "actions", "at < $1", nil},
	}
	err := db.d.InTx(ctx, func(tx Querier) error {
		if !p.Tests.IsZero() && !p.DryRun {
			if err := pruneDays(ctx, tx, ms(p.Tests)); err != nil {
				return fmt.Errorf("test days: %w", err)
			}
		}
		for _, s := range steps {
			if s.cutoff.IsZero() {
				continue
			}
			args := append([]any{ms(s.cutoff)}, s.args...)
			var err error
			if p.DryRun {
				err = tx.QueryRow(ctx, `SELECT COUNT(*) FROM `+s.from+` WHERE `+s.where, args...).Scan(s.n)
			} else {
				*s.n, err = tx.Exec(ctx, `DELETE FROM `+s.from+` WHERE `+s.where, args...)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
		return nil
	})
	if err != nil {
		return state.Pruned{}, db.fail(op, err)
	}
	return out, nil
}

// pruneDays takes the results finished before cutoff out of their tests'
// days, before they are deleted: the tasks they belong to leave the days
// and come back with what remains of them, whose first run may now be a
// later one. Days left with nothing go.
func pruneDays(ctx context.Context, tx Querier, cutoff int64) error {
	tasks := `r.task_id IN (SELECT task_id FROM test_results WHERE finished < $2)`
	if err := days(ctx, tx, -1, "", tasks, cutoff); err != nil {
		return err
	}
	if err := days(ctx, tx, 1, "AND e.finished >= $2", "r.finished >= $2 AND "+tasks, cutoff); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM test_days WHERE runs = 0 AND failures = 0 AND skipped = 0 AND tasks = 0 AND dur_n = 0`)
	return err
}
