package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/turtles-ci/turtles/state/internal/sqlstate"
)

// SchemaVersion is the version a migrated database is at.
func SchemaVersion() int { return len(migrations) }

// MigrateTo brings the file at path to schema version v alone, as an
// older binary left it.
func MigrateTo(ctx context.Context, path string, v int) error {
	sdb, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer sdb.Close()
	sdb.SetMaxOpenConns(1)
	return sqlstate.Migrate(ctx, &driver{db: sdb, querier: querier{sdb}}, migrations[:v], time.Now)
}
