package triage

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/turtles-ci/turtles/config"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, data string
		wantErr    string // substring; "" for success
		wantLine   int
	}{
		{name: "glob", data: "issue: https://github.com/o/r/issues/5494\nmatch:\n  glob: 'Connection to * closed'\nsamples: [x]\n"},
		{name: "regex", data: "issue: https://x.org/5\nmatch:\n  regex: 'timed out after [0-9]+'\naction: skip\nexpires: 2030-01-02\n"},
		{name: "syntax error", data: "issue: https://x.org/5\nmatch: [\n", wantErr: "did not find expected", wantLine: 2},
		{name: "unknown key", data: "issue: https://x.org/5\nmatch:\n  glob: abc\nblock: true\n", wantErr: `unknown key "block"`, wantLine: 4},
		{name: "unknown key in match", data: "issue: https://x.org/5\nmatch:\n  glob: abc\n  grep: x\n", wantErr: `unknown key "grep"`, wantLine: 4},
		{name: "no issue", data: "match:\n  glob: abc\n", wantErr: "issue is required"},
		{name: "issue not a URL", data: "issue: '#5494'\nmatch:\n  glob: abc\n", wantErr: "not an http(s) URL", wantLine: 1},
		{name: "both glob and regex", data: "issue: https://x.org/5\nmatch:\n  glob: abc\n  regex: abc\n", wantErr: "exactly one of glob or regex", wantLine: 2},
		{name: "neither", data: "issue: https://x.org/5\n", wantErr: "exactly one of glob or regex"},
		{name: "bad action", data: "issue: https://x.org/5\naction: ignore\nmatch:\n  glob: abc\n", wantErr: `action "ignore"`, wantLine: 2},
		{name: "bad expiry", data: "issue: https://x.org/5\nexpires: soon\nmatch:\n  glob: abc\n", wantErr: "expires", wantLine: 2},
		{name: "bad regex", data: "issue: https://x.org/5\nmatch:\n  regex: 'a(b'\n", wantErr: "does not compile", wantLine: 2},
		{name: "backreference is not RE2", data: "issue: https://x.org/5\nmatch:\n  regex: '(abc)\\1'\n", wantErr: "does not compile", wantLine: 2},
		{name: "huge regex", data: "issue: https://x.org/5\nmatch:\n  regex: 'abc(x{1000}){1000}'\n", wantErr: "", wantLine: 2},
		{name: "big program", data: "issue: https://x.org/5\nmatch:\n  regex: 'abc" + strings.Repeat("[a-z]{1000}", 11) + "'\n", wantErr: "too large", wantLine: 2},
		{name: "too long regex", data: "issue: https://x.org/5\nmatch:\n  regex: '" + strings.Repeat("a", MaxRegexLen+1) + "'\n", wantErr: "longer than", wantLine: 2},
		{name: "regex without literal", data: "issue: https://x.org/5\nmatch:\n  regex: '[a-z]+ [0-9]+'\n", wantErr: "no text of at least 3", wantLine: 2},
		{name: "case-insensitive regex only", data: "issue: https://x.org/5\nmatch:\n  regex: '(?i)kernel panic'\n", wantErr: "no text of at least 3", wantLine: 2},
		{name: "alternation with literals", data: "issue: https://x.org/5\nmatch:\n  regex: 'reset by peer|kex_exchange'\n"},
		{name: "optional literal", data: "issue: https://x.org/5\nmatch:\n  regex: '(abc)?[0-9]'\n", wantErr: "no text", wantLine: 2},
		{name: "glob of only stars", data: "issue: https://x.org/5\nmatch:\n  glob: '* ? *'\n", wantErr: "no text", wantLine: 2},
		{name: "bad files glob", data: "issue: https://x.org/5\nfiles: ['[']\nmatch:\n  glob: abc\n", wantErr: "bad glob", wantLine: 2},
		{name: "sample mapping", data: "issue: https://x.org/5\nmatch:\n  glob: abc\nsamples:\n  - file: s/a.log\n  - text: abc\n"},
		{name: "sample bad key", data: "issue: https://x.org/5\nmatch:\n  glob: abc\nsamples:\n  - path: a\n", wantErr: `unknown key "path"`, wantLine: 5},
		{name: "sample outside", data: "issue: https://x.org/5\nmatch:\n  glob: abc\nsamples:\n  - file: ../../etc/passwd\n", wantErr: "relative to the pattern file", wantLine: 5},
		{name: "not a mapping", data: "- a\n- b\n", wantErr: "", wantLine: 1},
		{name: "empty", data: "", wantErr: "issue is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("ki/5494.yaml", []byte(tt.data))
			if tt.wantErr == "" && tt.wantLine == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if p.Action == "" || len(p.Files) == 0 || p.re == nil || len(p.lits) == 0 {
					t.Errorf("Parse = %+v: defaults not applied", p)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded; want an error %q", tt.wantErr)
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.File != "ki/5494.yaml" {
				t.Fatalf("error %v does not name the file", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || (tt.wantLine > 0 && ce.Line != tt.wantLine) {
				t.Errorf("error %q; want %q on line %d", err, tt.wantErr, tt.wantLine)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"ki/good.yaml":        {Data: []byte("issue: https://x.org/1\nmatch:\n  glob: 'oops *'\nsamples:\n  - file: samples/good.log\n")},
		"ki/samples/good.log": {Data: []byte("line\noops it broke\n")},
		"ki/bad.yml":          {Data: []byte("issue: https://x.org/2\nmatch:\n  glob: abc\nbogus: 1\n")},
		"ki/missing.yaml":     {Data: []byte("issue: https://x.org/3\nmatch:\n  glob: abc\nsamples:\n  - file: nope.log\n")},
		"ki/README.md":        {Data: []byte("not a pattern")},
	}
	set, errs := Load(fsys, "ki")
	if len(set.Patterns) != 1 || set.Patterns[0].Name != "ki/good.yaml" || set.Patterns[0].Samples[0].Text != "line\noops it broke\n" {
		t.Errorf("loaded %+v", set.Patterns)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := regexp.MustCompile(`^ki/bad.yml:4: unknown key "bogus"\nki/missing.yaml:5: .*nope.log`)
	if !want.MatchString(strings.Join(got, "\n")) {
		t.Errorf("errors:\n%s\nwant %s", strings.Join(got, "\n"), want)
	}
	if set, errs := Load(fsys, "none"); len(set.Patterns) != 0 || errs != nil {
		t.Errorf("missing dir: %v %v", set, errs)
	}
}

// FuzzParse: never panics; an error names the file, and its line is
// within the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte("issue: https://github.com/o/r/issues/1\nmatch:\n  glob: 'a * b'\nsamples: [a x b]\n"))
	f.Add([]byte("issue: https://x.org/5\nmatch:\n  regex: '(a|bcd)+x{2,5}'\nscope:\n  contexts: [debian-*]\nexpires: 2020-01-01\n"))
	f.Add([]byte("issue: x\nmatch: {glob: '', regex: ''}\nsamples:\n  - {file: a, text: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("p.yaml", data)
		if err == nil {
			if p.re == nil || len(p.lits) == 0 {
				t.Fatalf("parsed without a compiled matcher: %+v", p)
			}
			p.matchText([]byte(string(data)))
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.File != "p.yaml" {
			t.Fatalf("error %v does not name the file", err)
		}
		if lines := strings.Count(string(data), "\n") + 1; ce.Line < 0 || ce.Line > lines+1 {
			t.Fatalf("error %v names line %d of %d", err, ce.Line, lines)
		}
	})
}
