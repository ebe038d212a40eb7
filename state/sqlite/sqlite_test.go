package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/turtles-ci/turtles/state"
	"github.com/turtles-ci/turtles/state/sqlite"
	"github.com/turtles-ci/turtles/state/statetest"
)

func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Open {
		path := filepath.Join(t.TempDir(), "state.db")
		return func(opts state.Options) (state.DB, error) {
			return sqlite.Open(context.Background(), path, opts)
		}
	})
}
