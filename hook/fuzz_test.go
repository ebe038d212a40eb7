package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles"
)

// FuzzParseGitHub checks that no payload, however odd, panics the parser or
// gets an invalid task onto the queue. Seeds live in
// testdata/fuzz/FuzzParseGitHub; our fixtures are added too.
func FuzzParseGitHub(f *testing.F) {
	for _, p := range fixturePayloads(f, "github") {
		f.Add(p.kind, p.body)
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		tasks, err := ParseGitHub(event, body, "", testNow)
		if err != nil && tasks != nil {
			t.Errorf("ParseGitHub returned tasks %v with error %v", tasks, err)
		}
		for _, task := range tasks {
			if err := task.Validate(); err != nil {
				t.Errorf("ParseGitHub returned invalid task %+v: %v", task, err)
			}
			if task.Kind != turtles.KindPlan || task.Context != turtles.PlanContext || !task.Created.Equal(testNow) {
				t.Errorf("ParseGitHub returned %+v, want a plan task created at %v", task, testNow)
			}
		}
		p, perr := parseGitHub(event, body, "", testNow)
		for _, r := range p.requests {
			probe := planTask(r.Repo, zeroSHA, r.Pool, testNow)
			if perr != nil || probe.Validate() != nil || r.PR <= 0 || (r.SHA == "") == (len(r.Commands) == 0) {
				t.Errorf("parseGitHub returned bad gate request %+v (err %v)", r, perr)
			}
		}
		if len(tasks) > 1 {
			t.Errorf("ParseGitHub returned %d tasks, want at most one per payload", len(tasks))
		}
	})
}

// fixturePayload is one of our webhook fixtures, testdata/FORGE/KIND.*.payload.json.
type fixturePayload struct {
	kind string // the file name up to its first dot: the event or hook kind
	body []byte
}

// fixturePayloads reads a forge's fixtures, to seed its fuzzer.
func fixturePayloads(f *testing.F, forge string) []fixturePayload {
	files, err := filepath.Glob(filepath.Join("testdata", forge, "*.payload.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures in testdata/%s: %v", forge, err)
	}
	var ps []fixturePayload
	for _, file := range files {
		ps = append(ps, readFixture(f, forge, filepath.Base(file)))
	}
	return ps
}

// readFixture reads testdata/FORGE/NAME.
func readFixture(tb testing.TB, forge, name string) fixturePayload {
	tb.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", forge, name))
	if err != nil {
		tb.Fatal(err)
	}
	kind, _, _ := strings.Cut(name, ".")
	return fixturePayload{kind: kind, body: body}
}
