package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// Retries of failed tests (`retries:` of a context, turtles.Task.Retries):
// a test task whose tests failed goes back to the queue like an
// infrastructure failure, as its next attempt on the same commit, while
// its attempt number is at most Retries. Each attempt keeps its own log
// and result under its own prefix. An attempt that passes after a failed
// one is a flake: it ends as a success whose reason says so, and the
// per-test results of both attempts are what `turtles results flakes`
// counts.

// retriesFailure reports whether outcome, the end of the delivery'th
// delivery of an attempt of t, is a test failure to run again: one
// within Retries, with a delivery left.
func (b *Bot) retriesFailure(t turtles.Task, delivery int, outcome turtles.Outcome) bool {
	return t.Kind == turtles.KindTest && outcome.Class == turtles.Failure && t.Attempt <= t.Retries &&
		delivery < b.cfg.MaxDeliveries
}

// maxFlakeResult bounds the earlier result.json read for a flake.
const maxFlakeResult = 64 << 20

// earlierFailure returns, for an attempt of t that passed, the reason
// that says an earlier attempt of the same commit failed its tests, or ""
// when none did (or the earlier results cannot be read: a pass is then
// reported as a plain pass).
func (b *Bot) earlierFailure(ctx context.Context, t turtles.Task) string {
	if t.Kind != turtles.KindTest || t.Retries == 0 || t.Attempt < 2 {
		return ""
	}
	for a := t.Attempt - 1; a >= 1; a-- {
		prev := t
		prev.Attempt = a
		res, err := b.readResult(ctx, store.AttemptPrefix(prev)+store.ResultName)
		if err != nil {
			b.log.Debug("read an earlier attempt's result", "task", t.Key(), "attempt", a, "err", err)
			continue
		}
		if res.Outcome.Class != turtles.Failure {
			continue
		}
		var failed []string
		for _, x := range res.Tests {
			if x.Outcome == turtles.TestFailed {
				failed = append(failed, x.Name)
			}
		}
		what := ""
		switch {
		case len(failed) > 3:
			what = fmt.Sprintf(" (%s and %d more)", strings.Join(failed[:3], ", "), len(failed)-3)
		case len(failed) > 0:
			what = " (" + strings.Join(failed, ", ") + ")"
		}
		return fmt.Sprintf("Flaky: attempt %d failed%s, attempt %d passed", a, what, t.Attempt)
	}
	return ""
}

func (b *Bot) readResult(ctx context.Context, key string) (turtles.Result, error) {
	rc, _, err := b.cfg.Store.Get(ctx, key)
	if err != nil {
		return turtles.Result{}, err
	}
	defer rc.Close()
	var res turtles.Result
	if err := json.NewDecoder(io.LimitReader(rc, maxFlakeResult)).Decode(&res); err != nil {
		return turtles.Result{}, fmt.Errorf("decode %s: %w", key, err)
	}
	return res, nil
}

// quarantined returns the reason for a failed attempt of t whose failed
// tests are all on the repository's quarantine list (config.Quarantine),
// or "" when one is not, none failed by name, or t is not trusted: a
// change must not quarantine its own failures.
func quarantined(t turtles.Task, failed []string) string {
	if !t.Trusted || len(t.Quarantine) == 0 || len(failed) == 0 {
		return ""
	}
	for _, name := range failed {
		if !slices.ContainsFunc(t.Quarantine, func(g string) bool { ok, _ := path.Match(g, name); return ok }) {
			return ""
		}
	}
	what := strings.Join(failed[:min(len(failed), 3)], ", ")
	if len(failed) > 3 {
		what += fmt.Sprintf(" and %d more", len(failed)-3)
	}
	return "Flaky: quarantined tests failed: " + what
}
