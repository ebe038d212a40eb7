package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/triage"
)

func TestTriageCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good/5494.yaml", "issue: https://github.com/o/r/issues/5494\nmatch:\n  glob: 'Timed out waiting for * to appear'\nsamples:\n  - file: samples/5494.log\n")
	write("good/samples/5494.log", "ok 1\nError: Timed out waiting for #login to appear\n")
	write("bad/broken.yaml", "issue: https://x.org/1\nmatch:\n  glob: abc\nsamples: [abc]\nblock: yes\n")
	write("bad/nomatch.yaml", "issue: https://x.org/2\nmatch:\n  glob: 'never seen'\nsamples:\n  - 'seen once'\n")
	write("bad/expired.yaml", "issue: https://x.org/3\nexpires: 2020-02-02\nmatch:\n  glob: abc\nsamples: [abc]\n")
	write("bad/runaway.yaml", "issue: https://x.org/4\nmatch:\n  regex: '(a+)+$'\nsamples: [aaa]\n")
	write("bad/fine.yaml", "issue: https://x.org/5\nmatch:\n  glob: abc\nsamples: [abc]\n")
	write("passing/flaky.yaml", "issue: https://x.org/6\nmatch:\n  glob: 'retrying connection'\nsamples: ['retrying connection to db']\n")
	write("debian/flaky.yaml", "issue: https://x.org/7\nscope:\n  images: ['debian-*']\nmatch:\n  glob: 'retrying connection'\nsamples: ['retrying connection to db']\n")
	write("fedora/flaky.yaml", "issue: https://x.org/8\nscope:\n  images: ['fedora-*']\nmatch:\n  glob: 'retrying connection'\nsamples: ['retrying connection to db']\n")
	data := filepath.Join(dir, "data")

	// A passing attempt whose log the pattern in passing/ matches.
	s := Settings{DataDir: data, Database: filepath.Join(data, "state.db"), StoreDir: filepath.Join(data, "store")}
	db, err := openStateDB(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	task := turtles.Task{Kind: turtles.KindTest, Repo: turtles.Repo{Name: "o/r", CloneURL: "file:///x"}, SHA: strings.Repeat("ab", 20), Context: "unit", Attempt: 1, Image: "debian-12"}
	now := time.Now()
	for i, typ := range []turtles.EventType{turtles.EventQueued, turtles.EventStarted, turtles.EventFinished} {
		ev := turtles.Event{ID: string(typ), Type: typ, Task: task, Time: now.Add(time.Duration(i) * time.Second)}
		if typ == turtles.EventFinished {
			ev.Outcome = &turtles.Outcome{Class: turtles.Success}
		}
		if _, err := db.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	st, err := store.NewDir(s.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), store.AttemptPrefix(task)+store.LogName, strings.NewReader("start\nretrying connection to db at 10.0.0.1\nok\n"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	// Its result says which image it ran on.
	res, _ := json.Marshal(turtles.Result{Task: task, Outcome: turtles.Outcome{Class: turtles.Success}})
	if err := st.Put(context.Background(), store.AttemptPrefix(task)+store.ResultName, bytes.NewReader(res), "application/json"); err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(dir, "bad")
	tests := []struct {
		name    string
		args    []string
		wantOut []string
		wantErr string
	}{
		{name: "good", args: []string{filepath.Join(dir, "good")}, wantOut: []string{"1 pattern(s) OK, checked against 0 passing log(s)"}},
		{name: "defaults", args: []string{"--defaults"}, wantOut: []string{"5 pattern(s) OK"}},
		{name: "bad", args: []string{bad}, wantErr: "4 problem(s)", wantOut: []string{
			bad + `/broken.yaml:5: unknown key "block"`,
			bad + "/nomatch.yaml:5: sample 1 does not match",
			bad + "/expired.yaml: expired on 2020-02-02",
			bad + "/runaway.yaml:2: regex has no text of at least 3 characters",
		}},
		{name: "missing dir", args: []string{filepath.Join(dir, "none")}, wantErr: "1 problem(s)", wantOut: []string{"none: not a directory"}},
		{name: "passing log matched", args: []string{"--data-dir", data, filepath.Join(dir, "passing")}, wantErr: "1 problem(s)",
			wantOut: []string{"passing/flaky.yaml: matches the passing log of o/r@abababababab unit on debian-12 attempt 1", "line 2: retrying connection to db at 10.0.0.1"}},
		{name: "image-scoped, its image", args: []string{"--data-dir", data, filepath.Join(dir, "debian")}, wantErr: "1 problem(s)",
			wantOut: []string{"debian/flaky.yaml: matches the passing log of o/r@abababababab unit on debian-12 attempt 1"}},
		{name: "image-scoped, another image", args: []string{"--data-dir", data, filepath.Join(dir, "fedora")}, wantOut: []string{"1 pattern(s) OK, checked against 1 passing log(s)"}},
		{name: "passing skipped", args: []string{"--data-dir", data, "--passing", "0", filepath.Join(dir, "passing")}, wantOut: []string{"1 pattern(s) OK, checked against 0"}},
		{name: "passing log clean", args: []string{"--data-dir", data, filepath.Join(dir, "good")}, wantOut: []string{"1 pattern(s) OK, checked against 1 passing log(s)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := rootCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			args := append([]string{"triage", "check", "--data-dir", filepath.Join(dir, "nodata")}, tt.args...)
			cmd.SetArgs(args)
			err := cmd.Execute()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v; output:\n%s", err, out.String())
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "nodata", "state.db")); err == nil {
				t.Error("check created a state database")
			}
		})
	}
}

// TestAddKnownIssues: the server's pattern directories add to turtles'
// own; a file that does not parse is left out, named with its line, and
// the others still apply; a directory that is not there stops the bot.
func TestAddKnownIssues(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.yaml"), []byte("issue: https://x/1\nmatch:\n  glob: \"mirror * is sync*\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("issue: https://x/2\nmatch:\n  regex: \"(unclosed\"\n"), 0o644)
	set, _ := triage.Defaults()
	before := len(set.Patterns)
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	if err := addKnownIssues(set, []string{dir}, log); err != nil {
		t.Fatal(err)
	}
	if len(set.Patterns) != before+1 {
		t.Errorf("%d patterns, want %d: the good file added", len(set.Patterns), before+1)
	}
	if !strings.Contains(logged.String(), "bad.yaml:") || !strings.Contains(logged.String(), "left out") {
		t.Errorf("log does not name the bad file and line:\n%s", logged.String())
	}
	ms, err := set.Match(t.Context(), triage.Input{Files: map[string]io.Reader{"log": strings.NewReader("E: mirror deb.debian.org is syncing\n")}})
	if err != nil || len(ms) != 1 || ms[0].Issue != "https://x/1" {
		t.Errorf("Match = %+v, %v; want the server's pattern", ms, err)
	}
	if err := addKnownIssues(set, []string{filepath.Join(dir, "missing")}, log); err == nil {
		t.Error("a missing directory: no error")
	}
}
