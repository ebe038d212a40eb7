// Package tap parses the Test Anything Protocol (versions 12, 13 and 14)
// out of a task's log, into one result per test. It reads the log as it
// is, with other output mixed in: lines that are not TAP are skipped.
// The bot imports it to fill result.json; it imports only the standard
// library.
//
// What a line means is what Perl's TAP::Parser (the reader behind prove)
// says it means: test points, directives, plans, "TAP version", "Bail
// out!". differential_test.go runs TAP::Parser on the same streams and
// requires the same names, outcomes and counts. On top of that turtles
// reads what a whole log holds: several streams one after another (see
// stream.go), the file headers of Perl's prove -v ("t/a.t .."), subtests
// both as indented TAP 14 streams (with or without a "# Subtest: name"
// comment) and in the older form where the "# Subtest:" comment sits at
// the parent's level, YAML diagnostics after a test point, node-tap's
// "# time=12ms" and "duration_ms", and ANSI colours around any of it.
package tap

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// Test is one test point.
type Test struct {
	// Name is the description, prefixed with its file (from prove) and
	// enclosing subtests, joined with " / "; "#N" when it has none.
	Name    string              `json:"name"`
	Outcome turtles.TestOutcome `json:"outcome"`
	// Number is the test's number as written, or as TAP::Parser implies
	// it from the test's place in its stream when the line has none.
	Number int `json:"number,omitempty"`
	// Line is the 1-based line of the test point in the input.
	Line int `json:"line"`
	// Reason is the text of a SKIP or TODO directive, or why a test point
	// that says "ok" failed (it ran past its stream's plan).
	Reason string `json:"reason,omitempty"`
	// Duration is from "# time=" or the diagnostics' duration_ms; zero
	// when unknown.
	Duration time.Duration `json:"duration,omitempty"`
	// Diagnostics is the raw YAML block that followed the test point.
	Diagnostics string `json:"diagnostics,omitempty"`
}

// Report is what a whole input holds.
type Report struct {
	// Version is 12 unless a "TAP version N" line said otherwise.
	Version int
	Tests   []Test
	// BailOut is the reason given with "Bail out!", if one was seen.
	BailOut  string
	Bailed   bool
	Planned  int // from the top-level plan(s), summed over streams
	Lines    int
	Failures int
}

var (
	subtestRe = regexp.MustCompile(`^#\s*Subtest(?::\s*(.*))?$`)
	proveRe   = regexp.MustCompile(`^(\S+\.\S+) \.{2,}\s*(?:$|ok$|skipped|\d)`)
	ansiRe    = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]`)
	durYAMLRe = regexp.MustCompile(`(?m)^\s*duration_ms:\s*([0-9.]+)\s*$`)
)

// maybeTAP is a cheap first look, so that the regular expressions run only
// on lines that could be TAP: a log of a million lines of other output
// must cost little.
func maybeTAP(body string) bool {
	switch body[0] {
	case 'o', 'n', 'T', 't', '#', '1':
		return true
	}
	return strings.Contains(body, " ..") // prove's file headers
}

// level is one nesting level of TAP streams.
type level struct {
	name     string // from a "# Subtest: name" comment at this level
	children []Test // results of the current subtest, waiting for its name
	stream   stream
}

// Parser reads TAP a line at a time, so that results are known while a
// task runs. The zero value is not ready; use NewParser.
type Parser struct {
	rep     Report
	levels  []level // levels[d] holds what sits at indentation d
	file    string  // prove's current test file
	yaml    *yamlBlock
	last    *lastPoint // the last test point, for a YAML block after it
	partial []byte     // an unfinished line, from Write
}

// NewParser returns a parser for one input.
func NewParser() *Parser { return &Parser{rep: Report{Version: 12}} }

// Parse reads all of r, as Write would take it.
func Parse(r io.Reader) (*Report, error) {
	p := NewParser()
	_, err := io.Copy(p, r)
	return p.Report(), err
}

// Write feeds raw output, split into lines; a final line without a
// newline waits for the next Write or Report.
func (p *Parser) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(p.partial) < 1<<20 {
				p.partial = append(p.partial, b...)
			}
			break
		}
		line := b[:i]
		if len(p.partial) > 0 {
			line = append(p.partial, line...)
			p.partial = nil
		}
		p.Line(string(line))
		b = b[i+1:]
	}
	return n, nil
}

// Line feeds one line, without its newline.
func (p *Parser) Line(line string) {
	p.rep.Lines++
	line = strings.TrimSuffix(line, "\r")
	if strings.Contains(line, "\x1b") {
		line = ansiRe.ReplaceAllString(line, "") // coloured reporters
	}
	indent := len(line) - len(strings.TrimLeft(line, " "))
	if indent < len(line) {
		p.endRuns(indent / 4)
	}
	if p.yaml != nil && p.yamlLine(line, indent) {
		return
	}
	if p.yamlStart(line, indent) {
		return
	}
	// TAP::Parser takes "Bail out!" after any white space, at any depth.
	if rest, ok := strings.CutPrefix(strings.TrimLeft(line, space), "Bail out!"); ok {
		p.rep.Bailed = true
		p.rep.BailOut = strings.Trim(rest, space)
		return
	}
	body := line[indent:]
	// TAP indents subtests by four; anything else is not TAP.
	if body == "" || indent%4 != 0 || !maybeTAP(body) {
		return
	}
	depth := indent / 4
	if depth == 0 && strings.Contains(body, " ..") {
		if m := proveRe.FindStringSubmatch(body); m != nil && !pointRe.MatchString(body) {
			p.endFile()
			p.file = m[1]
			return
		}
	}
	lv := p.level(depth)
	s := &lv.stream
	switch body[0] {
	case 'T', 't', '1', '#', 'o', 'n':
	default:
		return
	}
	if m := versionOf(body); m != nil {
		p.last = nil
		if s.started {
			*s = newStream()
		}
		v := atoi(m[1])
		s.version, s.started = grammarVersion(v), true
		if depth == 0 {
			p.rep.Version = v
		}
		return
	}
	if n, todo, ok := parsePlan(body, s.version); ok {
		if s.hasPlan {
			// A second plan begins a stream, read afresh as TAP 12.
			*s = newStream()
			if n, todo, ok = parsePlan(body, s.version); !ok {
				return
			}
		}
		s.started, s.hasPlan, s.planned, s.trailing, s.todo = true, true, n, s.run > 0, todo
		p.last = nil
		if depth == 0 {
			if maxInt := int(^uint(0) >> 1); n > maxInt-p.rep.Planned {
				p.rep.Planned = maxInt // n may be absurd
			} else {
				p.rep.Planned += n
			}
		}
		return
	}
	if body[0] != '#' && body[0] != 'o' && body[0] != 'n' {
		return
	}
	if m := subtestOf(body); m != nil {
		// Perl puts "# Subtest: name" inside the child stream, TAP 14 and
		// node-tap at the parent's level, before it. Record it where it
		// sits; the test point that closes the subtest looks at both.
		lv.name = strings.TrimSpace(m[1])
		return
	}
	if pt, ok := parsePoint(body); ok {
		if p.file != "" && depth == 0 && (body == "ok" || body == "not ok") {
			p.endFile() // prove's verdict on the file, not a test point
			p.file = ""
			return
		}
		p.testPoint(depth, pt)
	}
}

// endRuns ends the streams of the subtests deeper than depth d: a line
// that is not blank and indented less than a subtest's four spaces a
// level ends its run of lines, and what follows is a new stream (its
// results still wait for their parent test point).
func (p *Parser) endRuns(d int) {
	for k := d + 1; k < len(p.levels); k++ {
		p.levels[k].stream = newStream()
	}
}

// versionOf and subtestOf match their expressions where they could.
func versionOf(body string) []string {
	if len(body) < 3 || !strings.EqualFold(body[:3], "TAP") {
		return nil
	}
	return versionRe.FindStringSubmatch(body)
}

func subtestOf(body string) []string {
	if body[0] != '#' {
		return nil
	}
	return subtestRe.FindStringSubmatch(body)
}

func (p *Parser) level(d int) *level {
	for len(p.levels) <= d {
		p.levels = append(p.levels, level{stream: newStream()})
	}
	return &p.levels[d]
}

func (p *Parser) testPoint(depth int, pt point) {
	s := &p.level(depth).stream
	if s.startsNew(pt) {
		*s = newStream()
	}
	s.started = true
	s.run++
	t := Test{Number: pt.number, Line: p.rep.Lines}
	if !pt.hasNum {
		t.Number = s.run
	}
	directive := pt.directive
	if pt.hasNum && s.takeTodo(pt.number) {
		directive = "TODO"
	}
	desc, explanation := pt.desc, pt.explanation
	var v, unit string
	if pt.directive == "" {
		desc, v, unit = cutTime(desc)
	} else {
		explanation, v, unit = cutTime(explanation)
	}
	if v != "" {
		t.Duration = parseDuration(v, unit)
	}
	// TAP::Parser's verdict: a TODO test never fails, unless it is past
	// the plan; a "not ok" fails even with # SKIP.
	unplanned := s.hasPlan && s.run > s.planned
	switch {
	case directive == "TODO" && !unplanned:
		t.Outcome = turtles.TestTodo
	case !pt.ok || unplanned:
		t.Outcome = turtles.TestFailed
	case directive == "SKIP":
		t.Outcome = turtles.TestSkipped
	default:
		t.Outcome = turtles.TestPassed
	}
	if unplanned {
		t.Reason = fmt.Sprintf("test %d ran past the plan of %d", s.run, s.planned)
	} else if directive != "" {
		t.Reason = reasonText(explanation)
	}
	t.Name = displayName(desc)
	unnamed := t.Name == ""
	if unnamed {
		t.Name = "#" + strconv.Itoa(t.Number)
	}

	// Children at depth+1 belong to this test point: name them.
	var children []Test
	closes := len(p.levels) > depth+1
	if closes {
		// Deeper results whose own parent never came are this one's too.
		for k := len(p.levels) - 1; k > depth+1; k-- {
			for _, c := range p.levels[k].children {
				c.Name = p.orphanName(k) + " / " + c.Name
				p.levels[k-1].children = append(p.levels[k-1].children, c)
			}
		}
		child := &p.levels[depth+1]
		if unnamed {
			switch {
			case child.name != "":
				t.Name = child.name
			case p.levels[depth].name != "":
				t.Name = p.levels[depth].name
			}
		}
		prefix := t.Name
		for _, c := range child.children {
			c.Name = prefix + " / " + c.Name
			children = append(children, c)
		}
		p.levels = p.levels[:depth+1]
	}
	lv := p.level(depth)
	if closes {
		lv.name = "" // a "# Subtest:" at this level named what just closed
	}
	lv.children = append(lv.children, children...)
	lv.children = append(lv.children, t)
	if depth == 0 {
		p.emit(lv.children)
		lv.children = nil
	}
	p.last = &lastPoint{depth: depth}
	if depth == 0 {
		p.last.test = &p.rep.Tests[len(p.rep.Tests)-1]
	} else {
		p.last.test = &lv.children[len(lv.children)-1]
	}
}

func (p *Parser) emit(ts []Test) {
	for _, t := range ts {
		if p.file != "" {
			t.Name = p.file + " / " + t.Name
		}
		if t.Outcome == turtles.TestFailed {
			p.rep.Failures++
		}
		p.rep.Tests = append(p.rep.Tests, t)
	}
}

func parseDuration(v, unit string) time.Duration {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e12 {
		return 0
	}
	if unit == "s" {
		f *= 1000
	}
	return time.Duration(f * float64(time.Millisecond))
}

// orphans are the results of subtests that no parent test point closed
// (a stream cut short), named after their "# Subtest" comments.
func (p *Parser) orphans() []Test {
	var out []Test
	for d := len(p.levels) - 1; d >= 1; d-- {
		for _, c := range p.levels[d].children {
			c.Name = p.orphanName(d) + " / " + c.Name
			if p.file != "" {
				c.Name = p.file + " / " + c.Name
			}
			out = append(out, c)
		}
	}
	return out
}

// orphanName names the results at level d whose parent test point never
// came: after a "# Subtest" comment inside or before them, if any.
func (p *Parser) orphanName(d int) string {
	switch {
	case p.levels[d].name != "":
		return p.levels[d].name
	case p.levels[d-1].name != "":
		return p.levels[d-1].name
	}
	return "(unfinished subtest)"
}

// endFile ends prove's current file: what its subtests left unclosed is
// reported now, under its name.
func (p *Parser) endFile() {
	p.yaml, p.last = nil, nil
	for _, c := range p.orphans() {
		if c.Outcome == turtles.TestFailed {
			p.rep.Failures++
		}
		p.rep.Tests = append(p.rep.Tests, c)
	}
	p.levels = p.levels[:0]
}

// Report returns the results so far. Subtests not closed by a parent test
// point (a stream cut short) are reported under their "# Subtest" names.
func (p *Parser) Report() *Report {
	if len(p.partial) > 0 {
		line := string(p.partial)
		p.partial = nil
		p.Line(line)
	}
	if p.yaml != nil && p.yaml.lines != nil {
		p.finishYAML()
	}
	rep := p.rep
	rep.Tests = append([]Test(nil), p.rep.Tests...)
	for _, c := range p.orphans() {
		if c.Outcome == turtles.TestFailed {
			rep.Failures++
		}
		rep.Tests = append(rep.Tests, c)
	}
	return &rep
}
