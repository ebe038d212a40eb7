package tap

import (
	"regexp"
	"strings"
)

// The rules of this file are Perl's TAP::Parser's (TAP::Parser::Grammar,
// version 3.44), the reader behind prove; differential_test.go holds
// turtles to them.

// space is what Perl's \s matches in bytes that were not decoded, which
// is how TAP::Parser reads a stream: ASCII white space only.
const space = " \t\n\v\f\r"

// pointRe is TAP::Parser's test line: "ok" or "not ok" at the start of
// the line, an optional number, and the rest.
var pointRe = regexp.MustCompile(`^(not )?ok\b[ \t\n\v\f\r]*([0-9]+)?[ \t\n\v\f\r]*(.*)$`)

// point is one test line as TAP::Parser reads it.
type point struct {
	ok     bool
	number int  // 0 unless numbered
	hasNum bool // a number was given
	// desc is the description as written: escapes kept, "- " kept.
	desc string
	// directive is "SKIP", "TODO" or "".
	directive   string
	explanation string
}

func parsePoint(body string) (point, bool) {
	m := pointRe.FindStringSubmatch(body)
	if m == nil {
		return point{}, false
	}
	pt := point{ok: m[1] == ""}
	if m[2] != "" {
		pt.hasNum = true
		pt.number = atoi(m[2])
	}
	pt.desc, pt.directive, pt.explanation = splitDirective(m[3])
	pt.desc = strings.Trim(pt.desc, space)
	pt.explanation = strings.Trim(pt.explanation, space)
	return pt, true
}

// splitDirective finds a SKIP or TODO directive the way TAP::Parser
// does: only the first unescaped '#' can start one, and only when white
// space and the word SKIP or TODO (any case, as a whole word) follow it.
// Any other '#' belongs to the description, and so does everything after
// it: in "x (see #1) # SKIP y" the first '#' is not a directive, so there
// is none. A backslash escapes the character after it.
func splitDirective(s string) (desc, directive, explanation string) {
	i := firstHash(s)
	if i < 0 {
		return s, "", ""
	}
	rest := strings.TrimLeft(s[i+1:], space)
	if len(rest) < 4 {
		return s, "", ""
	}
	var word string
	switch {
	case equalFoldASCII(rest[:4], "SKIP"):
		word = "SKIP"
	case equalFoldASCII(rest[:4], "TODO"):
		word = "TODO"
	}
	if word == "" || len(rest) > 4 && isWord(rest[4]) {
		return s, "", ""
	}
	return s[:i], word, strings.TrimLeft(rest[4:], space)
}

// firstHash is the index of the first '#' not escaped by a backslash, or
// -1.
func firstHash(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '#':
			return i
		}
	}
	return -1
}

// equalFoldASCII compares as Perl's /i does bytes that were not decoded:
// only ASCII letters have a case.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isWord is Perl's \w on a byte that was not decoded.
func isWord(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// timeRe is node-tap's duration at the end of a description or of a
// directive's reason: "ok 1 - name # time=12.5ms". For TAP::Parser it is
// part of the text; turtles takes it out of the name, which must be the
// same from run to run.
var timeRe = regexp.MustCompile(`(?:^|[ \t\n\v\f\r])#[ \t\n\v\f\r]*time=[ \t\n\v\f\r]*([0-9.]+)[ \t\n\v\f\r]*(ms|s)[ \t\n\v\f\r]*$`)

// cutTime removes a trailing "# time=..." from s and returns the rest and
// the duration it gave, or "" if none.
func cutTime(s string) (rest, v, unit string) {
	m := timeRe.FindStringSubmatchIndex(s)
	if m == nil {
		return s, "", ""
	}
	return strings.TrimRight(s[:m[0]], space), s[m[2]:m[3]], s[m[4]:m[5]]
}

// displayName turns TAP::Parser's description into the name turtles
// shows: without a leading "- " (the separator Test::More writes after
// the number) and with "\#" and "\\" unescaped.
func displayName(desc string) string {
	if strings.HasPrefix(desc, "-") && (len(desc) == 1 || strings.IndexByte(space, desc[1]) >= 0) {
		desc = strings.TrimLeft(desc[1:], space)
	}
	if !strings.Contains(desc, `\`) {
		return desc
	}
	var b strings.Builder
	for i := 0; i < len(desc); i++ {
		if desc[i] == '\\' && i+1 < len(desc) && (desc[i+1] == '#' || desc[i+1] == '\\') {
			i++
		}
		b.WriteByte(desc[i])
	}
	return b.String()
}

// reasonText is a directive's explanation as turtles shows it: without
// the colon of "# SKIP: why".
func reasonText(explanation string) string {
	return strings.Trim(strings.TrimPrefix(explanation, ":"), space)
}
