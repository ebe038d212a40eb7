// Package forge defines what turtles needs from a code forge (GitHub,
// GitLab): setting commit statuses. Implementations live in forge/github
// and forge/gitlab. Only the reporter holds forge credentials; bots never
// import this package's implementations.
package forge

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"
)

// State of a commit status, as forges name them.
type State string

const (
	Pending State = "pending"
	Success State = "success"
	Failure State = "failure"
	Error   State = "error"
)

// Status is one commit status.
type Status struct {
	Context     string
	State       State
	TargetURL   string
	Description string
}

// MaxDescription is the longest description forges accept (GitHub: 140).
const MaxDescription = 140

// ErrPermanent marks a forge error that retrying cannot fix (bad
// credentials, unknown repository); the reporter logs and drops it.
var ErrPermanent = errors.New("permanent forge error")

// Forge sets commit statuses.
type Forge interface {
	// SetStatus sets st on commit sha of repo ("owner/name"). Errors that
	// wrap ErrPermanent will not be retried; others will.
	SetStatus(ctx context.Context, repo, sha string, st Status) error
}

// Truncate returns s cut to at most max runes, ending with "…" when cut,
// so that a long reason never makes a forge refuse the whole status.
// Invalid UTF-8 is replaced first, so the result is always valid.
func Truncate(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	n := 0
	for i := range s {
		if n == max-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
