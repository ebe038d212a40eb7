package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
)

func TestSettingsPrune(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	s := defaults()
	want := state.Prune{Deliveries: now.Add(-7 * 24 * time.Hour), Events: now.Add(-7 * 24 * time.Hour), Finals: now.Add(-30 * 24 * time.Hour),
		Bots: now.Add(-24 * time.Hour)}
	if diff := cmp.Diff(want, s.prune(now)); diff != "" {
		t.Errorf("prune of the defaults (-want +got):\n%s", diff)
	}
	s.RetainTasks, s.RetainFinals, s.RetainBots = time.Hour, 0, 0
	// What people did to tasks goes with them.
	want.Tasks, want.Actions, want.Finals, want.Bots = now.Add(-time.Hour), now.Add(-time.Hour), time.Time{}, time.Time{}
	if diff := cmp.Diff(want, s.prune(now)); diff != "" {
		t.Errorf("prune with tasks kept an hour and finals forever (-want +got):\n%s", diff)
	}
}

// TestResultsPrune: `turtles results prune` forgets what the retention
// settings let go, and with --dry-run only counts it.
func TestResultsPrune(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	old := time.Now().Add(-10 * 24 * time.Hour)
	db, err := sqlite.Open(t.Context(), path, state.Options{Now: func() time.Time { return old }})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d-1", "sha256:ab"} {
		if _, err := db.FirstDelivery(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dry-run"}, "would delete 2 deliveries"},
		{[]string{"--retain-deliveries", "720h"}, "deleted 0 deliveries"},
		{nil, "deleted 2 deliveries"},
		{nil, "deleted 0 deliveries"},
	} {
		code, out := runTurtles(t, append([]string{"results", "prune", "--data-dir", dir}, tt.args...)...)
		if code != 0 || !strings.Contains(out, tt.want) || !strings.Contains(out, path) {
			t.Errorf("results prune %v: exit %d, %q; want %q in %s", tt.args, code, out, tt.want, path)
		}
	}
}
