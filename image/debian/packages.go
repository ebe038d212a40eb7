package debian

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/turtles-ci/turtles/image"
)

// MaxPackages bounds the extra packages of one derived image: a list
// longer than this is a mistake, or someone probing the command line.
const MaxPackages = 100

// maxPackageName bounds one package name; Debian's longest are under 70.
const maxPackageName = 128

// ValidPackage reports whether s is a Debian package name (Debian Policy
// 5.6.1): lower case letters, digits, "+", "-" and ".", at least two
// characters, starting with a letter or digit. Nothing else reaches
// apt-get's command line: no version (=), release (/) or architecture (:)
// qualifier, no option.
func ValidPackage(s string) bool {
	if len(s) < 2 || len(s) > maxPackageName || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// ParsePackages reads a comma-separated list of package names, as
// `turtles image build --packages` takes it, and returns it sorted without
// duplicates: the form Name and Options.Packages expect. Spaces around
// names are ignored; an empty list is nil.
func ParsePackages(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var pkgs []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !ValidPackage(f) {
			return nil, fmt.Errorf("bad Debian package name %q: want lower case letters, digits, + - and . (at least two characters, starting with a letter or digit)", f)
		}
		pkgs = append(pkgs, f)
	}
	return normalize(pkgs)
}

// normalize checks every name and returns the list sorted, without
// duplicates, or nil when empty.
func normalize(pkgs []string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	out := slices.Clone(pkgs)
	for _, p := range out {
		if !ValidPackage(p) {
			return nil, fmt.Errorf("bad Debian package name %q", p)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxPackages {
		return nil, fmt.Errorf("%d extra packages: at most %d", len(out), MaxPackages)
	}
	return out, nil
}

// Name is the image name of the recipe with the extra packages (sorted,
// without duplicates, as ParsePackages returns them): the recipe itself
// without packages, else the recipe and the packages joined by "_"
// ("debian-12_etcd-server"), which no package name contains. When a
// package has a "+" (not allowed in image names) or the name would be
// longer than an image name may be, the packages are named by the first
// 16 hex digits of their list's sha256 after "__" ("debian-12__3f9a...").
// It is the file name of the image's manifest in an images directory, so
// a context names the image as "image: debian-12_etcd-server".
func Name(recipe string, packages []string) string {
	if len(packages) == 0 {
		return recipe
	}
	if n := recipe + "_" + strings.Join(packages, "_"); image.ValidName(n) {
		return n
	}
	sum := sha256.Sum256([]byte(strings.Join(packages, "\n")))
	return recipe + "__" + hex.EncodeToString(sum[:8])
}
