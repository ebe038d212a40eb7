package command

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Command
	}{
		{name: "empty", body: "", want: nil},
		{name: "prose", body: "LGTM, thanks!\nplease /retest later", want: nil},
		{name: "retest", body: "/retest", want: []Command{{Name: Retest}}},
		{name: "retest with spaces and CRLF", body: "  /retest  \r\n", want: []Command{{Name: Retest}}},
		{name: "ok-to-test", body: "looks safe\n/ok-to-test\n", want: []Command{{Name: OKToTest}}},
		{name: "ok-to-test naming the commit", body: "/ok-to-test 1234ABCdef", want: []Command{{Name: OKToTest, SHA: "1234abcdef"}}},
		{name: "ok-to-test with prose is prose", body: "/ok-to-test please\n/ok-to-test 123456", want: nil},
		{name: "test one", body: "/test debian-12/firefox", want: []Command{{Name: Test, Context: "debian-12/firefox"}}},
		{name: "test several", body: "/test a b\n/test b c", want: []Command{
			{Name: Test, Context: "a"}, {Name: Test, Context: "b"}, {Name: Test, Context: "c"}}},
		{name: "test without context", body: "/test", want: nil},
		{name: "test bad context", body: "/test ../etc /x ok", want: []Command{{Name: Test, Context: "ok"}}},
		{name: "retest with argument is prose", body: "/retest please", want: nil},
		{name: "unknown", body: "/lgtm\n/approve", want: nil},
		{name: "prefix of a word", body: "/retesting\n/ok-to-test-all", want: nil},
		{name: "quoted", body: "> /ok-to-test\n> /retest", want: nil},
		{name: "fenced code", body: "```\n/ok-to-test\n```\n/retest", want: []Command{{Name: Retest}}},
		{name: "duplicates", body: "/retest\n/retest", want: []Command{{Name: Retest}}},
		{name: "upper case is not a command", body: "/RETEST", want: nil},
		{name: "hold the failed", body: "/hold", want: []Command{{Name: Hold}}},
		{name: "hold contexts", body: "/hold a ../x b", want: []Command{{Name: Hold, Context: "a"}, {Name: Hold, Context: "b"}}},
		{name: "hold and test", body: "/hold a\n/test a", want: []Command{{Name: Hold, Context: "a"}, {Name: Test, Context: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Parse(tt.body)); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

func TestParseBounded(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		b.WriteString("/test c")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString("\n")
	}
	if got := len(Parse(b.String())); got != MaxCommands {
		t.Errorf("got %d commands, want MaxCommands = %d", got, MaxCommands)
	}
}

func TestString(t *testing.T) {
	for _, c := range []Command{{Name: Retest}, {Name: OKToTest}, {Name: Test, Context: "a/b"}, {Name: Hold}, {Name: Hold, Context: "a"}} {
		if got := Parse(c.String()); len(got) != 1 || got[0] != c {
			t.Errorf("Parse(%q) = %v, want [%v]", c.String(), got, c)
		}
	}
}

// FuzzParse checks that no comment panics the parser or yields a command
// that the rest of turtles would refuse. Seeds live in testdata/fuzz.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/retest", "/test a b", "/ok-to-test", "> /retest", "```\n/retest\n```", "/test ..", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cmds := Parse(body)
		if len(cmds) > MaxCommands {
			t.Fatalf("%d commands, want at most %d", len(cmds), MaxCommands)
		}
		seen := map[Command]bool{}
		for _, c := range cmds {
			if seen[c] {
				t.Errorf("duplicate command %v", c)
			}
			seen[c] = true
			switch c.Name {
			case Retest, OKToTest:
				if c.Context != "" {
					t.Errorf("%v has a context", c)
				}
			case Test:
				if !contextRe.MatchString(c.Context) || strings.Contains(c.Context, "..") {
					t.Errorf("/test with bad context %q", c.Context)
				}
			default:
				t.Errorf("unknown command %v", c)
			}
			if !strings.Contains(body, "/"+string(c.Name)) {
				t.Errorf("command %v not in body %q", c, body)
			}
		}
	})
}
