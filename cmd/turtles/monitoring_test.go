package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

const (
	dashboardsDir = "../../deploy/grafana"
	monitoringDoc = "../../docs/monitoring.md"
)

// exported returns the names of the metrics turtles exports: those of
// serve, built as `turtles serve` builds it, once with each forge (the
// webhook metric's name is the forge's), with forge credentials (the
// rate-limit gauges come with them). A hook or reporter exports a part
// of these; a bot none.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, forge := range []string{forgeGitHub, forgeGitLab} {
		s := defaults()
		s.DataDir, s.Listen, s.Forge = t.TempDir(), "127.0.0.1:0", forge
		token := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(token, []byte("a-token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.GitHubTokenFile, s.GitLabTokenFile = token, token
		s.fill()
		if err := s.validate(); err != nil {
			t.Fatal(err)
		}
		sys, err := openSystem(s, slog.New(slog.NewTextHandler(io.Discard, nil)), serveParts)
		if err != nil {
			t.Fatalf("serve's system with %s: %v", forge, err)
		}
		for _, d := range sys.reg.descs() {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			names[m[1]] = true
		}
		sys.Close()
	}
	return names
}

// promIdent finds the identifiers of a PromQL expression whose strings
// were taken out; turtles' metrics and recording rules are those that
// start with "turtles".
var (
	promString = regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'|` + "`[^`]*`")
	promIdent  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

func turtlesNames(expr string) []string {
	var out []string
	for _, id := range promIdent.FindAllString(promString.ReplaceAllString(expr, `""`), -1) {
		if strings.HasPrefix(id, "turtles") {
			out = append(out, id)
		}
	}
	return out
}

// known reports whether name is exported, a series of an exported
// histogram, or recorded by a rule.
func known(name string, exported, recorded map[string]bool) bool {
	if exported[name] || recorded[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
			return true
		}
	}
	return false
}

// TestDashboardsAndRulesUseExportedMetrics: every metric the Prometheus
// rules and the Grafana dashboards read is one turtles exports, or one
// the rules record, so that no panel or alert watches a name that never
// comes; and docs/monitoring.md lists exactly what turtles exports.
func TestDashboardsAndRulesUseExportedMetrics(t *testing.T) {
	exp := exported(t)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Alert  string `yaml:"alert"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	exprs := map[string]string{} // where -> expression
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			exprs[rulesFile+" "+r.Record+r.Alert] = r.Expr
		}
	}
	dashboards, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards in %s: %v", dashboardsDir, err)
	}
	for _, path := range dashboards {
		for where, expr := range dashboardExprs(t, path) {
			exprs[path+" "+where] = expr
		}
	}
	used := map[string]bool{}
	for where, expr := range exprs {
		names := turtlesNames(expr)
		if len(names) == 0 && !strings.Contains(expr, "up{") {
			t.Errorf("%s: no turtles metric in %q", where, expr)
		}
		for _, name := range names {
			used[name] = true
			if !known(name, exp, recorded) {
				t.Errorf("%s reads %s, which turtles does not export and no rule records", where, name)
			}
		}
	}
	for _, must := range []string{"turtles_queue_wait_seconds_bucket", "turtles_pool_bots_alive", "turtles_tasks_finished_total",
		"turtles_webhook_deliveries_total", "turtles_forge_rate_limit_remaining", "turtles_disk_free_bytes", "turtles_store_errors_total"} {
		if !used[must] {
			t.Errorf("neither the rules nor the dashboards read %s", must)
		}
	}

	doc, err := os.ReadFile(monitoringDoc)
	if err != nil {
		t.Fatal(err)
	}
	var documented, want []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(turtles_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
	}
	for name := range exp {
		if strings.HasPrefix(name, "turtles_") {
			want = append(want, name)
		}
	}
	slices.Sort(documented)
	slices.Sort(want)
	if diff := cmp.Diff(want, documented); diff != "" {
		t.Errorf("metrics in the table of %s (-exported +documented):\n%s", monitoringDoc, diff)
	}
}

// dashboardExprs returns the PromQL of a Grafana dashboard: its panels'
// targets (in rows too) and its query variables, by where they are.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				out[p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			json.Unmarshal(v.Query, &q.Query) // an older dashboard's plain string
		}
		out["variable "+v.Name] = q.Query
	}
	return out
}
