package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrUnsigned is returned by VerifyTag for a tag that carries no
// signature, or one that does not verify against the trusted keys.
var ErrUnsigned = errors.New("tag is not signed by a trusted key")

// Tag is a verified release tag.
type Tag struct {
	Name string
	// Commit is the full hash of the tagged commit.
	Commit string
	// Time is the tagger's date: SOURCE_DATE_EPOCH of the release.
	Time time.Time
	// Previous is the closest earlier tag, "" for the first release.
	Previous string
	// Tagger is who tagged it, "Name <email>": the .deb's Maintainer.
	Tagger string
}

// VerifyTag checks that name is an annotated tag in the git repository
// repo whose signature verifies: an SSH signature by a key listed in
// allowedSigners (ssh-keygen's ALLOWED SIGNERS format, git's
// gpg.ssh.allowedSignersFile), or an OpenPGP one by a key the caller's
// gpg keyring trusts. A lightweight tag, an unsigned one, and one signed
// by another key are refused with an error wrapping ErrUnsigned.
func VerifyTag(ctx context.Context, repo, name, allowedSigners string) (Tag, error) {
	if allowedSigners == "" {
		return Tag{}, errors.New("verify tag: no allowed signers file")
	}
	if _, err := os.Stat(allowedSigners); err != nil {
		return Tag{}, fmt.Errorf("verify tag: %w", err)
	}
	kind, err := git(ctx, repo, "cat-file", "-t", "refs/tags/"+name)
	if err != nil {
		return Tag{}, fmt.Errorf("verify tag %s: no such tag: %w", name, err)
	}
	if kind != "tag" {
		return Tag{}, fmt.Errorf("verify tag %s: a lightweight tag (a %s), which cannot be signed: %w", name, kind, ErrUnsigned)
	}
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "-c", "gpg.ssh.allowedSignersFile="+allowedSigners,
		"verify-tag", "--raw", "refs/tags/"+name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Tag{}, fmt.Errorf("verify tag %s: %w: git verify-tag: %v: %s", name, ErrUnsigned, err, strings.TrimSpace(out.String()))
	}
	t := Tag{Name: name}
	if t.Commit, err = git(ctx, repo, "rev-parse", "refs/tags/"+name+"^{commit}"); err != nil {
		return Tag{}, err
	}
	date, err := git(ctx, repo, "for-each-ref", "--format=%(taggerdate:unix)", "refs/tags/"+name)
	if err != nil {
		return Tag{}, err
	}
	sec, err := strconv.ParseInt(date, 10, 64)
	if err != nil {
		return Tag{}, fmt.Errorf("verify tag %s: tagger date %q: %w", name, date, err)
	}
	t.Time = time.Unix(sec, 0).UTC()
	if t.Tagger, err = git(ctx, repo, "for-each-ref", "--format=%(taggername) %(taggeremail)", "refs/tags/"+name); err != nil {
		return Tag{}, err
	}
	// The closest tag before this one; none for the first release.
	if prev, err := git(ctx, repo, "describe", "--tags", "--abbrev=0", t.Commit+"^"); err == nil {
		t.Previous = prev
	}
	return t, nil
}

// git runs git in repo and returns its trimmed standard output.
func git(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
