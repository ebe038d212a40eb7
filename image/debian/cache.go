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
	return CachedPackages(ctx, dir, recipe, nil, mirror, out, log)
}

// CachedPackages is Cached for the recipe's image with extra Debian
// packages (a derived image, see Options.Packages): its manifest is
// dir/NAME-vVERSION/NAME.json, NAME being Name(recipe, sorted packages),
// so the cache entry is keyed by the recipe, its version and the package
// list, in any order. It is derived from the recipe's cached image
// (Options.Base), which is built first if absent. No packages is the
// recipe's own image.
func CachedPackages(ctx context.Context, dir, recipe string, packages []string, mirror string, out io.Writer, log *slog.Logger) (string, error) {
	if _, ok := Recipes[recipe]; !ok {
		return "", fmt.Errorf("unknown image recipe %q", recipe)
	}
	pkgs, err := normalize(packages)
	if err != nil {
		return "", err
	}
	name := Name(recipe, pkgs)
	d := filepath.Join(dir, fmt.Sprintf("%s-v%d", name, Version))
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
	if out == nil {
		out = io.Discard
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sweepBuilds(ctx, d, out, log)
	manifest := filepath.Join(d, name+".json")
	if _, err := os.Stat(manifest); err == nil {
		return manifest, nil
	}
	o := Options{Recipe: recipe, Packages: pkgs, Out: d, Mirror: mirror, Output: out, Log: log}
	if len(pkgs) > 0 {
		// Derived from the cached image of the recipe, built first
		// if need be: seconds, where debootstrap takes minutes.
		if o.Base, err = Cached(ctx, dir, recipe, mirror, out, log); err != nil {
			return "", err
		}
	}
	if _, err := Build(ctx, o); err != nil {
		return "", err
	}
	// NAME.json, the same manifest as NAME-SHA256.json: callers get
	// one path whether this call built the image or found it.
	return manifest, nil
}
