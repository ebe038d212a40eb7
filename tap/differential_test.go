package tap

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

// TestDifferentialWithTAPParser reads the same streams with turtles'
// parser and with Perl's TAP::Parser, the reader behind prove and the
// reference for what TAP means, and requires the same tests, names,
// outcomes and counts.
// The streams: testdata/*.tap (edge-cases.tap holds one stream per rule
// of point.go and stream.go), the fuzz corpus, and every file that looks
// like TAP under the shared testdata beside the repository, when there
// is one. testdata/tapparser.pl runs TAP::Parser and says how it cuts a
// log into streams.
//
// TAP::Parser's verdict on a test maps onto turtles' outcomes so:
//
//	TODO directive, within the plan  todo (TAP::Parser: passed, todo)
//	"not ok", or past the plan       failed (even with SKIP; TODO past the plan too)
//	SKIP directive                   skipped (TAP::Parser: passed, skipped)
//	anything else                    passed
//
// and its counts so: failed = turtles' failed; passed = passed + skipped
// + todo; skipped and todo count the failed tests with that directive too.
// A name is TAP::Parser's description as tapparser.pl shows it, "#N" when
// it is empty (or the name of a "# Subtest:" comment, for a test that
// closes a subtest), prefixed with prove's file; a subtest's name ends
// with " / " and its own. Where TAP::Parser gave up on a stream (a YAML
// block it cannot read) only what comes before is compared: turtles
// reads on. Other known differences, by design: turtles strips ANSI
// colours and a CR at the end of a line before reading, and takes a bare
// "ok" or "not ok" after prove's file header for prove's verdict on the
// file (tapparser.pl does the same).
func TestDifferentialWithTAPParser(t *testing.T) {
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Skip("no perl: this test compares with Perl's TAP::Parser (Debian: perl)")
	}
	if out, err := exec.Command(perl, "-MTAP::Parser", "-MTAP::Parser::Iterator::Array", "-e", "1").CombinedOutput(); err != nil {
		t.Skipf("Perl's TAP::Parser is missing (Debian: perl-modules): %v: %s", err, out)
	}
	for _, in := range differentialInputs(t) {
		t.Run(in.name, func(t *testing.T) { compareWithTAPParser(t, perl, in.name, in.data) })
	}
}

type tapInput struct {
	name string
	data []byte
}

var tapLikeRe = regexp.MustCompile(`(?m)^[ \t]*(?:(?:not )?ok\b|1\.\.[0-9]+|TAP version )`)

func differentialInputs(t *testing.T) []tapInput {
	var ins []tapInput
	files, _ := filepath.Glob("testdata/*.tap")
	if len(files) == 0 {
		t.Fatal("no testdata/*.tap")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, tapInput{filepath.Base(f), b})
	}
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzParse/*")
	for _, f := range corpus {
		s, err := readCorpusString(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ins = append(ins, tapInput{"fuzz/" + filepath.Base(f), []byte(s)})
	}
	// The shared testdata sits beside the repository (../shared from the
	// module root, the tap package's parent), or beside the folder of a
	// worktree (../../shared).
	for _, dir := range []string{"../../shared/testdata", "../../../shared/testdata"} {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if fi, err := d.Info(); err != nil || fi.Size() > 16<<20 {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil || !tapLikeRe.Match(b) {
				return nil
			}
			rel, _ := filepath.Rel(dir, path)
			ins = append(ins, tapInput{"shared/" + filepath.ToSlash(rel), b})
			return nil
		})
		break
	}
	return ins
}

// readCorpusString reads a fuzz corpus file of one string argument.
func readCorpusString(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(b), "\n")
	rest = strings.TrimSpace(rest)
	if !ok || !strings.HasPrefix(rest, "string(") || !strings.HasSuffix(rest, ")") {
		return "", fmt.Errorf("not a corpus file of one string")
	}
	return strconv.Unquote(rest[len("string(") : len(rest)-1])
}

// refTest is a test point as TAP::Parser reads it (tapparser.pl's
// "test" record).
type refTest struct {
	line, depth, number int
	ok                  bool
	directive           string
	unplanned           bool
	file, name, reason  string
	description         string
}

type refStream struct {
	depth, first, last                               int
	planned, run, passed, failed, skipped, todo, abt int
}

type reference struct {
	tests    []refTest
	streams  []refStream
	subtests map[string]bool
	bailed   bool
}

func runTAPParser(t *testing.T, perl, name string, data []byte) reference {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.tap")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(perl, "testdata/tapparser.pl", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tapparser.pl %s: %v\n%s", name, err, stderr.String())
	}
	ref := reference{subtests: map[string]bool{}}
	for _, rec := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
		if rec == "" {
			continue
		}
		f := strings.Split(rec, "\t")
		for i := range f {
			f[i] = unescapeField(f[i])
		}
		n := func(i int) int {
			v, err := strconv.Atoi(f[i])
			if err != nil {
				return atoi(f[i]) // too long for an int: as turtles reads it
			}
			return v
		}
		switch {
		case f[0] == "test" && len(f) == 11:
			ref.tests = append(ref.tests, refTest{line: n(1), depth: n(2), number: n(3), ok: f[4] == "ok", directive: f[5],
				unplanned: f[6] == "1", file: f[7], name: f[8], reason: f[9], description: f[10]})
		case f[0] == "stream" && len(f) == 12:
			ref.streams = append(ref.streams, refStream{depth: n(1), first: n(3), last: n(4), planned: n(5), run: n(6),
				passed: n(7), failed: n(8), skipped: n(9), todo: n(10), abt: n(11)})
		case f[0] == "subtest" && len(f) == 2:
			ref.subtests[f[1]] = true
		case f[0] == "bailout" && len(f) == 2:
			ref.bailed = true
		default:
			t.Fatalf("tapparser.pl: bad record %q", rec)
		}
	}
	return ref
}

func unescapeField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'n':
				b.WriteByte('\n')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// wantOutcome is TAP::Parser's verdict in turtles' terms (see
// TestDifferentialWithTAPParser).
func (r refTest) wantOutcome() turtles.TestOutcome {
	switch {
	case r.directive == "TODO" && !r.unplanned:
		return turtles.TestTodo
	case !r.ok || r.unplanned:
		return turtles.TestFailed
	case r.directive == "SKIP":
		return turtles.TestSkipped
	}
	return turtles.TestPassed
}

// compared is what the differential test compares of one test point.
type compared struct {
	Line, Depth, Number int
	Name                string
	Outcome             turtles.TestOutcome
	Reason              string
}

func compareWithTAPParser(t *testing.T, perl, name string, data []byte) {
	ref := runTAPParser(t, perl, name, data)

	p := NewParser()
	p.Write(data) // as the bot feeds it
	rep := p.Report()

	// The depth of a turtles result is the indentation of its line.
	lines := strings.Split(string(data), "\n")
	depthOf := func(n int) int {
		if n < 1 || n > len(lines) {
			return -1
		}
		l := ansiRe.ReplaceAllString(strings.TrimSuffix(lines[n-1], "\r"), "")
		return (len(l) - len(strings.TrimLeft(l, " "))) / 4
	}
	// Where TAP::Parser gave up on a stream, turtles' results in the rest
	// of it, subtests included, are not compared.
	abandoned := func(line, depth int) bool {
		for _, s := range ref.streams {
			if s.abt > 0 && s.depth <= depth && s.abt <= line && line <= s.last {
				return true
			}
		}
		return false
	}
	aborted := false
	for _, s := range ref.streams {
		aborted = aborted || s.abt > 0
	}

	var got []compared
	byLine := map[int]Test{}
	for _, x := range rep.Tests {
		d := depthOf(x.Line)
		if abandoned(x.Line, d) {
			continue
		}
		byLine[x.Line] = x
		c := compared{Line: x.Line, Depth: d, Number: x.Number, Name: x.Name, Outcome: x.Outcome}
		if x.Outcome == turtles.TestSkipped || x.Outcome == turtles.TestTodo {
			c.Reason = x.Reason
		}
		got = append(got, c)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Line < got[j].Line })

	var want []compared
	var counts, gotCounts refStream
	for _, r := range ref.tests {
		if abandoned(r.line, r.depth) {
			continue // a subtest after the place TAP::Parser gave up
		}
		c := compared{Line: r.line, Depth: r.depth, Number: r.number, Outcome: r.wantOutcome()}
		if c.Outcome == turtles.TestSkipped || c.Outcome == turtles.TestTodo {
			c.Reason = r.reason
		}
		c.Name = r.wantName(byLine[r.line].Name, ref.subtests)
		want = append(want, c)
		if r.depth != 0 {
			continue
		}
		if x, ok := byLine[r.line]; ok {
			switch x.Outcome {
			case turtles.TestFailed:
				gotCounts.failed++
				if r.directive == "SKIP" {
					gotCounts.skipped++
				}
				if r.directive == "TODO" {
					gotCounts.todo++
				}
			case turtles.TestSkipped:
				gotCounts.passed++
				gotCounts.skipped++
			case turtles.TestTodo:
				gotCounts.passed++
				gotCounts.todo++
			default:
				gotCounts.passed++
			}
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Line < want[j].Line })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tests (-TAP::Parser +turtles):\n%s", diff)
	}

	planned, failures := 0, 0
	for _, s := range ref.streams {
		failures += s.failed
		if s.depth != 0 {
			continue
		}
		counts.passed += s.passed
		counts.failed += s.failed
		counts.skipped += s.skipped
		counts.todo += s.todo
		if s.planned > 0 {
			planned += s.planned
			if planned < 0 {
				planned = int(^uint(0) >> 1) // as turtles adds absurd plans
			}
		}
	}
	type tally struct{ Passed, Failed, Skipped, Todo int }
	if diff := cmp.Diff(tally{counts.passed, counts.failed, counts.skipped, counts.todo},
		tally{gotCounts.passed, gotCounts.failed, gotCounts.skipped, gotCounts.todo}); diff != "" {
		t.Errorf("top-level counts (-TAP::Parser +turtles):\n%s", diff)
	}
	if aborted {
		return // turtles read on where TAP::Parser stopped
	}
	if rep.Planned != planned {
		t.Errorf("planned %d, TAP::Parser %d", rep.Planned, planned)
	}
	if rep.Failures != failures {
		t.Errorf("failures %d, TAP::Parser %d (all levels)", rep.Failures, failures)
	}
	if rep.Bailed != ref.bailed {
		t.Errorf("bailed out %v, TAP::Parser %v", rep.Bailed, ref.bailed)
	}
}

// wantName is the name turtles must give r: got when it is one of the
// names r may have (see TestDifferentialWithTAPParser), else the plainest of them.
func (r refTest) wantName(got string, subtests map[string]bool) string {
	leaves := []string{r.name}
	if r.name == "" {
		leaves = []string{"#" + strconv.Itoa(r.number)}
		for s := range subtests {
			leaves = append(leaves, s)
		}
	}
	prefix := ""
	if r.file != "" {
		prefix = r.file + " / "
	}
	for _, leaf := range leaves {
		if r.depth == 0 && got == prefix+leaf ||
			r.depth > 0 && strings.HasPrefix(got, prefix) && strings.HasSuffix(got, " / "+leaf) {
			return got
		}
	}
	if r.depth > 0 {
		return prefix + "... / " + leaves[0]
	}
	return prefix + leaves[0]
}
