package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Branches says where a context runs. A nil list means everywhere; an
// empty one, nowhere.
type Branches struct {
	// PullRequest are globs of the base branches of pull requests.
	PullRequest []string `yaml:"pull_request"`
	// Push are globs of the branches pushed to.
	Push []string `yaml:"push"`
}

// Event is what happened to a commit, for choosing its contexts.
type Event struct {
	// PullRequest is true for a pull request's head commit; Branch is then
	// its base branch. Otherwise the commit was pushed to Branch.
	PullRequest bool
	// Branch is a branch name such as "main"; "" when unknown, and then
	// branch rules do not filter.
	Branch string
	// Changed are the paths the change touches; nil when unknown, and
	// then path filters do not filter.
	Changed []string
}

var secretNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// maxGlob bounds a glob's length.
const maxGlob = 200

// validateMatrix checks the matrix fields of x: globs, secret names.
func (x *Context) validateMatrix() error {
	for _, list := range []struct {
		key   string
		globs []string
	}{
		{"run_if_changed", x.RunIfChanged},
		{"skip_if_only_changed", x.SkipIfOnlyChanged},
		{"branches.pull_request", x.Branches.PullRequest},
		{"branches.push", x.Branches.Push},
	} {
		for _, g := range list.globs {
			if _, err := compileGlob(g); err != nil {
				return fmt.Errorf("%s: %w", list.key, err)
			}
		}
	}
	if len(x.RunIfChanged) > 0 && len(x.SkipIfOnlyChanged) > 0 {
		return fmt.Errorf("run_if_changed and skip_if_only_changed exclude each other")
	}
	seen := map[string]bool{}
	for _, s := range x.Secrets {
		if !secretNameRe.MatchString(s) {
			return fmt.Errorf("bad secret name %q: use letters, digits and _ (at most 64), not starting with a digit", s)
		}
		if seen[s] {
			return fmt.Errorf("secret %q listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// IsAuto reports whether x runs on every push (the default) rather than
// only on request.
func (x Context) IsAuto() bool { return x.Auto == nil || *x.Auto }

// Runs reports whether x runs by itself for ev: it is auto, its branch
// rules allow ev's branch, and its path filters allow ev's changes.
// /test CONTEXT ignores all three.
func (x Context) Runs(ev Event) bool {
	return x.IsAuto() && x.branchAllows(ev) && x.pathsAllow(ev.Changed)
}

// SkippedByPaths reports whether x would run by itself for ev but its
// path filters leave it out: the change touches none of its paths.
// Such a context is reported as skipped, so that a scan does not take its
// missing status for lost work.
func (x Context) SkippedByPaths(ev Event) bool {
	return x.IsAuto() && x.branchAllows(ev) && !x.pathsAllow(ev.Changed)
}

// HasPathFilters reports whether x runs only for some changed paths.
func (x Context) HasPathFilters() bool {
	return len(x.RunIfChanged) > 0 || len(x.SkipIfOnlyChanged) > 0
}

func (x Context) branchAllows(ev Event) bool {
	branches := x.Branches.Push
	if ev.PullRequest {
		branches = x.Branches.PullRequest
	}
	if branches != nil && len(branches) == 0 {
		return false // listed as never
	}
	return ev.Branch == "" || branches == nil || anyMatch(branches, ev.Branch)
}

func (x Context) pathsAllow(changed []string) bool {
	if changed == nil {
		return true
	}
	if len(x.RunIfChanged) > 0 {
		for _, p := range changed {
			if anyMatch(x.RunIfChanged, p) {
				return true
			}
		}
		return false
	}
	if len(x.SkipIfOnlyChanged) > 0 && len(changed) > 0 {
		for _, p := range changed {
			if !anyMatch(x.SkipIfOnlyChanged, p) {
				return true
			}
		}
		return false
	}
	return true
}

// Select returns the contexts that run by themselves for ev.
func (c *Config) Select(ev Event) []Context {
	var out []Context
	for _, x := range c.Contexts {
		if x.Runs(ev) {
			out = append(out, x)
		}
	}
	return out
}

func anyMatch(globs []string, name string) bool {
	for _, g := range globs {
		re, err := compileGlob(g)
		if err == nil && re.MatchString(name) {
			return true
		}
	}
	return false
}

// compileGlob turns a glob into a regexp: "*" matches within one path
// segment, "**" across segments ("docs/**", "**/*.md"), "?" one character
// other than "/". Validated configurations only hold globs that compile.
func compileGlob(g string) (*regexp.Regexp, error) {
	if g == "" || len(g) > maxGlob {
		return nil, fmt.Errorf("bad glob %q: want 1 to %d characters", g, maxGlob)
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		switch c := g[i]; {
		case strings.HasPrefix(g[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
