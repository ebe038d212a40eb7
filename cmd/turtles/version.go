package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of turtles, its commit and the modules it was built from",
		Long: `version prints what this binary is: its version, the commit it was built
from, the Go toolchain and every module compiled into it with its version
and checksum (as 'go version -m' does), so that a bug report or an audit
names exactly what ran.`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			bi, _ := debug.ReadBuildInfo()
			writeVersion(cmd.OutOrStdout(), bi)
		},
	}
}

// writeVersion writes the version report of a binary whose build
// information is bi (nil when the binary has none).
func writeVersion(w io.Writer, bi *debug.BuildInfo) {
	fmt.Fprintln(w, "turtles", buildVersion())
	fmt.Fprintln(w, "commit", buildCommit(bi))
	fmt.Fprintln(w, "go", runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	if bi == nil {
		return
	}
	fmt.Fprintln(w, "module", bi.Main.Path, bi.Main.Version)
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		fmt.Fprintln(w, "dep", m.Path, m.Version, m.Sum)
	}
}

// buildCommit is the commit the binary was built from: -X main.commit
// (release builds, which have no .git to stamp), else what the go command
// stamped (vcs.revision, with -dirty for a modified tree), else unknown.
func buildCommit(bi *debug.BuildInfo) string {
	if commit != "" {
		return commit
	}
	if bi != nil {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	return "unknown"
}
