package triage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t testing.TB, name, data string) *Pattern {
	t.Helper()
	p, err := Parse(name, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMatch(t *testing.T) {
	log := "ok 1 - boots\n" +
		"Dec  3 02:25:26 fedora sshd[812]: Connection from 10.0.2.2 port 51234\n" +
		"not ok 2 - login\n" +
		"Traceback (most recent call last):\n" +
		"  File \"/build/cockpit/test/verify/check-login\", line 42, in testBasic\n" +
		"    b.wait_visible(\"#login\")\n" +
		"Error: timeout after 0.500s waiting for #login\n"
	set := &Set{Patterns: []*Pattern{
		mustParse(t, "ki/glob.yaml", "issue: https://x.org/1\nmatch:\n  glob: 'sshd[99]: Connection from 192.168.0.1 port 22'\n"),
		mustParse(t, "ki/block.yaml", "issue: https://x.org/2\nblocking: true\nmatch:\n  glob: |\n    File \"/other/checkout/check-login\", line *, in testBasic\n      b.wait_visible(*)\n"),
		mustParse(t, "ki/regex.yaml", "issue: https://x.org/3\naction: skip\nmatch:\n  regex: 'timeout after <dur> waiting for #\\w+'\n"),
		mustParse(t, "ki/other-context.yaml", "issue: https://x.org/4\nscope:\n  contexts: [rhel-*]\nmatch:\n  glob: 'not ok 2'\n"),
		mustParse(t, "ki/other-test.yaml", "issue: https://x.org/5\nscope:\n  tests: [TestOther*]\nmatch:\n  glob: 'not ok 2'\n"),
		mustParse(t, "ki/expired.yaml", "issue: https://x.org/6\nexpires: 2020-01-01\nmatch:\n  glob: 'not ok 2'\n"),
		mustParse(t, "ki/journal.yaml", "issue: https://x.org/7\nfiles: [artifacts/journal*]\naction: retry\nmatch:\n  glob: 'Out of memory: Killed process *'\n"),
		mustParse(t, "ki/nomatch.yaml", "issue: https://x.org/8\nmatch:\n  glob: 'kernel BUG at'\n"),
	}}
	journal := "line one\n[ 5.123456] Out of memory: Killed process 1234 (cockpit-ws)\n"
	got, err := set.Match(context.Background(), Input{
		Context: "fedora-40", Image: "fedora-40", Tests: []string{"login"},
		Files: map[string]io.Reader{"log": strings.NewReader(log), "artifacts/journal.txt": strings.NewReader(journal)},
		Now:   time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	off := func(s, sub string) int64 { return int64(strings.Index(s, sub)) }
	want := []Match{
		{Pattern: "ki/journal.yaml", Issue: "https://x.org/7", Action: Retry, File: "artifacts/journal.txt",
			Offset: off(journal, "Out of"), Line: 2, Lines: []string{"[ 5.123456] Out of memory: Killed process 1234 (cockpit-ws)"}},
		{Pattern: "ki/glob.yaml", Issue: "https://x.org/1", Action: KnownIssue, File: "log",
			Offset: off(log, "sshd[812]"), Line: 2, Lines: []string{"Dec  3 02:25:26 fedora sshd[812]: Connection from 10.0.2.2 port 51234"}},
		{Pattern: "ki/block.yaml", Issue: "https://x.org/2", Action: KnownIssue, Blocking: true, File: "log",
			Offset: off(log, "File"), Line: 5, Lines: []string{"  File \"/build/cockpit/test/verify/check-login\", line 42, in testBasic", "    b.wait_visible(\"#login\")"}},
		{Pattern: "ki/regex.yaml", Issue: "https://x.org/3", Action: Skip, File: "log",
			Offset: off(log, "timeout"), Line: 7, Lines: []string{"Error: timeout after 0.500s waiting for #login"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Match (-want +got):\n%s", d)
	}
}

// TestScanBlocks puts matches across and at the edges of Scan's blocks,
// read in small pieces, and checks offsets and lines in the original.
func TestScanBlocks(t *testing.T) {
	multi := mustParse(t, "multi.yaml", "issue: https://x.org/1\nmatch:\n  glob: |\n    first line of it at <time>\n    second line\n")
	single := mustParse(t, "single.yaml", "issue: https://x.org/2\nmatch:\n  glob: 'needle in a haystack pid *'\n")
	line := strings.Repeat("x", 99) + "\n"
	for _, at := range []int{0, blockSize - 150, blockSize - 100, blockSize - 30, blockSize, 3*blockSize + 7} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			var b bytes.Buffer
			for b.Len() < at {
				b.WriteString(line)
			}
			pos := b.Len()
			b.WriteString("first line of it at 2024-05-01T12:00:01Z\nsecond line\n")
			pos2 := b.Len()
			b.WriteString("a needle in a haystack pid 1234\n")
			for b.Len() < 4*blockSize {
				b.WriteString(line)
			}
			text := b.String()
			got, err := Scan(context.Background(), io.LimitReader(&slowReader{strings.NewReader(text)}, int64(len(text))), "log", []*Pattern{multi, single})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("got %d matches: %+v", len(got), got)
			}
			wantLine := strings.Count(text[:pos], "\n") + 1
			if got[0].Offset != int64(pos) || got[0].Line != wantLine || !cmp.Equal(got[0].Lines, []string{"first line of it at 2024-05-01T12:00:01Z", "second line"}) {
				t.Errorf("multi-line match = %+v; want offset %d line %d", got[0], pos, wantLine)
			}
			if got[1].Offset != int64(pos2+2) || got[1].Lines[0] != "a needle in a haystack pid 1234" {
				t.Errorf("single match = %+v; want offset %d", got[1], pos2+2)
			}
		})
	}
}

// slowReader returns at most 4000 bytes per Read.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 4000)]) }

func TestScanReadError(t *testing.T) {
	p := mustParse(t, "p.yaml", "issue: https://x.org/1\nmatch:\n  glob: 'never here'\n")
	_, err := Scan(context.Background(), io.MultiReader(strings.NewReader("abc\n"), errReader{}), "log", []*Pattern{p})
	if err == nil || !strings.Contains(err.Error(), "read log: boom") {
		t.Errorf("err = %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("boom") }

func TestDefaults(t *testing.T) {
	set, errs := Defaults()
	for _, e := range errs {
		t.Error(e)
	}
	if len(set.Patterns) < 5 {
		t.Errorf("%d default patterns, want at least 5", len(set.Patterns))
	}
	for _, p := range Check(context.Background(), set, time.Now()) {
		t.Error(p)
	}
	for _, p := range set.Patterns {
		if p.Action != Retry {
			t.Errorf("%s: action %s, want retry", p.Name, p.Action)
		}
	}
}

func TestCheck(t *testing.T) {
	set := &Set{Patterns: []*Pattern{
		mustParse(t, "ok.yaml", "issue: https://x.org/1\nmatch:\n  glob: 'oops'\nsamples: ['it went oops']\n"),
		mustParse(t, "nosample.yaml", "issue: https://x.org/2\nmatch:\n  glob: 'oops'\n"),
		mustParse(t, "wrong.yaml", "issue: https://x.org/3\nmatch:\n  glob: 'oops'\nsamples:\n  - 'fine'\n"),
		mustParse(t, "expired.yaml", "issue: https://x.org/4\nexpires: 2024-06-01\nmatch:\n  glob: 'oops'\nsamples: ['oops']\n"),
	}}
	var got []string
	for _, p := range Check(context.Background(), set, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)) {
		got = append(got, p.String())
	}
	want := []string{
		"nosample.yaml: no samples: add a sample of the text it must match",
		"wrong.yaml:5: sample 1 does not match",
		"expired.yaml: expired on 2024-06-01: it no longer applies; delete it or move expires",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Check (-want +got):\n%s", d)
	}
	probs, err := CheckPassing(context.Background(), set, "fedora", "", "o/r@abc fedora #1", strings.NewReader("all good\nno oops here\n"))
	if err != nil || len(probs) != 4 || probs[0].String() != "ok.yaml: matches the passing log o/r@abc fedora #1 line 2: no oops here" {
		t.Errorf("CheckPassing = %v, %v", probs, err)
	}
}
