package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

const matrixYAML = `contexts:
  - name: unit
    command: make check
  - name: docs
    command: make docs
    run_if_changed: ["docs/**", "**/*.md"]
  - name: vm
    command: make vm
    skip_if_only_changed: ["docs/**", "*.md"]
  - name: rhel
    command: make rhel
    branches:
      pull_request: ["rhel-*"]
      push: ["rhel-*", main]
  - name: nightly
    command: make slow
    auto: false
  - name: deploy
    command: make deploy
    secrets: [DEPLOY_TOKEN, QUAY_PASSWORD]
    branches:
      pull_request: []
      push: [main]
`

func TestSelect(t *testing.T) {
	c, err := Parse(".turtles.yaml", []byte(matrixYAML))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ev      Event
		want    []string
		skipped []string // by path filters
	}{
		{name: "pull request to main, changes unknown", ev: Event{PullRequest: true, Branch: "main"},
			want: []string{"unit", "docs", "vm"}},
		{name: "pull request to rhel-9 touching code", ev: Event{PullRequest: true, Branch: "rhel-9", Changed: []string{"src/a.go"}},
			want: []string{"unit", "vm", "rhel"}, skipped: []string{"docs"}},
		{name: "pull request touching only docs", ev: Event{PullRequest: true, Branch: "main", Changed: []string{"docs/a/b.txt", "README.md"}},
			want: []string{"unit", "docs"}, skipped: []string{"vm"}},
		{name: "nested markdown is not top-level *.md", ev: Event{PullRequest: true, Branch: "main", Changed: []string{"sub/README.md"}},
			want: []string{"unit", "docs", "vm"}},
		{name: "push to main", ev: Event{Branch: "main"}, want: []string{"unit", "docs", "vm", "rhel", "deploy"}},
		{name: "push to a feature branch", ev: Event{Branch: "feature/x"}, want: []string{"unit", "docs", "vm"}},
		{name: "branch unknown: branch rules do not filter", ev: Event{PullRequest: true},
			want: []string{"unit", "docs", "vm", "rhel"}},
		{name: "empty change list", ev: Event{Branch: "feature", Changed: []string{}}, want: []string{"unit", "vm"}, skipped: []string{"docs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, x := range c.Select(tt.ev) {
				got = append(got, x.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Select(%+v) (-want +got):\n%s", tt.ev, diff)
			}
			var skipped []string
			for _, x := range c.Contexts {
				if x.SkippedByPaths(tt.ev) {
					skipped = append(skipped, x.Name)
				}
			}
			if diff := cmp.Diff(tt.skipped, skipped); diff != "" {
				t.Errorf("skipped by paths for %+v (-want +got):\n%s", tt.ev, diff)
			}
		})
	}
	if x, _ := c.Find("deploy"); cmp.Diff([]string{"DEPLOY_TOKEN", "QUAY_PASSWORD"}, x.Task(planTask()).Secrets) != "" {
		t.Errorf("deploy task secrets %v", x.Task(planTask()).Secrets)
	}
}

func TestMatrixErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{name: "bad secret", yaml: "contexts:\n  - name: a\n    command: x\n    secrets: [\"no-dashes\"]\n",
			want: `.turtles.yaml:2: context 1: "a": bad secret name "no-dashes": use letters, digits and _ (at most 64), not starting with a digit`},
		{name: "duplicate secret", yaml: "contexts:\n  - name: a\n    command: x\n    secrets: [A, A]\n",
			want: `.turtles.yaml:2: context 1: "a": secret "A" listed twice`},
		{name: "empty glob", yaml: "contexts:\n  - name: a\n    command: x\n    run_if_changed: [\"\"]\n",
			want: `.turtles.yaml:2: context 1: "a": run_if_changed: bad glob "": want 1 to 200 characters`},
		{name: "both path filters", yaml: "contexts:\n  - name: a\n    command: x\n    run_if_changed: [a]\n    skip_if_only_changed: [b]\n",
			want: `.turtles.yaml:2: context 1: "a": run_if_changed and skip_if_only_changed exclude each other`},
		{name: "unknown branch key", yaml: "contexts:\n  - name: a\n    command: x\n    branches:\n      pulls: [main]\n",
			want: `.turtles.yaml:5: unknown key "pulls"`},
		{name: "auto is a bool", yaml: "contexts:\n  - name: a\n    command: x\n    auto: sometimes\n",
			want: `.turtles.yaml:4: cannot unmarshal !!str ` + "`sometimes`" + ` into bool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(".turtles.yaml", []byte(tt.yaml))
			var e *Error
			if !errors.As(err, &e) || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func planTask() turtles.Task {
	return turtles.Task{Version: turtles.TaskVersion, Kind: turtles.KindPlan, Context: turtles.PlanContext,
		Repo: turtles.Repo{Name: "o/r", CloneURL: "x"}, SHA: "3f786850e387550fdab836ed7e6dc881de23001b",
		Pool: turtles.DefaultPool, Attempt: 1, Trusted: true}
}
