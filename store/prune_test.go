package store_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

func TestAttemptOf(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	sha256 := strings.Repeat("cd", 32)
	tests := []struct{ name, key, want string }{
		{name: "log", key: "o/r/" + sha + "/unit/1/log", want: "o/r/" + sha + "/unit/1/"},
		{name: "artifact", key: "o/r/" + sha + "/unit/2/artifacts/a/b.txt", want: "o/r/" + sha + "/unit/2/"},
		{name: "group repo, escaped context", key: "org/group/r/" + sha + "/debian-12~x/3/result.json", want: "org/group/r/" + sha + "/debian-12~x/3/"},
		{name: "SHA-256 commit", key: "o/r/" + sha256 + "/unit/1/log", want: "o/r/" + sha256 + "/unit/1/"},
		{name: "live log chunk", key: "o/r/" + sha + "/unit/1/log.chunks/000001", want: "o/r/" + sha + "/unit/1/"},
		{name: "attempt not a number", key: "o/r/" + sha + "/unit/x/log"},
		{name: "attempt zero", key: "o/r/" + sha + "/unit/0/log"},
		{name: "attempt not as written", key: "o/r/" + sha + "/unit/01/log"},
		{name: "no commit", key: "o/r/notasha/unit/1/log"},
		{name: "upper-case commit", key: "o/r/" + strings.ToUpper(sha) + "/unit/1/log"},
		{name: "attempt directory alone", key: "o/r/" + sha + "/unit/1"},
		{name: "stray", key: "stray"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.AttemptOf(tt.key); got != tt.want {
				t.Errorf("AttemptOf(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

// FuzzAttemptOf: keys come from listing a store anyone's tasks wrote to.
// AttemptOf finds the prefix AttemptPrefix made, and of any other key
// returns nothing or a prefix of it.
func FuzzAttemptOf(f *testing.F) {
	sha := strings.Repeat("ab", 20)
	f.Add("o/r", "unit", 1, "log")
	f.Add("org/group/r", "debian-12/firefox", 3, "artifacts/x/y")
	f.Add("o/r/"+sha, "1", 2, "log.chunks/000001")
	f.Fuzz(func(t *testing.T, repo, context string, attempt int, rest string) {
		task := turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindTest, Repo: turtles.Repo{Name: repo, CloneURL: "x"},
			SHA: sha, Context: context, Pool: turtles.DefaultPool, Attempt: attempt}
		key := repo + "/" + context + "/" + rest
		if task.Validate() == nil && !slices.ContainsFunc(strings.Split(repo, "/"), turtles.IsSHA) && store.CheckKey(rest) == nil {
			key = store.AttemptPrefix(task) + rest
			if got, want := store.AttemptOf(key), store.AttemptPrefix(task); got != want {
				t.Fatalf("AttemptOf(%q) = %q, want %q", key, got, want)
			}
		}
		if got := store.AttemptOf(key); got != "" && (!strings.HasPrefix(key, got) || !strings.HasSuffix(got, "/")) {
			t.Fatalf("AttemptOf(%q) = %q, not a prefix of the key", key, got)
		}
	})
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	sha := strings.Repeat("cd", 20)
	old := time.Now().Add(-100 * 24 * time.Hour)
	files := map[string]time.Time{
		"o/r/" + sha + "/unit/1/log":                 old,
		"o/r/" + sha + "/unit/1/artifacts/core.dump": old,
		"o/r/" + sha + "/unit/2/log":                 old,
		"o/r/" + sha + "/unit/2/result.json":         time.Now(), // a newer file keeps the attempt
		"o/r/" + sha + "/lint/1/log":                 time.Now(),
		"unrelated/file":                             old,
	}
	kept := []string{"o/r/" + sha + "/lint/1/log", "o/r/" + sha + "/unit/2/log", "o/r/" + sha + "/unit/2/result.json", "unrelated/file"}
	all := append([]string{"o/r/" + sha + "/unit/1/artifacts/core.dump", "o/r/" + sha + "/unit/1/log"}, kept...)
	tests := []struct {
		name   string
		dryRun bool
		want   store.PruneStats
		left   []string
	}{
		{name: "dry run", dryRun: true, want: store.PruneStats{Attempts: 1, Files: 2}, left: all},
		{name: "prune", want: store.PruneStats{Attempts: 1, Files: 2}, left: kept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			st, err := store.NewDir(root)
			if err != nil {
				t.Fatal(err)
			}
			for k, mt := range files {
				if err := st.Put(ctx, k, strings.NewReader("x"), "text/plain"); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(filepath.Join(root, k), mt, mt); err != nil {
					t.Fatal(err)
				}
			}
			got, err := store.Prune(ctx, st, time.Now().Add(-90*24*time.Hour), tt.dryRun)
			if err != nil || got != tt.want {
				t.Fatalf("Prune = %+v, %v; want %+v", got, err, tt.want)
			}
			list, err := st.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, i := range list {
				left = append(left, i.Key)
			}
			if diff := cmp.Diff(slices.Sorted(slices.Values(tt.left)), left); diff != "" {
				t.Errorf("left after prune (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPruneHeld: held VMs older than the cutoff go, whatever else of
// their attempt stays; newer ones, and files of that name outside an
// attempt's top level, stay.
func TestPruneHeld(t *testing.T) {
	ctx := context.Background()
	sha := strings.Repeat("cd", 20)
	old := time.Now().Add(-8 * 24 * time.Hour)
	files := map[string]time.Time{
		"o/r/" + sha + "/unit/1/log":                                     old,
		"o/r/" + sha + "/unit/1/" + store.HeldName:                       old,
		"o/r/" + sha + "/unit/2/" + store.HeldName:                       time.Now(),
		"o/r/" + sha + "/unit/1/" + store.ArtifactsName + store.HeldName: old,
	}
	kept := []string{
		"o/r/" + sha + "/unit/1/artifacts/" + store.HeldName, "o/r/" + sha + "/unit/1/log", "o/r/" + sha + "/unit/2/" + store.HeldName,
	}
	for _, dry := range []bool{true, false} {
		root := t.TempDir()
		st, err := store.NewDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for k, mt := range files {
			if err := st.Put(ctx, k, strings.NewReader("x"), "application/gzip"); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(filepath.Join(root, k), mt, mt); err != nil {
				t.Fatal(err)
			}
		}
		n, err := store.PruneHeld(ctx, st, time.Now().Add(-7*24*time.Hour), dry)
		if err != nil || n != 1 {
			t.Fatalf("PruneHeld(dry %v) = %d, %v; want 1", dry, n, err)
		}
		list, _ := st.List(ctx, "")
		var left []string
		for _, i := range list {
			left = append(left, i.Key)
		}
		want := kept
		if dry {
			want = slices.Sorted(maps.Keys(files))
		}
		if diff := cmp.Diff(slices.Sorted(slices.Values(want)), left); diff != "" {
			t.Errorf("dry %v: left (-want +got):\n%s", dry, diff)
		}
	}
}
