package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/state"
)

func TestS3Config(t *testing.T) {
	t.Setenv("TURTLES_S3_ACCESS_KEY", "AK")
	t.Setenv("TURTLES_S3_SECRET_KEY", "SK")
	cfg, err := s3Config(Settings{Store: "s3://ci-logs/turtles/prod?endpoint=http://127.0.0.1:7070&region=eu-1&path_style=true"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bucket != "ci-logs" || cfg.Prefix != "turtles/prod" || cfg.Endpoint != "http://127.0.0.1:7070" || cfg.Region != "eu-1" ||
		!cfg.PathStyle || cfg.AccessKey != "AK" || cfg.SecretKey != "SK" {
		t.Errorf("s3Config = %+v", cfg)
	}
	credFile := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(credFile, []byte("FILEAK\nFILESK\n"), 0o600)
	cfg, err = s3Config(Settings{Store: "s3://b", S3CredentialsFile: credFile})
	if err != nil || cfg.AccessKey != "FILEAK" || cfg.SecretKey != "FILESK" {
		t.Errorf("from file: %+v, %v", cfg, err)
	}
	for _, bad := range []string{"s3://user:pass@b/x", "s3:///x", "s3://b?bogus=1", "s3://b?path_style=maybe"} {
		_, err := s3Config(Settings{Store: bad})
		if err == nil {
			t.Errorf("s3Config(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "pass") && !strings.Contains(err.Error(), "xxxxx") {
			t.Errorf("s3Config(%q) error shows the password: %v", bad, err)
		}
	}
}

func TestPruneTests(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := Settings{Database: filepath.Join(dir, "state.db")}
	log := slog.New(slog.DiscardHandler)
	// No database: nothing to do, and none is created.
	if n, ok, err := pruneTests(ctx, s, time.Now(), false, log); n != 0 || ok || err != nil {
		t.Fatalf("without a database: %d, %v, %v", n, ok, err)
	}
	if _, err := os.Stat(s.Database); err == nil {
		t.Fatal("prune created a state database")
	}
	db, err := openStateDB(s, log)
	if err != nil {
		t.Fatal(err)
	}
	task := turtles.Task{Repo: turtles.Repo{Name: "o/r"}, SHA: strings.Repeat("ab", 20), Context: "unit", Attempt: 1}
	old := turtles.Result{Task: task, Finished: time.Now().Add(-100 * 24 * time.Hour),
		Tests: []turtles.TestResult{{Name: "a", Outcome: turtles.TestPassed}, {Name: "b", Outcome: turtles.TestFailed}}}
	task.Attempt = 2
	recent := turtles.Result{Task: task, Finished: time.Now(), Tests: []turtles.TestResult{{Name: "a", Outcome: turtles.TestPassed}}}
	for _, r := range []turtles.Result{old, recent} {
		if err := db.RecordTests(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	cutoff := time.Now().Add(-90 * 24 * time.Hour)
	if n, _, err := pruneTests(ctx, s, cutoff, true, log); n != 2 || err != nil {
		t.Fatalf("dry run = %d, %v; want 2", n, err)
	}
	if n, _, err := pruneTests(ctx, s, cutoff, false, log); n != 2 || err != nil {
		t.Fatalf("prune = %d, %v; want 2", n, err)
	}
	if n, _, err := pruneTests(ctx, s, cutoff, false, log); n != 0 || err != nil {
		t.Fatalf("second prune = %d, %v; want 0", n, err)
	}
	db, err = openStateDB(s, log)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	left, err := db.Tests(ctx, state.TestFilter{})
	if err != nil || len(left) != 1 || left[0].Runs != 1 {
		t.Errorf("left after prune: %+v, %v; want test a with 1 run", left, err)
	}
}
