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
	files, err := filepath.Glob(filepath.Join("testdata", "github", "*.payload.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		event, _, _ := strings.Cut(filepath.Base(file), ".")
		f.Add(event, body)
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
