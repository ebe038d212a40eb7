package sqlstate

import (
	"context"
	"fmt"

	"github.com/turtles-ci/turtles/state"
)

// What people did from the dashboard (package login records it): one row
// per action, kept beside the history of the task it acted on.

// maxActions bounds what Actions returns: the newest ones.
const maxActions = 1000

// RecordAction implements state.DB.
func (db *DB) RecordAction(ctx context.Context, a state.Action) error {
	op := fmt.Sprintf("record %s action on task %s", a.Kind, a.Task)
	if err := db.check(op); err != nil {
		return err
	}
	if a.Task == "" || a.Kind == "" || a.User == "" {
		return invalid(op, "empty task, kind or user")
	}
	at := a.At
	if at.IsZero() {
		at = db.now()
	}
	if _, err := db.d.Exec(ctx, `INSERT INTO actions (task, kind, actor, at, result) VALUES ($1, $2, $3, $4, $5)`,
		a.Task, a.Kind, a.User, ms(at), a.Result); err != nil {
		return db.fail(op, err)
	}
	return nil
}

// Actions implements state.DB.
func (db *DB) Actions(ctx context.Context, task string) ([]state.Action, error) {
	op := "list actions on task " + task
	if err := db.check(op); err != nil {
		return nil, err
	}
	rows, err := db.d.Query(ctx, `SELECT task, kind, actor, at, result FROM (
			SELECT task, kind, actor, at, result, id FROM actions WHERE task = $1 ORDER BY at DESC, id DESC LIMIT $2
		) newest ORDER BY at, id`, task, maxActions)
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	var out []state.Action
	for rows.Next() {
		var a state.Action
		var at int64
		if err := rows.Scan(&a.Task, &a.Kind, &a.User, &at, &a.Result); err != nil {
			return nil, db.fail(op, err)
		}
		a.At = fromMS(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(op, err)
	}
	return out, nil
}
