package postgres

// SchemaVersion is the version a migrated database is at.
func SchemaVersion() int { return len(migrations) }
