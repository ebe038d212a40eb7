package gitmirror

import (
	"errors"
	"fmt"
	"strings"

	"github.com/turtles-ci/turtles"
)

// Limits of a repository name: GitLab nests groups, so a name has 2 to
// maxSegments segments, each of at most maxSegment bytes.
const (
	maxSegments = 8
	maxSegment  = 100
)

// ErrName is a repository name or path the mirror refuses.
var ErrName = errors.New("bad repository name")

// CheckName accepts only what a forge calls a repository, OWNER/NAME (or
// GROUP/SUBGROUP/NAME on GitLab): segments of letters, digits, '_', '-'
// and '.', none starting with '-' (git would take it for an option), none
// "." or containing ".." (a path outside the data directory), none ending
// in ".git" (the mirror's own suffix, so that "a/b" and "a/b.git/c" cannot
// share a directory). Anything else is ErrName.
func CheckName(name string) error {
	segs := strings.Split(name, "/")
	if len(segs) < 2 || len(segs) > maxSegments {
		return fmt.Errorf("%w %q: want OWNER/NAME", ErrName, clip(name))
	}
	for _, s := range segs {
		if err := checkSegment(s); err != nil {
			return fmt.Errorf("%w %q: %s", ErrName, clip(name), err)
		}
	}
	return nil
}

func checkSegment(s string) error {
	switch {
	case s == "":
		return errors.New("empty segment")
	case len(s) > maxSegment:
		return fmt.Errorf("segment longer than %d bytes", maxSegment)
	case s[0] == '-':
		return errors.New("segment starts with '-'")
	case s == "." || strings.Contains(s, ".."):
		return errors.New("'.' or '..' in a segment")
	case strings.HasSuffix(strings.ToLower(s), ".git"):
		return errors.New("segment ends in .git")
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("character %q", c)
		}
	}
	return nil
}

// The two endpoints of git's smart HTTP protocol the mirror serves: the
// reference advertisement and the upload-pack exchange. receive-pack
// (a push) is named so that it is refused as read-only, not unknown.
const (
	endpointRefs       = "info/refs"
	endpointUploadPack = "git-upload-pack"
	endpointPush       = "git-receive-pack"
)

// parsePath splits a request path, "/OWNER/NAME.git/ENDPOINT", into the
// repository's name and the endpoint, refusing every other shape.
func parsePath(p string) (name, endpoint string, err error) {
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: path %q", ErrName, clip(p))
	}
	for _, e := range []string{endpointRefs, endpointUploadPack, endpointPush} {
		if repo, ok := strings.CutSuffix(rest, ".git/"+e); ok {
			if err := CheckName(repo); err != nil {
				return "", "", err
			}
			return repo, e, nil
		}
	}
	return "", "", fmt.Errorf("%w: path %q is not /OWNER/NAME.git/info/refs or /OWNER/NAME.git/git-upload-pack", ErrName, clip(p))
}

// maxTaskHeader bounds the task header: a key is a name, a SHA and a
// context, well under this.
const maxTaskHeader = 1024

// parseTask reads the task header, a task's key (turtles.Task.Key:
// NAME@SHA:CONTEXT), and returns the commit it names. The key must be of
// repository name.
func parseTask(name, key string) (sha string, err error) {
	if key == "" {
		return "", fmt.Errorf("no %s header", TaskHeader)
	}
	if len(key) > maxTaskHeader {
		return "", fmt.Errorf("%s header longer than %d bytes", TaskHeader, maxTaskHeader)
	}
	rest, ok := strings.CutPrefix(key, name+"@")
	if !ok {
		return "", fmt.Errorf("%s header %q is not a task of %s", TaskHeader, clip(key), name)
	}
	sha, ctx, ok := strings.Cut(rest, ":")
	if !ok || !turtles.IsSHA(sha) || ctx == "" {
		return "", fmt.Errorf("%s header %q is not NAME@SHA:CONTEXT", TaskHeader, clip(key))
	}
	return sha, nil
}

// clip shortens what a client sent for an error message.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
