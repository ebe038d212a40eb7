package bot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/junit"
	"github.com/turtles-ci/turtles/scrub"
	"github.com/turtles-ci/turtles/store"
	"github.com/turtles-ci/turtles/tap"
)

// maxTests bounds the per-test results of one attempt: result.json and
// the finished event must stay small enough to pass through the queue.
const maxTests = 20000

// testTracker parses TAP out of the log as it is written.
type testTracker struct {
	mu sync.Mutex
	p  *tap.Parser
}

func newTestTracker() *testTracker { return &testTracker{p: tap.NewParser()} }

func (t *testTracker) Write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Write(p)
}

func (t *testTracker) results() []turtles.TestResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []turtles.TestResult
	for _, x := range t.p.Report().Tests {
		out = append(out, turtles.TestResult{
			Name:     x.Name,
			Outcome:  x.Outcome,
			Duration: x.Duration.Seconds(),
			Line:     x.Line,
			Source:   "log",
			Message:  x.Reason,
		})
	}
	return out
}

// distinctNames renames the second and later tests of one name in an
// attempt to "name (2)", "name (3)", ...: the same description in two
// TAP streams, or twice in one, is two tests, and the results database
// keeps each test's history (runs, failures, flakes) by name.
func distinctNames(tests []turtles.TestResult) {
	taken := make(map[string]bool, len(tests))
	for _, t := range tests {
		taken[t.Name] = true
	}
	seen := make(map[string]int, len(tests))
	for i, t := range tests {
		n := seen[t.Name] + 1
		seen[t.Name] = n
		if n == 1 {
			continue
		}
		name := fmt.Sprintf("%s (%d)", t.Name, n)
		for taken[name] {
			n++
			name = fmt.Sprintf("%s (%d)", t.Name, n)
		}
		seen[t.Name] = n
		taken[name] = true
		tests[i].Name = name
	}
}

// junitResults reads the JUnit reports among the artifacts in dir.
func junitResults(dir string, scr *scrub.Scrubber) []turtles.TestResult {
	var out []turtles.TestResult
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(strings.ToLower(path), ".xml") {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > junit.MaxSize {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		cases, err := junit.Parse(f)
		if errors.Is(err, junit.ErrNotJUnit) || err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		src := scr.String(store.ArtifactsName + filepath.ToSlash(rel))
		for _, c := range cases {
			out = append(out, turtles.TestResult{
				Name:     scr.String(c.Name),
				Outcome:  c.Outcome,
				Duration: c.Duration.Seconds(),
				Source:   src,
				Message:  scr.String(c.Message),
			})
		}
		return nil
	})
	return out
}

// addResults puts the per-test results of the attempt and the artifact
// listing into its result, both scrubbed of secrets.
// Called after the artifacts are uploaded, before result.json is written.
func (b *Bot) addResults(ctx context.Context, prefix, artifacts string, out *liveLog, res *turtles.Result) {
	// The command has ended: its last lines go out now, not after the
	// result and the whole log are stored.
	out.flushEnd()
	tests := append(out.tests.results(), junitResults(artifacts, out.Scrubber())...)
	distinctNames(tests)
	if len(tests) > maxTests {
		tests = tests[:maxTests]
	}
	res.Tests = tests
	list, err := b.cfg.Store.List(ctx, prefix+store.ArtifactsName)
	if err != nil {
		b.log.Warn("list artifacts", "prefix", prefix, "err", err)
		return
	}
	for _, info := range list {
		res.Artifacts = append(res.Artifacts, turtles.Artifact{
			Name:        out.Scrubber().String(strings.TrimPrefix(info.Key, prefix)),
			Size:        info.Size,
			ContentType: info.ContentType,
		})
	}
}
