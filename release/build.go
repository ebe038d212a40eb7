package release

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Export writes the tree of commit in repo to dir (git archive), without
// .git and untracked files: a release is built from exactly what was
// tagged, whatever the checkout around it holds.
func Export(ctx context.Context, repo, commit, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var errA, errT bytes.Buffer
	archive.Stderr, untar.Stderr = &errA, &errT
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(errA.String()))
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("untar %s: %w: %s", commit, err, strings.TrimSpace(errT.String()))
	}
	return nil
}

// BuildFlags are the go build flags of a release binary: no cgo (a static
// binary), no paths of the build machine (-trimpath), an empty build ID
// and no VCS stamp (the source has no .git; the commit comes by -X), so
// that the same source and toolchain give the same bytes anywhere.
func BuildFlags(version, commit string) []string {
	return []string{"-trimpath", "-buildvcs=false", "-mod=readonly",
		"-ldflags=-s -w -buildid= -X main.version=" + version + " -X main.commit=" + commit}
}

// BuildBinary builds ./cmd/turtles of the source tree src for linux/goarch
// into out, reproducibly (BuildFlags). The environment is pinned where it
// would change the output: GOAMD64, GOARM64, GOEXPERIMENT, GOFLAGS.
func BuildBinary(ctx context.Context, src, goarch, version, commit, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := append([]string{"build"}, BuildFlags(version, commit)...)
	args = append(args, "-o", abs, "./cmd/turtles")
	cmd := exec.CommandContext(ctx, goCommand(), args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOAMD64=v1", "GOARM64=v8.0",
		"GOEXPERIMENT=", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build linux/%s: %w\n%s", goarch, err, b)
	}
	return nil
}

// goCommand is $GO, or go from PATH.
func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
