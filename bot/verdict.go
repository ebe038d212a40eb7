package bot

import (
	"context"
	"io"
	"log/slog"

	"github.com/turtles-ci/turtles"
)

// judge gives the outcome of a test attempt its verdict (turtles.Verdict),
// in this order:
//
//   - a pass after an earlier attempt of the commit failed: flake
//     (retries:, flaky.go);
//   - a failure whose failed tests are all quarantined: a passing flake
//     (trusted work only);
//   - a failure that a known-issue pattern matches: known-issue, or infra
//     for a retry pattern (triage.go);
//   - any other failure: regression.
//
// The matches that decided, if any, go to res.Triage.
func (b *Bot) judge(ctx context.Context, t turtles.Task, ws workspace, out *liveLog, res *turtles.Result,
	outcome *turtles.Outcome, log *slog.Logger) {
	if t.Kind != turtles.KindTest {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	switch outcome.Class {
	case turtles.Success:
		if why := b.earlierFailure(ctx, t); why != "" {
			outcome.Reason, outcome.Verdict = why, turtles.VerdictFlake
		}
	case turtles.Failure:
		var failed []string
		for _, x := range res.Tests {
			if x.Outcome == turtles.TestFailed {
				failed = append(failed, x.Name)
			}
		}
		if why := quarantined(t, failed); why != "" {
			outcome.Class, outcome.Verdict, outcome.Reason = turtles.Success, turtles.VerdictFlake, why
			logf(out, "triage: %s", why)
			return
		}
		var logR io.Reader
		if rc, err := out.contents(ctx); err != nil {
			log.Warn("read the log back for triage; searching the artifacts only", "err", err)
		} else {
			defer rc.Close()
			logR = rc
		}
		res.Triage = b.triage(ctx, t, ws, logR, failed, outcome, out.Scrubber(), log)
		if len(res.Triage) > 0 {
			logf(out, "triage: %s", outcome.Reason)
		}
	}
}
