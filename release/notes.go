package release

import (
	"context"
	"fmt"
	"strings"
)

// Notes returns the release notes of t in Markdown: the commits since the
// previous tag (all of them for the first release), oldest first, merges
// left out, grouped by the part each subject names ("bot: ..." under
// bot).
func Notes(ctx context.Context, repo string, t Tag) (string, error) {
	rng := t.Commit
	if t.Previous != "" {
		rng = t.Previous + ".." + t.Commit
	}
	log, err := git(ctx, repo, "log", "--no-merges", "--reverse", "--format=%h%x00%s", rng)
	if err != nil {
		return "", fmt.Errorf("release notes: %w", err)
	}
	var order []string
	groups := map[string][]string{}
	n := 0
	for line := range strings.Lines(log) {
		hash, subject, ok := strings.Cut(strings.TrimSpace(line), "\x00")
		if !ok {
			continue
		}
		n++
		part := "other"
		if p, rest, ok := strings.Cut(subject, ": "); ok && !strings.Contains(p, " ") {
			part, subject = p, rest
		}
		if _, ok := groups[part]; !ok {
			order = append(order, part)
		}
		groups[part] = append(groups[part], fmt.Sprintf("- %s (%s)", subject, hash))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# turtles %s\n\nTagged %s, commit %s.\n\n", t.Name, t.Time.Format("2006-01-02"), t.Commit)
	if t.Previous != "" {
		fmt.Fprintf(&b, "## %d changes since %s\n", n, t.Previous)
	} else {
		fmt.Fprintf(&b, "## %d changes (first release)\n", n)
	}
	for _, p := range order {
		fmt.Fprintf(&b, "\n### %s\n\n%s\n", p, strings.Join(groups[p], "\n"))
	}
	fmt.Fprintf(&b, "\n## Verify\n\n```\nssh-keygen -Y verify -f allowed_signers -I IDENTITY -n file -s SHA256SUMS.sig < SHA256SUMS\nsha256sum --check SHA256SUMS\n```\n\n(docs/install.md, \"Verify a release\")\n")
	return b.String(), nil
}
