// Package triage recognizes known failures in the logs of failed attempts.
// A known issue is a pattern file (one per issue, YAML, in a repository's
// .turtles/known-issues/ or on the server): the issue's URL, where it
// applies (contexts, images, tests), a glob or a regex, the files to search
// (the log, artifacts such as the guest journal), the action (known-issue,
// retry, skip), an expiry date and sample texts it must match. Text is
// normalized (Normalize) before matching, so that a pattern survives paths,
// PIDs, addresses, ids and timestamps that differ from run to run.
//
// Load parses pattern files, Set.Match streams files through the patterns
// and returns each match with its provenance, Check validates patterns
// (samples, expiry, no match in passing logs). Defaults are turtles' own
// infrastructure patterns, embedded in the binary.
//
// The bot, the reporter and cmd/turtles import it; it imports only
// config (for its strict YAML decoding) and does no I/O beyond the files
// and readers it is given.
package triage

import (
	"fmt"
	"path"
	"regexp"
	"time"
)

// Dir is where a repository keeps its pattern files.
const Dir = ".turtles/known-issues"

// Action is what a match does to the attempt's verdict.
type Action string

const (
	// KnownIssue: the failure is a known issue; the status names it.
	KnownIssue Action = "known-issue"
	// Retry: the failure is the infrastructure's; run the attempt again.
	Retry Action = "retry"
	// Skip: the failure does not count (the test is known not to work).
	Skip Action = "skip"
)

// Pattern is one parsed pattern file.
type Pattern struct {
	// Name is the pattern file's name, as given to Parse: the provenance
	// of its matches.
	Name  string
	Issue string
	Title string
	Scope Scope
	// Files are globs (path.Match) over the names of the files searched:
	// "log", "artifacts/journal.txt".
	Files    []string
	Action   Action
	Blocking bool
	// Expires is the day from which the pattern no longer applies; zero
	// for never.
	Expires time.Time
	Samples []Sample

	// Source is the glob or the regex as written.
	Source string
	IsGlob bool
	re     *regexp.Regexp
	lits   [][]byte // a match contains at least one of them
	lines  int      // most lines a match spans
}

// Scope says where a pattern applies: each list holds globs (path.Match),
// and an empty list means everywhere.
type Scope struct {
	Contexts []string `yaml:"contexts"`
	Images   []string `yaml:"images"`
	// Tests: the pattern applies when one of the failed tests matches.
	Tests []string `yaml:"tests"`
}

// Sample is a text a pattern must match: given inline, or as a file
// relative to the pattern file (then Text is its content once loaded).
type Sample struct {
	Text string
	File string
	Line int // of the sample in the pattern file
}

// Expired reports whether p no longer applies at now.
func (p *Pattern) Expired(now time.Time) bool {
	return !p.Expires.IsZero() && !now.Before(p.Expires)
}

// applies reports whether p's scope covers in.
func (p *Pattern) applies(in Input) bool {
	if !anyGlob(p.Scope.Contexts, in.Context) || !anyGlob(p.Scope.Images, in.Image) {
		return false
	}
	if len(p.Scope.Tests) == 0 {
		return true
	}
	for _, t := range in.Tests {
		if anyGlob(p.Scope.Tests, t) {
			return true
		}
	}
	return false
}

// searches reports whether p searches the file named name.
func (p *Pattern) searches(name string) bool { return anyGlob(p.Files, name) }

// anyGlob reports whether s matches one of globs; an empty list matches
// everything.
func anyGlob(globs []string, s string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// Match is one pattern found in one file, with its provenance.
type Match struct {
	Pattern  string `json:"pattern"` // the pattern file's name
	Issue    string `json:"issue"`
	Title    string `json:"title,omitempty"`
	Action   Action `json:"action"`
	Blocking bool   `json:"blocking"`
	File     string `json:"file"` // "log", "artifacts/journal.txt"
	// Offset is the byte offset of the match in the file as stored (not
	// normalized), and Line the 1-based line it starts on.
	Offset int64 `json:"offset"`
	Line   int   `json:"line"`
	// Lines are the file's lines the match spans, as stored.
	Lines []string `json:"lines"`
}

func (m Match) String() string {
	return fmt.Sprintf("%s: %s line %d matches %s (%s)", m.Pattern, m.File, m.Line, m.Issue, m.Action)
}
