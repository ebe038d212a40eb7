// Package prometheus_test checks the Prometheus rules beside it with the
// real promtool (Debian's prometheus package, scripts/deps.sh): the rules
// load, and the unit tests of turtles.rules.test.yml pass. It also holds
// the rules to the rest of the repository: every alert is tested there
// and explained in docs/monitoring.md, where its runbook link points.
// cmd/turtles's tests check that every metric the rules read is one
// turtles exports, and run them in a real Prometheus.
package prometheus_test

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	rulesFile = "turtles.rules.yml"
	testsFile = "turtles.rules.test.yml"
	docsFile  = "../../docs/monitoring.md"
)

// promtool returns the path of promtool. Missing, it fails the full run
// and skips under -short.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not installed (Debian package prometheus; scripts/deps.sh installs it)")
		}
		t.Fatal("promtool not installed: run scripts/deps.sh (Debian package prometheus)")
	}
	return p
}

func TestCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestRuleUnitTests(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", testsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules said no SUCCESS:\n%s", out)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type testFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEveryAlertTestedAndDocumented: each alert has a test in which it
// fires, a severity of page or ticket, a summary, and a runbook link to
// its own section of docs/monitoring.md.
func TestEveryAlertTestedAndDocumented(t *testing.T) {
	var rules ruleFile
	var tests testFile
	readYAML(t, rulesFile, &rules)
	readYAML(t, testsFile, &tests)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			}
		}
	}
	docs, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(docs), -1) {
		headings[anchor(m[1])] = true
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if !fires[r.Alert] {
				t.Errorf("alert %s: no test in %s where it fires", r.Alert, testsFile)
			}
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("alert %s: severity %q, want page or ticket", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", r.Alert)
			}
			want := "docs/monitoring.md#" + strings.ToLower(r.Alert)
			if r.Annotations["runbook"] != want {
				t.Errorf("alert %s: runbook %q, want %q", r.Alert, r.Annotations["runbook"], want)
			}
			if !headings[strings.ToLower(r.Alert)] {
				t.Errorf("alert %s: no section \"%s\" in %s", r.Alert, r.Alert, docsFile)
			}
		}
	}
	for name := range fires {
		if !slices.Contains(alerts, name) {
			t.Errorf("%s tests alert %s, which %s does not have", testsFile, name, rulesFile)
		}
	}
	if len(alerts) < 9 {
		t.Errorf("%d alerts, want the 9 or more of docs/monitoring.md", len(alerts))
	}
}

// anchor is the link anchor GitHub makes of a heading.
func anchor(heading string) string {
	h := strings.ToLower(strings.TrimSpace(heading))
	h = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}
