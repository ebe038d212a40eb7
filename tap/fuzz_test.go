package tap

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func FuzzParse(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.tap")
	for _, in := range inputs {
		b, _ := os.ReadFile(in)
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		lines := strings.Split(in, "\n")
		failures := 0
		for _, tt := range rep.Tests {
			if tt.Line < 1 || tt.Line > len(lines) {
				t.Fatalf("test %q on line %d of %d", tt.Name, tt.Line, len(lines))
			}
			if !strings.Contains(ansiRe.ReplaceAllString(lines[tt.Line-1], ""), "ok") {
				t.Errorf("test %q from line %d, %q, which has no ok", tt.Name, tt.Line, lines[tt.Line-1])
			}
			switch tt.Outcome {
			case turtles.TestFailed:
				failures++
			case turtles.TestPassed, turtles.TestSkipped, turtles.TestTodo:
			default:
				t.Errorf("bad outcome %q", tt.Outcome)
			}
			if tt.Outcome == turtles.TestSkipped && !strings.Contains(strings.ToLower(lines[tt.Line-1]), "skip") {
				t.Errorf("test %q skipped without a SKIP on its line", tt.Name)
			}
			if tt.Name == "" || tt.Duration < 0 {
				t.Errorf("test %+v: no name or negative duration", tt)
			}
		}
		if failures != rep.Failures {
			t.Errorf("%d failed tests, Failures %d", failures, rep.Failures)
		}
		// The bot feeds the log as it comes, in pieces of any size.
		p := NewParser()
		for i := 0; i < len(in); i += 5 {
			p.Write([]byte(in[i:min(i+5, len(in))]))
		}
		if w := p.Report(); !reflect.DeepEqual(rep, w) {
			t.Errorf("Write in pieces differs from Parse (-parse +write):\n%s", cmp.Diff(rep, w))
		}
	})
}

// directiveRe is TAP::Parser's own test for a directive
// (TAP::Parser::Grammar 3.44), written for Go: ASCII white space and
// letters, as Perl treats bytes that were not decoded.
var directiveRe = regexp.MustCompile(`^([^\\#]*(?:\\.[^\\#]*)*)#[ \t\n\v\f\r]*([Ss][Kk][Ii][Pp]|[Tt][Oo][Dd][Oo])\b[ \t\n\v\f\r]*(.*)$`)

// FuzzDirective holds splitDirective to TAP::Parser's regular expression.
func FuzzDirective(f *testing.F) {
	for _, s := range []string{
		"- a (see #197) # SKIP why", `- a \# b # todo: c`, "#skip", "# SKIPPED", "# Skip_it", `x\\# SKIP y`,
		"- é # SKIPé", "#\tTODO\tx", `trailing \`, "# tOdO", "a # time=3ms",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "\n") {
			return // one line; Perl's . and $ differ from Go's at a newline
		}
		desc, dir, expl := splitDirective(s)
		var want [3]string
		if m := directiveRe.FindStringSubmatch(s); m != nil {
			want = [3]string{m[1], strings.ToUpper(m[2]), m[3]}
		} else {
			want = [3]string{s, "", ""}
		}
		if got := [3]string{desc, dir, expl}; got != want {
			t.Errorf("splitDirective(%q) = %q, TAP::Parser's %q", s, got, want)
		}
	})
}
