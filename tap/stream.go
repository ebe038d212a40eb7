package tap

import (
	"regexp"
	"strconv"
	"strings"
)

// A log can hold several TAP streams one after another: prove's files,
// or test programs a make target runs in turn, each with its own plan.
// TAP::Parser reads one stream; turtles reads the whole log, so it must
// see where one stream ends and the next begins, and then judge each
// stream as TAP::Parser would. A new stream begins, at any level of
// nesting, with
//   - a prove header ("t/a.t ..") at the top level;
//   - a "TAP version" line, once the stream has had a plan, a test or a
//     version line;
//   - a plan, when the stream already has one;
//   - a test point numbered 1 or not numbered, once the stream is
//     complete: its plan came after its tests, or it has run as many
//     tests as its plan said.
// and a subtest's stream ends with its run of lines: at a line, not
// blank, indented less than the subtest (see Parser.endRuns).
// Anything else is read as TAP::Parser reads it, so a test point past
// the plan ("ok 4" after "1..3", or after a trailing "1..3") fails, as
// prove says it does.

// stream is the state TAP::Parser keeps for one stream.
type stream struct {
	version  int  // the grammar: 12 or 13
	started  bool // a plan, a test point or a version line was read
	hasPlan  bool
	planned  int
	trailing bool // the plan came after tests
	run      int  // test points so far
	// todo is the test numbers that an old "1..N todo 3 4" plan marks as
	// TODO; each applies once.
	todo []int
}

func newStream() stream { return stream{version: 12} }

func (s *stream) complete() bool { return s.hasPlan && (s.trailing || s.run >= s.planned) }

// startsNew says whether test point pt begins a new stream.
func (s *stream) startsNew(pt point) bool {
	return s.complete() && (!pt.hasNum || pt.number == 1)
}

// takeTodo reports whether the plan marked test n as TODO, and forgets it.
func (s *stream) takeTodo(n int) bool {
	for i, x := range s.todo {
		if x == n {
			s.todo = append(s.todo[:i], s.todo[i+1:]...)
			return true
		}
	}
	return false
}

var (
	versionRe = regexp.MustCompile(`(?i)^TAP[ \t\n\v\f\r]+version[ \t\n\v\f\r]+([0-9]+)[ \t\n\v\f\r]*$`)
	// plan12Re and plan13Re are TAP::Parser's plans for TAP 12 (no
	// version line) and 13 (and later, which it reads as 13).
	plan12Re = regexp.MustCompile(`^1\.\.([0-9]+)[ \t\n\v\f\r]*(.*)$`)
	plan13Re = regexp.MustCompile(`(?i)^1\.\.([0-9]+)[ \t\n\v\f\r]*(?:[ \t\n\v\f\r]*#[ \t\n\v\f\r]*SKIP\b.*)?$`)
	todo12Re = regexp.MustCompile(`^todo((?:[ \t\n\v\f\r]+[0-9]+)+)`)
)

// grammarVersion is the grammar TAP::Parser uses after "TAP version v".
func grammarVersion(v int) int {
	return min(max(v, 12), 13)
}

// parsePlan reads a plan line in the given grammar version. In TAP 12 a
// plan of 0 may be followed by anything (it skips the whole stream), and
// "1..N todo 2 3" marks tests as TODO; any other text after the plan
// makes the line no plan. In TAP 13 only "# SKIP ..." may follow.
func parsePlan(body string, version int) (n int, todo []int, ok bool) {
	if body == "" || body[0] != '1' {
		return 0, nil, false
	}
	if version >= 13 {
		m := plan13Re.FindStringSubmatch(body)
		if m == nil {
			return 0, nil, false
		}
		return atoi(m[1]), nil, true
	}
	m := plan12Re.FindStringSubmatch(body)
	if m == nil {
		return 0, nil, false
	}
	n, tail := atoi(m[1]), m[2]
	if t := todo12Re.FindStringSubmatch(tail); t != nil {
		for _, f := range strings.Fields(t[1]) {
			todo = append(todo, atoi(f))
		}
		return n, todo, true
	}
	if n != 0 && strings.Trim(tail, space) != "" {
		return 0, nil, false
	}
	return n, nil, true
}

// atoi reads a run of digits; one too long for an int is as good as
// infinite.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return int(^uint(0) >> 1)
	}
	return n
}
