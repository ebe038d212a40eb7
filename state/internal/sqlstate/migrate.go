package sqlstate

import (
	"context"
	"fmt"
	"time"
)

// Migrate brings the schema on d up to date: migrations[i] takes it from
// version i to version i+1, and is never changed once released (append
// only). Each runs in its own transaction, under the lock
// "schema_migrations", together with the row of schema_migrations that
// records it, so that of several processes starting at once one migrates
// and the others wait and then find the work done. A database newer than
// this binary is an error: an older binary must not write into a schema
// it does not know.
func Migrate(ctx context.Context, d Driver, migrations []string, now func() time.Time) error {
	for {
		done := false
		err := d.InTx(ctx, func(tx Querier) error {
			if err := d.Lock(ctx, tx, "schema_migrations"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY,
				applied BIGINT NOT NULL
			)`); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
			var v int
			if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
				return fmt.Errorf("read schema version: %w", err)
			}
			switch {
			case v > len(migrations):
				return fmt.Errorf("schema version %d is newer than this binary knows (%d): run a newer turtles", v, len(migrations))
			case v == len(migrations):
				done = true
				return nil
			}
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`, v+1, ms(now())); err != nil {
				return fmt.Errorf("record schema version %d: %w", v+1, err)
			}
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}
