// Package grafana_test checks the Grafana dashboards beside it: each is
// a dashboard Grafana can import (unique panel IDs, panels inside the
// grid and not on top of each other, every query on the dashboard's
// Prometheus variable, described for the people reading it). That each
// query reads only metrics turtles exports is checked in cmd/turtles,
// which builds the registry as turtles serve does
// (TestDashboardsAndRulesUseExportedMetrics), and that each runs in a
// real Prometheus by cmd/turtles's TestPrometheusNoBotAlive.
package grafana_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

type gridPos struct{ H, W, X, Y int }

type panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	GridPos     gridPos         `json:"gridPos"`
	Datasource  json.RawMessage `json:"datasource"`
	Targets     []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// panelTypes are Grafana's built-in panels the dashboards may use.
var panelTypes = map[string]bool{"row": true, "timeseries": true, "stat": true, "heatmap": true, "piechart": true, "table": true, "gauge": true, "bargauge": true}

const datasource = `{"type":"prometheus","uid":"${datasource}"}`

func TestDashboards(t *testing.T) {
	paths, err := filepath.Glob("*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var d dashboard
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
			if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
				t.Errorf("uid %q, title %q, schemaVersion %d: want both set and a schema of Grafana 8 or newer", d.UID, d.Title, d.SchemaVersion)
			}
			hasDS := false
			for _, v := range d.Templating.List {
				if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
					hasDS = true
				}
			}
			if !hasDS {
				t.Error("no datasource variable of type prometheus: the dashboard would be bound to one Grafana's data source")
			}
			checkPanels(t, d.Panels)
		})
	}
}

func checkPanels(t *testing.T, top []panel) {
	ids := map[int]string{}
	var placed []panel
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d, taken by %q (or zero)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			g := p.GridPos
			if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
			}
			for _, q := range placed {
				if overlap(p.GridPos, q.GridPos) {
					t.Errorf("panels %q and %q overlap: %+v, %+v", p.Title, q.Title, p.GridPos, q.GridPos)
				}
			}
			placed = append(placed, p)
			if !panelTypes[p.Type] {
				t.Errorf("panel %q: type %q is not a built-in panel", p.Title, p.Type)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" || p.Description == "" {
				t.Errorf("panel %d: title %q, description %q: want both", p.ID, p.Title, p.Description)
			}
			if compact(t, p.Datasource) != datasource {
				t.Errorf("panel %q: datasource %s, want %s", p.Title, p.Datasource, datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no query", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || compact(t, tg.Datasource) != datasource {
					t.Errorf("panel %q: target %q (%q, datasource %s): want an expression, a refId of its own, and %s",
						p.Title, tg.RefID, tg.Expr, tg.Datasource, datasource)
				}
				refs[tg.RefID] = true
			}
		}
	}
	walk(top)
}

func overlap(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

func compact(t *testing.T, raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
