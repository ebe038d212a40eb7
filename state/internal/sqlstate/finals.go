package sqlstate

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Finals, approvals and the scanner's ETags.

const finalColumns = `key, attempt, event, recorded, posted, poster, claimed_until`

func scanFinal(r Row) (state.Final, error) {
	var f state.Final
	var body string
	var recorded int64
	var posted sql.NullInt64
	var until int64
	if err := r.Scan(&f.Key, &f.Attempt, &body, &recorded, &posted, &f.Poster, &until); err != nil {
		return state.Final{}, err
	}
	if err := json.Unmarshal([]byte(body), &f.Event); err != nil {
		return state.Final{}, fmt.Errorf("decode final event of %s attempt %d: %w", f.Key, f.Attempt, err)
	}
	f.Recorded = fromMS(recorded)
	if posted.Valid {
		f.Posted = fromMS(posted.Int64)
	}
	if until != 0 {
		f.ClaimedUntil = fromMS(until)
	}
	return f, nil
}

// RecordFinal implements state.DB.
func (db *DB) RecordFinal(ctx context.Context, ev turtles.Event) (state.Final, bool, error) {
	const op = "record final event"
	if err := db.check(op); err != nil {
		return state.Final{}, false, err
	}
	if ev.Type != turtles.EventFinished || ev.Outcome == nil {
		return state.Final{}, false, invalid(op, fmt.Sprintf("event %q of type %q is not final", ev.ID, ev.Type))
	}
	key, attempt := ev.Task.Key(), ev.Task.Attempt
	body, err := json.Marshal(ev)
	if err != nil {
		return state.Final{}, false, fmt.Errorf("%s %s: %w", op, ev.ID, err)
	}
	for range maxReserveTries {
		f, err := scanFinal(db.d.QueryRow(ctx, `INSERT INTO finals (key, attempt, event, recorded) VALUES ($1, $2, $3, $4)
			ON CONFLICT (key, attempt) DO NOTHING RETURNING `+finalColumns, key, attempt, string(body), ms(db.now())))
		if err == nil {
			return f, true, nil
		}
		if !noRows(err) {
			return state.Final{}, false, db.fail(fmt.Sprintf("%s of %s attempt %d", op, key, attempt), err)
		}
		f, err = scanFinal(db.d.QueryRow(ctx, `SELECT `+finalColumns+` FROM finals WHERE key = $1 AND attempt = $2`, key, attempt))
		if err == nil {
			return f, false, nil
		}
		if !noRows(err) {
			return state.Final{}, false, db.fail(fmt.Sprintf("%s of %s attempt %d", op, key, attempt), err)
		}
		// Pruned between the two statements: try again.
	}
	return state.Final{}, false, fmt.Errorf("%s of %s attempt %d: recorded and pruned %d times in a row", op, key, attempt, maxReserveTries)
}

// LastFinal implements state.DB.
func (db *DB) LastFinal(ctx context.Context, key string) (state.Final, error) {
	const op = "look up final event"
	if err := db.check(op); err != nil {
		return state.Final{}, err
	}
	f, err := scanFinal(db.d.QueryRow(ctx, `SELECT `+finalColumns+` FROM finals WHERE key = $1
		ORDER BY attempt DESC LIMIT 1`, key))
	if noRows(err) {
		return state.Final{}, fmt.Errorf("%s of %s: %w", op, key, state.ErrNotFound)
	}
	if err != nil {
		return state.Final{}, db.fail(op+" of "+key, err)
	}
	return f, nil
}

// MarkPosted implements state.DB.
func (db *DB) MarkPosted(ctx context.Context, key string, attempt int) error {
	const op = "mark final status posted"
	if err := db.check(op); err != nil {
		return err
	}
	n, err := db.d.Exec(ctx, `UPDATE finals SET posted = COALESCE(posted, $3) WHERE key = $1 AND attempt = $2`,
		key, attempt, ms(db.now()))
	if err != nil {
		return db.fail(fmt.Sprintf("%s for %s attempt %d", op, key, attempt), err)
	}
	if n == 0 {
		return fmt.Errorf("%s for %s attempt %d: %w", op, key, attempt, state.ErrNotFound)
	}
	return nil
}

// ClaimPost implements state.DB: a compare-and-set on the claim read
// before, so that of concurrent claimers exactly one wins.
func (db *DB) ClaimPost(ctx context.Context, key string, attempt int, holder string, lease time.Duration) (bool, string, error) {
	const op = "claim the posting of a final status"
	if err := db.check(op); err != nil {
		return false, "", err
	}
	if holder == "" || lease <= 0 {
		return false, "", invalid(op, fmt.Sprintf("holder %q, lease %s: want a holder and a lease > 0", holder, lease))
	}
	what := fmt.Sprintf("%s of %s attempt %d", op, key, attempt)
	for range maxReserveTries {
		f, err := scanFinal(db.d.QueryRow(ctx, `SELECT `+finalColumns+` FROM finals WHERE key = $1 AND attempt = $2`, key, attempt))
		if noRows(err) {
			return false, "", fmt.Errorf("%s: %w", what, state.ErrNotFound)
		}
		if err != nil {
			return false, "", db.fail(what, err)
		}
		now := db.now()
		if !f.Posted.IsZero() || f.Poster != "" && f.Poster != holder && f.ClaimedUntil.After(now) {
			return false, "", nil
		}
		prev := ""
		if f.Poster != holder {
			prev = f.Poster
		}
		was := int64(0)
		if !f.ClaimedUntil.IsZero() {
			was = ms(f.ClaimedUntil)
		}
		n, err := db.d.Exec(ctx, `UPDATE finals SET poster = $3, claimed_until = $4
			WHERE key = $1 AND attempt = $2 AND posted IS NULL AND poster = $5 AND claimed_until = $6`,
			key, attempt, holder, ms(now.Add(lease)), f.Poster, was)
		if err != nil {
			return false, "", db.fail(what, err)
		}
		if n == 1 {
			return true, prev, nil
		}
		// Claimed, posted or pruned since the read: look again.
	}
	return false, "", fmt.Errorf("%s: lost the race %d times in a row", what, maxReserveTries)
}

// Unposted implements state.DB.
func (db *DB) Unposted(ctx context.Context, n int) ([]state.Final, error) {
	const op = "list unposted final statuses"
	if err := db.check(op); err != nil {
		return nil, err
	}
	rows, err := db.d.Query(ctx, `SELECT `+finalColumns+` FROM finals WHERE posted IS NULL AND claimed_until <= $2
		ORDER BY recorded, key, attempt LIMIT $1`, limit(n, 100, 1000), ms(db.now()))
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.Final{}
	for rows.Next() {
		f, err := scanFinal(rows)
		if err != nil {
			return nil, db.fail(op, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(op, err)
	}
	return out, nil
}

// Approve implements state.DB.
func (db *DB) Approve(ctx context.Context, a state.Approval) (bool, error) {
	const op = "record approval"
	if err := db.check(op); err != nil {
		return false, err
	}
	if a.Repo == "" || a.SHA == "" || a.Approver == "" {
		return false, invalid(op, "empty repo, commit or approver")
	}
	at := a.Time
	if at.IsZero() {
		at = db.now()
	}
	n, err := db.d.Exec(ctx, `INSERT INTO approvals (repo, sha, pr, approver, at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (repo, sha) DO NOTHING`, a.Repo, a.SHA, a.PR, a.Approver, ms(at))
	if err != nil {
		return false, db.fail(fmt.Sprintf("%s of %s@%s", op, a.Repo, a.SHA), err)
	}
	return n == 1, nil
}

// Approval implements state.DB.
func (db *DB) Approval(ctx context.Context, repo, sha string) (state.Approval, error) {
	const op = "look up approval"
	if err := db.check(op); err != nil {
		return state.Approval{}, err
	}
	a := state.Approval{Repo: repo, SHA: sha}
	var at int64
	err := db.d.QueryRow(ctx, `SELECT pr, approver, at FROM approvals WHERE repo = $1 AND sha = $2`, repo, sha).
		Scan(&a.PR, &a.Approver, &at)
	if noRows(err) {
		return state.Approval{}, fmt.Errorf("%s of %s@%s: %w", op, repo, sha, state.ErrNotFound)
	}
	if err != nil {
		return state.Approval{}, db.fail(fmt.Sprintf("%s of %s@%s", op, repo, sha), err)
	}
	a.Time = fromMS(at)
	return a, nil
}

// ETag implements state.DB.
func (db *DB) ETag(ctx context.Context, key string) (string, error) {
	const op = "look up ETag"
	if err := db.check(op); err != nil {
		return "", err
	}
	var etag string
	err := db.d.QueryRow(ctx, `SELECT etag FROM etags WHERE key = $1`, key).Scan(&etag)
	if noRows(err) {
		return "", nil
	}
	if err != nil {
		return "", db.fail(op+" of "+key, err)
	}
	return etag, nil
}

// SetETag implements state.DB.
func (db *DB) SetETag(ctx context.Context, key, etag string) error {
	const op = "record ETag"
	if err := db.check(op); err != nil {
		return err
	}
	if key == "" {
		return invalid(op, "empty key")
	}
	var err error
	if etag == "" {
		_, err = db.d.Exec(ctx, `DELETE FROM etags WHERE key = $1`, key)
	} else {
		_, err = db.d.Exec(ctx, `INSERT INTO etags (key, etag, updated) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, updated = excluded.updated`, key, etag, ms(db.now()))
	}
	if err != nil {
		return db.fail(op+" of "+key, err)
	}
	return nil
}
