package tap

import "strings"

// YAML diagnostics blocks ("  ---" ... "  ..."), read as TAP::Parser
// reads them where it matters for the results, and kept on the test point
// they follow for the diagnostics:
//   - In a TAP 13 stream (a "TAP version 13" line or later began it),
//     TAP::Parser reads a block wherever a line indented by one to three
//     spaces more than its stream starts with "---", and its lines are
//     YAML, not TAP, up to the "..." line. So are they for turtles.
//   - In a TAP 12 stream TAP::Parser reads no YAML: every line is TAP or
//     not, as anywhere else. turtles still keeps the block that follows a
//     test point (indented by two) as its diagnostics, but reads its lines
//     as TAP too.
// A block ends at its "..." or at the first line not indented as it is;
// TAP::Parser gives up on a stream at such a block, turtles reads on.

// yamlBlock is a diagnostics block being read.
type yamlBlock struct {
	depth   int    // the level of the stream it is in
	indent  string // of its "---" line
	consume bool   // its lines are YAML only (TAP 13)
	test    *Test  // where it goes; nil for none
	lines   []string
}

// lastPoint is the last test point read, until a plan, a version line or
// another test point: a YAML block that comes before those is its.
type lastPoint struct {
	depth int
	test  *Test
}

// yamlStart begins a block at line, if it is the "---" that starts one,
// and says whether the line is consumed.
func (p *Parser) yamlStart(line string, indent int) bool {
	d, r := indent/4, indent%4
	if r == 0 || strings.TrimRight(line[indent:], " ") != "---" || d >= len(p.levels) && d > 0 {
		return false
	}
	y := &yamlBlock{depth: d, indent: line[:indent], lines: []string{}}
	y.consume = p.level(d).stream.version >= 13
	if p.last != nil && p.last.depth == d {
		y.test = p.last.test
	}
	switch {
	case y.consume:
	case y.test != nil && r == 2:
		// TAP 12: the diagnostics of the test point before; not YAML for
		// TAP::Parser, so its lines are TAP too.
	default:
		return false
	}
	p.last = nil
	p.yaml = y
	return y.consume
}

// yamlLine reads a line inside a block and says whether the block
// consumed it (it is YAML only); a line that ends the block unterminated
// is not consumed.
func (p *Parser) yamlLine(line string, indent int) bool {
	y := p.yaml
	if strings.TrimRight(line, " ") == y.indent+"..." {
		p.finishYAML()
		return y.consume
	}
	if !strings.HasPrefix(line, y.indent) && indent != len(line) {
		p.finishYAML() // unterminated: keep what it had
		return false
	}
	if len(y.lines) < 1000 {
		y.lines = append(y.lines, strings.TrimPrefix(line, y.indent))
	}
	if y.consume && indent != len(line) {
		p.endRuns(y.depth) // YAML, not a subtest's line
	}
	return y.consume
}

func (p *Parser) finishYAML() {
	y := p.yaml
	p.yaml = nil
	if y.test == nil {
		return
	}
	y.test.Diagnostics = strings.Join(y.lines, "\n")
	if y.test.Duration == 0 {
		if m := durYAMLRe.FindStringSubmatch(y.test.Diagnostics); m != nil {
			y.test.Duration = parseDuration(m[1], "ms")
		}
	}
}
