package main

import (
	"os"

	"github.com/spf13/cobra"
)

func reporterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reporter",
		Short: "Consume task events: record results, set commit statuses, serve the API, log pages and metrics",
		Long: `reporter consumes the events that bots and the queue emit on --queue,
records them in the state database (--database) and sets commit statuses on
the forge (it is the only process that needs the forge token). It also runs the trust
gate on what the hook could not decide alone (pull requests of untrusted
authors, comment commands such as /ok-to-test), which the hook passes
through the queue's inbox. It serves the JSON API
(/api/v1/...), the log pages of --store-dir and /metrics on --listen.

With RabbitMQ, run several reporters on one --database postgres://...: one
consumes at a time (single active consumer), the others stand by and serve
the same history. The final status of each task attempt is recorded there
before it is posted, so that it is posted once, whichever reporter handles
it; one that takes over posts what the one before left unposted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return runReporter(s)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "public-url", "queue", "pool", "lease", "max-deliveries", "store-dir", "store", "s3-credentials-file",
		"github-api", "github-token-file", "bot-name", "log-level", "log-format")
	addTrustFlags(cmd.Flags())
	addIsolationFlags(cmd.Flags(), false)
	addForgeFlags(cmd.Flags())
	addHTTPFlags(cmd.Flags(), "http-read-timeout", "http-idle-timeout")
	addOptions(cmd.Flags(), stateFlags...)
	addOptions(cmd.Flags(), loginFlags...)
	return cmd
}

// reporterParts: the part that holds the forge token. It takes the
// requests in the inbox whether or not it has a gate (without forge
// lookups it drops them, with a warning), since a hook puts them there
// without knowing.
var reporterParts = spec{
	need: []partID{partQueue, partEvents, partState, partStore, partResults, partForge, partReporter, partHTTP},
	may:  []partID{partInbox, partGate, partScanner},
}

func runReporter(s Settings) error {
	log := newLogger(s, os.Stderr)
	ctx, again, stop := signals()
	defer stop()
	sys, err := openSystem(s, log, reporterParts)
	if err != nil {
		return err
	}
	defer sys.Close()
	log.Info("turtles reporter running", "version", buildVersion(), "url", s.PublicURL, "queue", redactQueue(s.Queue),
		"database", describeDatabase(s.Database))
	announcePublicURL(s, log)
	return sys.run(ctx, again)
}
