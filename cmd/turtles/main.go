// Command turtles is the one binary of turtles: `serve` runs everything in
// one process on embedded defaults; `bot`, `submit`, `run` and `version`
// are the parts a user calls on their own. Flags, config files and the
// wiring of packages live here and nowhere else.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// version and commit are set at build time with -ldflags
// "-X main.version=... -X main.commit=..." (make build, make release).
var version, commit = "", ""

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "turtles:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "turtles",
		Short: "Continuous integration that tests software on real operating systems",
		Long: `turtles receives forge webhooks, queues a task per test context, runs each
task on a bot in a fresh checkout, streams its log and reports commit statuses.

  turtles serve          everything in one process, embedded queue, no external service
  turtles bot            a worker that takes tasks from the queue
  turtles submit         queue a task by hand
  turtles run CONTEXT    run one context of a local checkout as a bot would
  turtles status         show tasks of a running turtles, wait for them`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), botCmd(), hookCmd(), reporterCmd(), submitCmd(), runCmd(), statusCmd(), versionCmd())
	root.AddCommand(vmCmd(), clusterCmd(), imageCmd(), registryCmd(), debugCmd())
	root.AddCommand(scanCmd(), configCmd())
	root.AddCommand(resultsCmd(), storeCmd())
	root.AddCommand(triageCmd())
	root.AddCommand(gitMirrorCmd())
	return root
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(12, len(s.Value))]
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "devel"
}

func newLogger(s Settings, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(s.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// signals returns a context cancelled on the first SIGINT/SIGTERM and a
// channel that receives the second, for "stop now".
func signals() (context.Context, <-chan os.Signal, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	again := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		s := <-ch
		again <- s
	}()
	return ctx, again, func() { signal.Stop(ch); cancel() }
}
