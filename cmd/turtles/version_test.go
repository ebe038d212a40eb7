package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWriteVersion: the report names the version, the commit (from -X
// main.commit, else the go command's VCS stamp) and every module, a
// replaced one by its replacement.
func TestWriteVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/turtles-ci/turtles", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/spf13/cobra", Version: "v1.10.2", Sum: "h1:abc="},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v2.0.0", Sum: "h1:def="}},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}},
	}
	goLine := "go " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name, version, commit string
		bi                    *debug.BuildInfo
		want                  []string
	}{
		{name: "release build", version: "v1.2.3", commit: "feedface", bi: bi, want: []string{
			"turtles v1.2.3", "commit feedface", goLine, "module github.com/turtles-ci/turtles (devel)",
			"dep github.com/spf13/cobra v1.10.2 h1:abc=", "dep example.com/new v2.0.0 h1:def="}},
		{name: "VCS stamp", bi: bi, want: []string{
			"turtles 0123456789ab-dirty", "commit 0123456789abcdef-dirty", goLine, "module github.com/turtles-ci/turtles (devel)",
			"dep github.com/spf13/cobra v1.10.2 h1:abc=", "dep example.com/new v2.0.0 h1:def="}},
		{name: "no build information", version: "v1", want: []string{"turtles v1", "commit unknown", goLine}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			version, commit = tc.version, tc.commit
			var b strings.Builder
			writeVersion(&b, tc.bi)
			got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if tc.name != "VCS stamp" {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("report (-want +got):\n%s", diff)
				}
				return
			}
			// buildVersion reads the running binary's stamp, not bi's.
			if diff := cmp.Diff(tc.want[1:], got[1:]); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}
