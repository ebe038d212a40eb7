package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSchemaMatchesParser keeps docs/turtles.schema.json in step with the
// parser: the schema allows exactly the keys Parse accepts.
func TestSchemaMatchesParser(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "turtles.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]any `json:"properties"`
		Defs       struct {
			Context struct {
				Properties map[string]struct {
					Properties map[string]any `json:"properties"`
				} `json:"properties"`
			} `json:"context"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	keys := func(m any) []string {
		var out []string
		for _, k := range reflect.ValueOf(m).MapKeys() {
			out = append(out, k.String())
		}
		sort.Strings(out)
		return out
	}
	if diff := cmp.Diff(yamlKeys(reflect.TypeFor[Config]()), keys(schema.Properties)); diff != "" {
		t.Errorf("top-level keys (-parser +schema):\n%s", diff)
	}
	if diff := cmp.Diff(yamlKeys(reflect.TypeFor[Context]()), keys(schema.Defs.Context.Properties)); diff != "" {
		t.Errorf("context keys (-parser +schema):\n%s", diff)
	}
	if diff := cmp.Diff(yamlKeys(reflect.TypeFor[Branches]()), keys(schema.Defs.Context.Properties["branches"].Properties)); diff != "" {
		t.Errorf("branches keys (-parser +schema):\n%s", diff)
	}
}

func yamlKeys(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out
}
