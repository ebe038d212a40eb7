package debian

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/turtles-ci/turtles/image"
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
	return CachedImage(ctx, dir, Options{Recipe: recipe, Packages: packages, Mirror: mirror, Output: out, Log: log})
}

// CachedImage is CachedPackages for any derived image o describes (its
// Out is set here): with an Overlay and Setup it is cached under o.Name,
// which must say what they hold.
func CachedImage(ctx context.Context, dir string, o Options) (string, error) {
	recipe, mirror, out, log := o.Recipe, o.Mirror, o.Output, o.Log
	if _, ok := Recipes[recipe]; !ok {
		return "", fmt.Errorf("unknown image recipe %q", recipe)
	}
	pkgs, err := normalize(o.Packages)
	if err != nil {
		return "", err
	}
	name := Name(recipe, pkgs)
	if o.Overlay != "" || o.Setup != "" {
		if o.Name == "" || !image.ValidName(o.Name) {
			return "", fmt.Errorf("debian: a cached image with an overlay needs a valid Name, not %q", o.Name)
		}
		name = o.Name
	}
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
	manifest := CachedManifest(dir, name)
	if _, err := os.Stat(manifest); err == nil {
		return manifest, nil
	}
	o.Packages, o.Out, o.Output, o.Log = pkgs, d, out, log
	if len(pkgs) > 0 || o.Overlay != "" || o.Setup != "" {
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

// CachedManifest is where CachedImage keeps the manifest of the image
// called name in dir, built or not.
func CachedManifest(dir, name string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-v%d", name, Version), name+".json")
}
