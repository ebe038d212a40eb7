package tap

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden parses real-world shaped output (prove -v of Perl tests, TAP
// 12/13; node-tap's TAP 14 reporter with subtests) and compares with
// testdata/NAME.golden.json.
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.tap")
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.tap")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(rep, "", "  ")
			golden := strings.TrimSuffix(in, ".tap") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./tap -update to create it)", err)
			}
			if diff := cmp.Diff(strings.TrimSpace(string(want)), string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Test
	}{
		{
			// TAP::Parser numbers them by their place in the stream.
			name: "TAP 12 without numbers",
			in:   "1..3\nok\nnot ok\nok - third\n",
			want: []Test{{Name: "#1", Outcome: turtles.TestPassed, Number: 1, Line: 2}, {Name: "#2", Outcome: turtles.TestFailed, Number: 2, Line: 3}, {Name: "third", Outcome: turtles.TestPassed, Number: 3, Line: 4}},
		},
		{
			name: "directives",
			in:   "ok 1 - a # SKIP why\nnot ok 2 b # todo: later\nok 3 c # Skipped: reasons\nnot ok 4 - d \\# not a directive\nnot ok 5 #skip\n",
			want: []Test{
				{Name: "a", Outcome: turtles.TestSkipped, Number: 1, Line: 1, Reason: "why"},
				{Name: "b", Outcome: turtles.TestTodo, Number: 2, Line: 2, Reason: "later"},
				// SKIP must be a whole word, for TAP::Parser.
				{Name: "c # Skipped: reasons", Outcome: turtles.TestPassed, Number: 3, Line: 3},
				{Name: "d # not a directive", Outcome: turtles.TestFailed, Number: 4, Line: 4},
				// "not ok" fails even when skipped, as prove says.
				{Name: "#5", Outcome: turtles.TestFailed, Number: 5, Line: 5},
			},
		},
		{
			// Only the first unescaped '#' can start a directive; any
			// other '#' belongs to the description, and so does a
			// "# SKIP" after it.
			name: "hashes in descriptions",
			in:   "ok 1 - parses lists (see #197)\nok 2 - #392 regression\nok 3 - issue #5 # skip flaky\nok 4 - issue \\#5 # skip flaky\n",
			want: []Test{
				{Name: "parses lists (see #197)", Outcome: turtles.TestPassed, Number: 1, Line: 1},
				{Name: "#392 regression", Outcome: turtles.TestPassed, Number: 2, Line: 2},
				{Name: "issue #5 # skip flaky", Outcome: turtles.TestPassed, Number: 3, Line: 3},
				{Name: "issue #5", Outcome: turtles.TestSkipped, Number: 4, Line: 4, Reason: "flaky"},
			},
		},
		{
			name: "streams one after another",
			in:   "1..1\nok 1 - a\nok 1 - b\nok 2 - c\n1..2\nok 1 - d\n1..1\nok 2 - e\n",
			want: []Test{
				{Name: "a", Outcome: turtles.TestPassed, Number: 1, Line: 2},
				{Name: "b", Outcome: turtles.TestPassed, Number: 1, Line: 3},
				{Name: "c", Outcome: turtles.TestPassed, Number: 2, Line: 4},
				{Name: "d", Outcome: turtles.TestPassed, Number: 1, Line: 6},
				{Name: "e", Outcome: turtles.TestFailed, Number: 2, Line: 8, Reason: "test 2 ran past the plan of 1"},
			},
		},
		{
			name: "yaml and duration",
			in:   "TAP version 13\nnot ok 1 - x\n  ---\n  duration_ms: 250\n  ...\nok 2 - y # time=1.5s\n",
			want: []Test{
				{Name: "x", Outcome: turtles.TestFailed, Number: 1, Line: 2, Duration: 250 * time.Millisecond, Diagnostics: "duration_ms: 250"},
				{Name: "y", Outcome: turtles.TestPassed, Number: 2, Line: 6, Duration: 1500 * time.Millisecond},
			},
		},
		{
			name: "mixed with other output",
			in:   "make[1]: entering\n  ok this is not tap at depth 0\nok 1 - real\nokay then\n",
			want: []Test{{Name: "real", Outcome: turtles.TestPassed, Number: 1, Line: 3}},
		},
		{
			name: "unnamed subtest gets its comment's name",
			in:   "# Subtest: outer\n    ok 1 - inner\n    1..1\nok 1\n",
			want: []Test{{Name: "outer / inner", Outcome: turtles.TestPassed, Number: 1, Line: 2}, {Name: "outer", Outcome: turtles.TestPassed, Number: 1, Line: 4}},
		},
		{
			name: "unfinished subtest",
			in:   "TAP version 14\n# Subtest: cut\n    not ok 1 - died\n",
			want: []Test{{Name: "cut / died", Outcome: turtles.TestFailed, Number: 1, Line: 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep.Tests); diff != "" {
				t.Errorf("tests (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWriteMatchesParse feeds the same input in odd pieces, as a live log
// arrives.
func TestWriteMatchesParse(t *testing.T) {
	b, err := os.ReadFile("testdata/node-tap.tap")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Parse(strings.NewReader(string(b)))
	p := NewParser()
	for i := 0; i < len(b); i += 7 {
		p.Write(b[i:min(i+7, len(b))])
	}
	if diff := cmp.Diff(want, p.Report()); diff != "" {
		t.Errorf("Write in pieces differs from Parse (-parse +write):\n%s", diff)
	}
}

func TestBailOut(t *testing.T) {
	rep, _ := Parse(strings.NewReader("1..3\nok 1\nBail out! no database\n"))
	if !rep.Bailed || rep.BailOut != "no database" || rep.Planned != 3 {
		t.Errorf("report %+v, want bailed out with reason, 3 planned", rep)
	}
}

func TestColoured(t *testing.T) {
	rep, _ := Parse(strings.NewReader("\x1b[32mok 1 - green\x1b[0m\n\x1b[1;31mnot ok 2 - red\x1b[0m\n"))
	if len(rep.Tests) != 2 || rep.Tests[1].Name != "red" || rep.Tests[1].Outcome != turtles.TestFailed {
		t.Errorf("coloured TAP parsed as %+v", rep.Tests)
	}
}
