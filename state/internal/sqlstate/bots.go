package sqlstate

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

// Heartbeat implements state.DB.
func (db *DB) Heartbeat(ctx context.Context, b state.Bot) error {
	const op = "record bot heartbeat"
	if err := db.check(op); err != nil {
		return err
	}
	switch {
	case b.Name == "" || b.Pool == "":
		return invalid(op, "empty bot name or pool")
	case b.Slots < 0 || b.Busy < 0:
		return invalid(op, fmt.Sprintf("bot %s: %d slots, %d busy", b.Name, b.Slots, b.Busy))
	case b.Every <= 0:
		return invalid(op, fmt.Sprintf("bot %s: heartbeat period %s", b.Name, b.Every))
	}
	tasks := b.Tasks
	if tasks == nil {
		tasks = []string{}
	}
	js, err := json.Marshal(tasks)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	now := ms(db.now())
	started, keep := ms(b.Started), 0
	if b.Started.IsZero() {
		started, keep = now, 1
	}
	_, err = db.d.Exec(ctx, `INSERT INTO bots (name, pool, slots, busy, tasks, started, seen, every)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (name) DO UPDATE SET pool = excluded.pool, slots = excluded.slots, busy = excluded.busy,
			tasks = excluded.tasks, seen = excluded.seen, every = excluded.every,
			started = CASE WHEN $9 = 1 THEN bots.started ELSE excluded.started END`,
		b.Name, b.Pool, b.Slots, b.Busy, string(js), started, now, time.Duration(b.Every).Milliseconds(), keep)
	if err != nil {
		return db.fail(op+" of "+b.Name, err)
	}
	return nil
}

// Bots implements state.DB.
func (db *DB) Bots(ctx context.Context) ([]state.Bot, error) {
	const op = "list bots"
	if err := db.check(op); err != nil {
		return nil, err
	}
	rows, err := db.d.Query(ctx, `SELECT name, pool, slots, busy, tasks, started, seen, every FROM bots ORDER BY pool, name`)
	if err != nil {
		return nil, db.fail(op, err)
	}
	defer rows.Close()
	out := []state.Bot{}
	for rows.Next() {
		var b state.Bot
		var tasks string
		var started, seen, every int64
		if err := rows.Scan(&b.Name, &b.Pool, &b.Slots, &b.Busy, &tasks, &started, &seen, &every); err != nil {
			return nil, db.fail(op, err)
		}
		if err := json.Unmarshal([]byte(tasks), &b.Tasks); err != nil {
			return nil, fmt.Errorf("%s: tasks of bot %s: %w", op, b.Name, err)
		}
		if len(b.Tasks) == 0 {
			b.Tasks = nil
		}
		b.Started, b.Seen, b.Every = fromMS(started), fromMS(seen), turtles.Duration(time.Duration(every)*time.Millisecond)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, db.fail(op, err)
	}
	return out, nil
}
