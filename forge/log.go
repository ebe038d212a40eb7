package forge

import (
	"context"
	"log/slog"
)

// Log is a Forge that only logs the statuses it is given. turtles uses it
// when no forge credentials are configured, so that a local `turtles
// serve` works and shows what it would have reported.
type Log struct{ Log *slog.Logger }

// SetStatus implements Forge.
func (l Log) SetStatus(ctx context.Context, repo, sha string, st Status) error {
	l.Log.InfoContext(ctx, "status (not sent: no forge credentials)", "repo", repo, "sha", sha,
		"context", st.Context, "state", st.State, "description", st.Description, "url", st.TargetURL)
	return nil
}
