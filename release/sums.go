package release

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// SumsFile is the name of the checksum file, in sha256sum's format;
// SigFile its SSH signature (ssh-keygen -Y sign, namespace SigNamespace).
const (
	SumsFile     = "SHA256SUMS"
	SigFile      = SumsFile + ".sig"
	SigNamespace = "file"
)

// ErrTampered is wrapped by VerifySums when a file does not match its
// checksum, is missing, or when the signature does not verify.
var ErrTampered = errors.New("release does not verify")

// WriteSums writes SumsFile in dir with the SHA-256 of each named file
// (names relative to dir), sorted by name, as sha256sum writes them.
func WriteSums(dir string, names []string) error {
	names = slices.Sorted(slices.Values(names))
	var b strings.Builder
	for _, n := range names {
		sum, err := sha256File(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return os.WriteFile(filepath.Join(dir, SumsFile), []byte(b.String()), 0o644)
}

// VerifySums checks every file SumsFile in dir lists against its
// checksum, as `sha256sum --check` does; a mismatch or a missing file is
// an error wrapping ErrTampered that names it. It returns the names.
func VerifySums(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, SumsFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	var bad []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(want) != 64 || name == "" || strings.Contains(name, "/") || name == ".." {
			return nil, fmt.Errorf("%s: malformed line %q: %w", SumsFile, sc.Text(), ErrTampered)
		}
		names = append(names, name)
		got, err := sha256File(filepath.Join(dir, name))
		switch {
		case err != nil:
			bad = append(bad, name+": "+err.Error())
		case got != want:
			bad = append(bad, name+": checksum mismatch")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s lists no file: %w", SumsFile, ErrTampered)
	}
	if len(bad) > 0 {
		return names, fmt.Errorf("%w: %s", ErrTampered, strings.Join(bad, "; "))
	}
	return names, nil
}

// Sign signs dir/SumsFile with the SSH private key at key, writing
// SigFile. An Ed25519 key signs the same bytes the same way every time,
// which keeps a rebuilt release identical.
func Sign(ctx context.Context, dir, key string) error {
	path := filepath.Join(dir, SumsFile)
	os.Remove(path + ".sig")
	cmd := exec.CommandContext(ctx, "ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", SigNamespace, path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sign %s: ssh-keygen: %w: %s", SumsFile, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// VerifySignature checks dir/SigFile over dir/SumsFile against the keys
// of allowedSigners and returns the identity (principal) that signed it.
// A signature by another key, or none, is an error wrapping ErrTampered.
func VerifySignature(ctx context.Context, dir, allowedSigners string) (string, error) {
	sums, sig := filepath.Join(dir, SumsFile), filepath.Join(dir, SigFile)
	if _, err := os.Stat(sig); err != nil {
		return "", fmt.Errorf("%w: %v", ErrTampered, err)
	}
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-Y", "find-principals", "-f", allowedSigners, "-s", sig).Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s is signed by no key of %s", ErrTampered, SigFile, allowedSigners)
	}
	principal, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	data, err := os.ReadFile(sums)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "ssh-keygen", "-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", SigNamespace, "-s", sig)
	cmd.Stdin = bytes.NewReader(data)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: signature of %s: %s", ErrTampered, SumsFile, strings.TrimSpace(string(b)))
	}
	return principal, nil
}

// Verify checks a release directory: the signature of SumsFile, then every
// file it lists. It returns the signer.
func Verify(ctx context.Context, dir, allowedSigners string) (string, error) {
	who, err := VerifySignature(ctx, dir, allowedSigners)
	if err != nil {
		return "", err
	}
	if _, err := VerifySums(dir); err != nil {
		return "", err
	}
	return who, nil
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
