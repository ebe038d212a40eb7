package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/queue"
)

func cancelTask(repo, sha, context string, pr int) turtles.Task {
	return turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: repo, CloneURL: "x"},
		SHA: sha, PR: pr, Context: context, Command: "true", Pool: "public", Attempt: 1}
}

// TestCancelCount: the embedded queue counts every task it cancels,
// queued or running, and none the second time (the contract suite checks
// the rest of Cancel).
func TestCancelCount(t *testing.T) {
	ctx := context.Background()
	opts, _ := testOpts()
	db := openT(t, filepath.Join(t.TempDir(), "q.db"), opts)
	old := "1111111111111111111111111111111111111111"
	for _, task := range []turtles.Task{
		cancelTask("o/r", old, "running", 7),
		cancelTask("o/r", old, "queued", 7),
		cancelTask("o/r", old, "branch", 0), // same commit pushed to a branch
	} {
		if err := db.Publish(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	d, err := db.Claim(ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.Cancel(ctx, "o/r", old, 7, "superseded by a newer push")
	if err != nil || n != 2 {
		t.Fatalf("Cancel = %d, %v; want 2, nil", n, err)
	}
	if err := d.Heartbeat(ctx); !errors.Is(err, queue.ErrCancelled) {
		t.Errorf("Heartbeat after Cancel = %v, want ErrCancelled", err)
	}
	if n, err := db.Cancel(ctx, "o/r", old, 7, "again"); err != nil || n != 0 {
		t.Errorf("second Cancel = %d, %v; want 0, nil", n, err)
	}
}
