package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitEnv isolates the tests' git from the machine's configuration and
// fixes the identities and dates that end up in tags.
var gitEnv = []string{
	"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
	"GIT_AUTHOR_NAME=Release Tester", "GIT_AUTHOR_EMAIL=release@example.com",
	"GIT_COMMITTER_NAME=Release Tester", "GIT_COMMITTER_EMAIL=release@example.com",
	"GIT_AUTHOR_DATE=2026-11-01T12:00:00Z", "GIT_COMMITTER_DATE=2026-11-01T12:00:00Z",
}

// run runs a command in dir and returns its standard output, failing the
// test on error.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// signer is an SSH key that signs tags and checksums, and the allowed
// signers file that trusts it.
type signer struct {
	key, allowed string
}

// newSigner makes an Ed25519 key in a temporary directory, trusted for
// identity in its own allowed signers file.
func newSigner(t *testing.T, identity string) signer {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatalf("ssh-keygen is missing (openssh-client): %v", err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	run(t, dir, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", identity, "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(allowed, []byte(identity+` namespaces="git,file" `+string(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	return signer{key: key, allowed: allowed}
}

// tag makes an annotated tag signed with s (signed false: unsigned).
func (s signer) tag(t *testing.T, repo, name string, signed bool) {
	t.Helper()
	args := []string{"-c", "gpg.format=ssh", "-c", "user.signingKey=" + s.key, "tag", "-m", "release " + name}
	if signed {
		args = append(args, "-s")
	}
	run(t, repo, "git", append(args, name)...)
}

// newRepo makes a git repository with a commit per subject.
func newRepo(t *testing.T, subjects ...string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, dir, "git", "init", "-q", "-b", "main")
	commit(t, dir, subjects...)
	return dir
}

func commit(t *testing.T, dir string, subjects ...string) {
	t.Helper()
	for i, s := range subjects {
		f := filepath.Join(dir, "file")
		if err := os.WriteFile(f, []byte(s+string(rune('a'+i))), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, dir, "git", "add", "file")
		run(t, dir, "git", "commit", "-q", "-m", s)
	}
}
