package bot

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/scrub"
	"github.com/turtles-ci/turtles/triage"
)

// Triage of test failures (issue 16): a failed test attempt's log and
// artifacts are searched with the known-issue patterns of the server
// (Config.Triage) and, for a trusted task, of the repository at the
// commit (RepoKnownIssues). The first match decides:
//
//   - retry: an infrastructure problem in test's clothing; the attempt
//     ends as infra and is retried like any.
//   - known-issue: the verdict is known-issue and the status names the
//     issue; a blocking one stays a failure, one that does not block
//     passes.
//   - skip: the test is known not to work there: known-issue, and the
//     attempt passes whatever blocking says. An untrusted change's own patterns are never read, so a pull
//     request cannot declare its regression a known issue.
//
// No match: the failure is a regression, and stays one.

// RepoKnownIssues is where a repository keeps its known-issue patterns.
const RepoKnownIssues = ".turtles/known-issues"

// maxTriageFiles bounds the artifacts searched per attempt.
const maxTriageFiles = 100

// triage gives outcome, a test failure of t, its verdict, and returns
// the matches that decided it (nil when none matched).
func (b *Bot) triage(ctx context.Context, t turtles.Task, ws workspace, logR io.Reader, failed []string,
	outcome *turtles.Outcome, scrubber *scrub.Scrubber, log *slog.Logger) []turtles.TriageMatch {
	set := &triage.Set{}
	if b.cfg.Triage != nil {
		set.Add(b.cfg.Triage)
	}
	if t.Trusted {
		if _, err := os.Stat(filepath.Join(ws.src, RepoKnownIssues)); err == nil {
			repo, errs := triage.Load(os.DirFS(ws.src), RepoKnownIssues)
			for _, err := range errs {
				log.Warn("a known-issue pattern of the repository is left out", "err", err)
			}
			if repo != nil {
				set.Add(repo)
			}
		}
	}
	files := map[string]io.Reader{}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if logR != nil {
		files["log"] = logR
	}
	n := 0
	filepath.WalkDir(ws.artifacts, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || n >= maxTriageFiles {
			return nil
		}
		rel, err := filepath.Rel(ws.artifacts, path)
		if err != nil {
			return nil
		}
		if f, err := os.Open(path); err == nil {
			files["artifacts/"+filepath.ToSlash(rel)] = f
			closers = append(closers, f)
			n++
		}
		return nil
	})
	ms, err := set.Match(ctx, triage.Input{Context: t.Context, Image: t.Image, Tests: failed, Files: files})
	if err != nil {
		log.Warn("known-issue patterns: a file could not be read to its end", "err", err)
	}
	if len(ms) == 0 {
		outcome.Verdict = turtles.VerdictRegression
		return nil
	}
	out := make([]turtles.TriageMatch, 0, len(ms))
	for _, m := range ms {
		lines := make([]string, len(m.Lines))
		for i, l := range m.Lines {
			lines[i] = scrubber.String(l)
		}
		out = append(out, turtles.TriageMatch{Pattern: m.Pattern, Issue: m.Issue, Title: m.Title, Action: string(m.Action),
			Blocking: m.Blocking, File: m.File, Offset: m.Offset, Line: m.Line, Lines: lines})
	}
	first := out[0]
	what := first.Issue
	if first.Title != "" {
		what = first.Title + " (" + first.Issue + ")"
	}
	outcome.Issue = first.Issue
	switch triage.Action(first.Action) {
	case triage.Retry:
		outcome.Class, outcome.Verdict = turtles.Infra, turtles.VerdictInfra
		outcome.Reason = fmt.Sprintf("known infrastructure problem: %s, %s line %d", what, first.File, first.Line)
	default:
		outcome.Verdict = turtles.VerdictKnownIssue
		outcome.Reason = fmt.Sprintf("Known issue %s, %s line %d", what, first.File, first.Line)
		switch {
		case triage.Action(first.Action) == triage.Skip:
			// The test is known not to work here: its failure never counts.
			outcome.Class = turtles.Success
			outcome.Reason = fmt.Sprintf("Known issue, skipped: %s, %s line %d", what, first.File, first.Line)
		case !first.Blocking:
			outcome.Class = turtles.Success
			outcome.Reason = fmt.Sprintf("Known issue, not blocking: %s, %s line %d", what, first.File, first.Line)
		}
	}
	log.Info("failure triaged", "verdict", outcome.Verdict, "pattern", first.Pattern, "file", first.File, "line", first.Line)
	return out
}
