package debian

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// CacheDir is where tests and benchmarks keep built images, outside any
// checkout: $TURTLES_IMAGE_CACHE, else $XDG_CACHE_HOME/turtles/images,
// else /var/tmp/turtles-cache/images.
func CacheDir() string {
	if d := os.Getenv("TURTLES_IMAGE_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "turtles", "images")
	}
	return "/var/tmp/turtles-cache/images"
}

// Cached returns the manifest of the recipe's image in dir/RECIPE-vVERSION,
// building it first from mirror if absent. A file lock makes parallel
// callers (test binaries of several packages) build it once.
func Cached(ctx context.Context, dir, recipe, mirror string, out io.Writer, log *slog.Logger) (string, error) {
	d := filepath.Join(dir, fmt.Sprintf("%s-v%d", recipe, Version))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(d, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock image cache: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	manifest := filepath.Join(d, recipe+".json")
	if _, err := os.Stat(manifest); err == nil {
		return manifest, nil
	}
	return Build(ctx, Options{Recipe: recipe, Out: d, Mirror: mirror, Output: out, Log: log})
}
