// Package command reads the commands people type in pull request comments:
// /retest, /test CONTEXT, /hold [CONTEXT] and /ok-to-test. It only parses; whether the
// commenter may give them is decided by the gate package.
//
// Anyone may import it; it does no I/O.
package command

import (
	"regexp"
	"strings"
)

// Name is a command's name, without the slash.
type Name string

const (
	// Retest runs the failed contexts of the head commit again.
	Retest Name = "retest"
	// Test runs one context of the head commit, even one that is not auto.
	Test Name = "test"
	// OKToTest approves an untrusted pull request's head commit. It binds
	// only when it names that commit (/ok-to-test SHA): the comment does
	// not say which head its writer saw, and the head may move before the
	// gate reads it.
	OKToTest Name = "ok-to-test"
	// Hold runs the failed contexts of the head commit again (/hold), or
	// the contexts it names (/hold CONTEXT), keeping the VM of each that
	// fails again for turtles debug, as a context's hold: on-failure does.
	Hold Name = "hold"
)

// Command is one command found in a comment.
type Command struct {
	Name Name `json:"name"`
	// Context is the context of /test or /hold CONTEXT; empty for the
	// others.
	Context string `json:"context,omitempty"`
	// SHA is the commit (7 to 64 hex digits, lower case) /ok-to-test
	// names, if any; the gate wants it whole.
	SHA string `json:"sha,omitempty"`
}

func (c Command) String() string {
	switch {
	case c.Context != "":
		return "/" + string(c.Name) + " " + c.Context
	case c.SHA != "":
		return "/" + string(c.Name) + " " + c.SHA
	}
	return "/" + string(c.Name)
}

// MaxCommands bounds the commands taken from one comment, so that a comment
// cannot fan out into thousands of tasks.
const MaxCommands = 20

// contextRe is turtles.Task's rule for context names.
var contextRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/+-]{0,99}$`)

// shaRe is an abbreviated or full commit SHA (SHA-1 or SHA-256).
var shaRe = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

// Parse returns the commands in a comment body, in order, without
// duplicates, at most MaxCommands. A command is a line that starts with it
// (after spaces); quoted lines ("> /retest") and fenced code blocks are
// skipped, because quoting someone's command is not giving it. Unknown
// commands and /test without a valid context are ignored: a comment is
// prose first.
func Parse(body string) []Command {
	var out []Command
	seen := map[Command]bool{}
	add := func(c Command) {
		if !seen[c] && len(out) < MaxCommands {
			seen[c] = true
			out = append(out, c)
		}
	}
	fenced := false
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "```") || strings.HasPrefix(line, "~~~") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "/") {
			continue
		}
		fields := strings.Fields(line)
		switch Name(fields[0][1:]) {
		case Retest:
			if len(fields) == 1 {
				add(Command{Name: Retest})
			}
		case OKToTest:
			switch {
			case len(fields) == 1:
				add(Command{Name: OKToTest})
			case len(fields) == 2 && shaRe.MatchString(fields[1]):
				add(Command{Name: OKToTest, SHA: strings.ToLower(fields[1])})
			}
		case Hold:
			if len(fields) == 1 {
				add(Command{Name: Hold})
			}
			fallthrough
		case Test:
			for _, ctx := range fields[1:] {
				if contextRe.MatchString(ctx) && !strings.Contains(ctx, "..") {
					add(Command{Name: Name(fields[0][1:]), Context: ctx})
				}
			}
		}
	}
	return out
}
