package triage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Input is what a failed attempt gives to match against.
type Input struct {
	Context string
	Image   string
	// Tests are the names of the tests that failed, for patterns scoped
	// to tests.
	Tests []string
	// Files are the files to search by name: "log" for the log,
	// "artifacts/journal.txt" for an artifact. Each is read once, to its
	// end or to the last pattern's match.
	Files map[string]io.Reader
	// Now decides which patterns expired; zero means time.Now().
	Now time.Time
}

// Match searches in's files for the patterns of s that apply to it (by
// scope, and not expired) and returns the first match of each pattern in
// each file it searches, in the order of the files' names and then of
// the patterns. An error reading a file ends the search and is returned
// with the matches found until then.
func (s *Set) Match(ctx context.Context, in Input) ([]Match, error) {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	var pats []*Pattern
	for _, p := range s.Patterns {
		if !p.Expired(now) && p.applies(in) {
			pats = append(pats, p)
		}
	}
	var out []Match
	for _, name := range slices.Sorted(maps.Keys(in.Files)) {
		var these []*Pattern
		for _, p := range pats {
			if p.searches(name) {
				these = append(these, p)
			}
		}
		if len(these) == 0 || in.Files[name] == nil {
			continue
		}
		ms, err := Scan(ctx, in.Files[name], name, these)
		out = append(out, ms...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Block sizes of Scan: it reads blockSize bytes at a time, and keeps up
// to maxTail bytes of the lines before, for matches across blocks.
const (
	blockSize = 1 << 20
	maxTail   = 64 << 10
)

// Scan reads r, the file name, through pats and returns the first match
// of each, in the order of pats. It holds about 2 MiB of r at a time
// (blockSize, normalized): a line longer than that is cut, and a match
// must fit in maxTail bytes before the block it ends in.
func Scan(ctx context.Context, r io.Reader, name string, pats []*Pattern) ([]Match, error) {
	found := make([]*Match, len(pats))
	left := len(pats)
	buf := make([]byte, 0, blockSize+maxTail)
	var norm []byte
	var m Map
	var base int64 // offset in r of buf[0]
	line := 1      // line number of buf[0]
	tail := 0      // bytes of buf already searched, kept for matches across blocks
	eof := false
	var err error
	for left > 0 {
		for !eof && len(buf) < cap(buf) {
			var n int
			n, err = r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				eof, err = true, nil
			} else if err != nil {
				eof = true
				err = fmt.Errorf("read %s: %w", name, err)
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			return collect(found), cerr
		}
		end := len(buf)
		if !eof {
			if i := bytes.LastIndexByte(buf[tail:], '\n'); i >= 0 {
				end = tail + i + 1
			}
		}
		block := buf[:end]
		m.reset()
		norm = normalize(norm[:0], block, &m)
		span := 1
		for i, p := range pats {
			if found[i] != nil {
				continue
			}
			span = max(span, p.lines)
			s, e := p.matchText(norm)
			if s < 0 {
				continue
			}
			found[i] = newMatch(p, name, block, m.Orig(s), m.Orig(e), base, line)
			left--
		}
		if eof {
			break
		}
		ts := tailStart(block, span-1)
		base += int64(ts)
		line += bytes.Count(block[:ts], []byte{'\n'})
		n := copy(buf, buf[ts:])
		buf, tail = buf[:n], end-ts
	}
	return collect(found), err
}

func collect(found []*Match) []Match {
	var out []Match
	for _, m := range found {
		if m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// tailStart returns where the last lines of block start (at most
// maxTail bytes before its end).
func tailStart(block []byte, lines int) int {
	s := len(block)
	for k := 0; k < lines && s > 0 && len(block)-s < maxTail; k++ {
		s = bytes.LastIndexByte(block[:s-1], '\n') + 1
	}
	return max(s, len(block)-maxTail)
}

// maxMatchLine bounds each line a Match carries.
const maxMatchLine = 1000

func newMatch(p *Pattern, name string, block []byte, s, e int, base int64, line int) *Match {
	ls := bytes.LastIndexByte(block[:s], '\n') + 1
	le := e
	if e > s {
		le = e - 1
	}
	le = lineEnd(block, le)
	var lines []string
	for _, l := range bytes.Split(bytes.TrimSuffix(block[ls:le], []byte{'\n'}), []byte{'\n'}) {
		if len(lines) == MaxLines {
			break
		}
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if len(l) > maxMatchLine {
			l = append(l[:maxMatchLine:maxMatchLine], "…"...)
		}
		lines = append(lines, string(l))
	}
	return &Match{Pattern: p.Name, Issue: p.Issue, Title: p.Title, Action: p.Action, Blocking: p.Blocking,
		File: name, Offset: base + int64(s), Line: line + bytes.Count(block[:s], []byte{'\n'}), Lines: lines}
}
