package triage

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// compileGlob turns a glob into a regex over normalized text. A glob
// is one or more lines, matched against as many consecutive lines of the
// text, as Cockpit's naughty files are: the first line may start and the
// last may end anywhere in a line, lines between match whole lines. '*'
// matches any run of characters within a line, '?' one character, a
// backslash makes the next character literal; a run of blanks matches any
// run of blanks, and indentation is ignored. The glob's text is normalized
// like the text it matches, so a line pasted from a log matches the same
// line from another run.
func (p *Pattern) compileGlob() error {
	if len(p.Source) > MaxGlobLen {
		return fmt.Errorf("glob is longer than %d bytes", MaxGlobLen)
	}
	var lines []string
	for _, l := range strings.Split(p.Source, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("glob is empty")
	}
	if len(lines) > MaxLines {
		return fmt.Errorf("glob has %d lines; at most %d", len(lines), MaxLines)
	}
	var re strings.Builder
	for i, l := range lines {
		if i > 0 {
			re.WriteString(`[ \t\r]*\n[ \t]*`)
		}
		re.WriteString(globLine(l))
	}
	p.lines = len(lines)
	return p.compile(re.String())
}

// globLine is the regex of one line of a glob.
func globLine(l string) string {
	norm, _ := Normalize([]byte(l))
	var re strings.Builder
	lit := func(s string) { re.WriteString(regexp.QuoteMeta(s)) }
	for i := 0; i < len(norm); i++ {
		switch c := norm[i]; c {
		case '*':
			re.WriteString(`[^\n]*`)
		case '?':
			re.WriteString(`[^\n]`)
		case ' ', '\t':
			for i+1 < len(norm) && (norm[i+1] == ' ' || norm[i+1] == '\t') {
				i++
			}
			re.WriteString(`[ \t]+`)
		case '\\':
			if i+1 < len(norm) {
				i++
			}
			lit(string(norm[i]))
		default:
			lit(string(c))
		}
	}
	return re.String()
}

// compileRegex compiles a regex written against normalized text. Go's
// regexp runs in time linear in the text (RE2), so no regex can run
// away; the limits keep its program small and its search fast.
func (p *Pattern) compileRegex() error {
	if len(p.Source) > MaxRegexLen {
		return fmt.Errorf("regex is longer than %d bytes", MaxRegexLen)
	}
	p.lines = MaxLines
	return p.compile(p.Source)
}

func (p *Pattern) compile(expr string) error {
	what := "regex"
	if p.IsGlob {
		what = "glob"
	}
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return fmt.Errorf("%s does not compile: %v", what, err)
	}
	tree = tree.Simplify()
	prog, err := syntax.Compile(tree)
	if err != nil {
		return fmt.Errorf("%s does not compile: %v", what, err)
	}
	if len(prog.Inst) > MaxRegexInsts {
		return fmt.Errorf("%s is too large: %d instructions, at most %d", what, len(prog.Inst), MaxRegexInsts)
	}
	lits := literals(tree)
	if lits == nil {
		return fmt.Errorf("%s has no text of at least %d characters that every match contains (outside optional parts and case-insensitive text); matching it would run the regex engine over every byte of every log", what, MinLiteral)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return fmt.Errorf("%s does not compile: %v", what, err)
	}
	p.re, p.lits = re, lits
	return nil
}

// maxLits bounds the alternatives a prefilter looks for.
const maxLits = 8

// literals returns texts of which every match of re contains at least
// one, each at least MinLiteral bytes long, or nil if it finds none.
func literals(re *syntax.Regexp) [][]byte {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil
		}
		s := []byte(string(re.Rune))
		if len(s) < MinLiteral {
			return nil
		}
		return [][]byte{s}
	case syntax.OpCapture:
		return literals(re.Sub[0])
	case syntax.OpPlus:
		return literals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literals(re.Sub[0])
		}
	case syntax.OpConcat:
		var best [][]byte
		for _, sub := range re.Sub {
			if l := literals(sub); l != nil && (best == nil || shortest(l) > shortest(best)) {
				best = l
			}
		}
		return best
	case syntax.OpAlternate:
		var all [][]byte
		for _, sub := range re.Sub {
			l := literals(sub)
			if l == nil {
				return nil
			}
			all = append(all, l...)
		}
		if len(all) > maxLits {
			return nil
		}
		return all
	}
	return nil
}

func shortest(l [][]byte) int {
	n := -1
	for _, s := range l {
		if n < 0 || len(s) < n {
			n = len(s)
		}
	}
	return n
}

// matchText reports the first match of p in normalized text, as offsets,
// or -1. It is what Match does in each block, without the streaming.
func (p *Pattern) matchText(norm []byte) (int, int) {
	from := 0
	for from < len(norm) {
		at := -1
		for _, l := range p.lits {
			if i := bytes.Index(norm[from:], l); i >= 0 && (at < 0 || from+i < at) {
				at = from + i
			}
		}
		if at < 0 {
			return -1, -1
		}
		ws, we := lineWindow(norm, at, p.lines)
		if loc := p.re.FindIndex(norm[ws:we]); loc != nil {
			return ws + loc[0], ws + loc[1]
		}
		from = lineEnd(norm, at)
	}
	return -1, -1
}

// lineWindow returns the lines around offset at that a match of up to
// lines lines containing at can span.
func lineWindow(b []byte, at, lines int) (int, int) {
	s := bytes.LastIndexByte(b[:at], '\n') + 1
	for k := 1; k < lines && s > 0; k++ {
		s = bytes.LastIndexByte(b[:s-1], '\n') + 1
	}
	e := at
	for k := 0; k < lines && e < len(b); k++ {
		e = lineEnd(b, e)
	}
	return s, e
}

// lineEnd returns the offset after the newline ending the line of at, or
// len(b).
func lineEnd(b []byte, at int) int {
	if i := bytes.IndexByte(b[at:], '\n'); i >= 0 {
		return at + i + 1
	}
	return len(b)
}
