package triage

import (
	"context"
	"embed"
	"fmt"
	"io"
	"strings"
	"time"
)

// Problem is something wrong with a pattern, found by Check.
type Problem struct {
	File string // the pattern file
	Line int    // 0 when it concerns the whole file
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Check validates the patterns of s at now: each has samples and matches
// each of them, and none has expired (an expired pattern no longer
// applies; delete it, or extend it if the issue is still open).
func Check(ctx context.Context, s *Set, now time.Time) []Problem {
	var out []Problem
	for _, p := range s.Patterns {
		if p.Expired(now) {
			out = append(out, Problem{p.Name, 0, fmt.Sprintf("expired on %s: it no longer applies; delete it or move expires", p.Expires.Format(time.DateOnly))})
		}
		if len(p.Samples) == 0 {
			out = append(out, Problem{p.Name, 0, "no samples: add a sample of the text it must match"})
		}
		for i, smp := range p.Samples {
			ms, err := Scan(ctx, strings.NewReader(smp.Text), "sample", []*Pattern{p})
			if err != nil {
				out = append(out, Problem{p.Name, smp.Line, err.Error()})
				continue
			}
			if len(ms) == 0 {
				what := fmt.Sprintf("sample %d", i+1)
				if smp.File != "" {
					what += " (" + smp.File + ")"
				}
				out = append(out, Problem{p.Name, smp.Line, what + " does not match"})
			}
		}
	}
	return out
}

// CheckPassing searches log, the log of an attempt that passed in
// context and image (where says which, for people), with the patterns of
// s that apply there, ignoring their test scope: a pattern that matches a
// passing log is too broad, and would call a regression a known issue.
func CheckPassing(ctx context.Context, s *Set, context_, image, where string, log io.Reader) ([]Problem, error) {
	var pats []*Pattern
	for _, p := range s.Patterns {
		if anyGlob(p.Scope.Contexts, context_) && anyGlob(p.Scope.Images, image) && p.searches("log") {
			pats = append(pats, p)
		}
	}
	if len(pats) == 0 {
		return nil, nil
	}
	ms, err := Scan(ctx, log, "log", pats)
	var out []Problem
	for _, m := range ms {
		out = append(out, Problem{m.Pattern, 0, fmt.Sprintf("matches the passing log %s line %d: %s", where, m.Line, strings.Join(m.Lines, " / "))})
	}
	return out, err
}

//go:embed defaults/*.yaml
var defaults embed.FS

// Defaults returns turtles' own server-side infrastructure patterns,
// embedded in the binary (triage/defaults). They are tested: a test
// requires Check to find no problem in them.
func Defaults() (*Set, []error) { return Load(defaults, "defaults") }
