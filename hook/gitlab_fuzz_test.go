package hook

import (
	"testing"

	"github.com/turtles-ci/turtles"
)

// FuzzParseGitLab checks that no payload, however odd, panics the GitLab
// parser or gets an invalid task or gate request onto the queue. Our
// fixtures are the seeds, under each event they could be sent as.
func FuzzParseGitLab(f *testing.F) {
	for _, p := range fixturePayloads(f, "gitlab") {
		f.Add(gitlabEvent[p.kind], p.body)
		f.Add(GitLabSystem, p.body)
	}
	f.Add(GitLabNote, []byte(`{"object_attributes":{"noteable_type":"MergeRequest","note":"/retest"},"merge_request":{"iid":1},"user":{"username":"u"}}`))
	f.Add(GitLabMergeRequest, []byte(`{"object_attributes":{"action":"update","oldrev":"x","iid":-1}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		p, err := parseGitLab(event, body, "", testNow)
		if err != nil && !p.empty() {
			t.Errorf("parseGitLab returned work %+v with error %v", p, err)
		}
		if len(p.tasks) > 1 || len(p.requests) > 1 {
			t.Errorf("parseGitLab returned %d tasks and %d requests, want at most one", len(p.tasks), len(p.requests))
		}
		for _, task := range p.tasks {
			if err := task.Validate(); err != nil {
				t.Errorf("invalid task %+v: %v", task, err)
			}
			if task.Kind != turtles.KindPlan || !task.Trusted || task.PR != 0 {
				t.Errorf("task %+v: want a trusted push plan", task)
			}
		}
		for _, r := range p.requests {
			probe := planTask(r.Repo, zeroSHA, r.Pool, testNow)
			if probe.Validate() != nil || r.PR <= 0 || r.User == "" || (r.SHA == "") == (len(r.Commands) == 0) {
				t.Errorf("bad gate request %+v", r)
			}
			if r.SHA != "" && !turtles.IsSHA(r.SHA) {
				t.Errorf("gate request with bad SHA %q", r.SHA)
			}
		}
		if c := p.cancel; c != nil && (!turtles.IsSHA(c.sha) || c.pr <= 0) {
			t.Errorf("bad cancel %+v", c)
		}
	})
}
