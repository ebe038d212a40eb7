package main

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run webhook receiver, queue, bot, reporter, log pages, API and metrics in one process",
		Long: `serve runs all of turtles in one process, on an embedded queue, storing
everything under --data-dir. With no flags it works: it generates a webhook
secret in the data dir and, without a GitHub token, logs the statuses it
would set. What it remembers (webhook deliveries, the history of tasks
the pages and API show, the final status of each attempt) is in the state
database, DATA-DIR/state.db unless --database says otherwise.

Ctrl-C (SIGINT) or SIGTERM drains: no new task starts, running tasks finish
(up to --drain-timeout), a second Ctrl-C puts them back on the queue at once;
then the statuses of what ran are reported, and the pages stop.
Nothing is lost: what did not finish runs again at the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return serve(s)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "public-url", "queue", "lease", "max-deliveries", "retry-delays", "bot-name", "pool",
		"slots", "work-dir", "store-dir", "store", "s3-credentials-file", "images-dir", "secrets-dir", "known-issues", "drain-timeout", "github-api", "github-token-file", "webhook-secret-file",
		"log-level", "log-format", "bot-heartbeat")
	addTrustFlags(cmd.Flags())
	addIsolationFlags(cmd.Flags(), true)
	addImageFlags(cmd.Flags())
	addOptions(cmd.Flags(), vmFlags...)
	addForgeFlags(cmd.Flags())
	addHTTPFlags(cmd.Flags())
	addOptions(cmd.Flags(), stateFlags...)
	addOptions(cmd.Flags(), loginFlags...)
	addOptions(cmd.Flags(), gitMirrorBotFlags...)
	return cmd
}

// serveParts: everything, in one process. The gate needs forge
// credentials; the scanner --scan-repos too.
var serveParts = spec{
	need: []partID{partQueue, partEvents, partState, partDeliveries, partStore, partResults, partForge, partReporter, partBot, partReceiver, partHTTP},
	may:  []partID{partInbox, partGate, partScanner},
}

func serve(s Settings) error {
	log := newLogger(s, os.Stderr)
	ctx, again, stopSignals := signals()
	defer stopSignals()
	sys, err := openSystem(s, log, serveParts)
	if err != nil {
		return err
	}
	defer sys.Close()
	rcv := sys.Receiver.Get()
	log.Info("turtles serving", "version", buildVersion(), "url", s.PublicURL, "webhook", s.PublicURL+"/hook/"+rcv.name,
		"webhook_secret", rcv.secretPath, "data_dir", s.DataDir,
		"database", describeDatabase(s.Database), "slots", s.Slots, "pool", s.Pool)
	announcePublicURL(s, log)
	return sys.run(ctx, again)
}

// publicURLFile, in the data dir, holds the public URL of the last serve
// or reporter that used it, so that `turtles submit` there can link.
const publicURLFile = "public-url"

// announcePublicURL warns when the links were made from a wildcard listen
// address and the host's name, and records the URL for `turtles submit`.
func announcePublicURL(s Settings, log *slog.Logger) {
	if s.PublicURLHostname {
		log.Warn("log links in statuses and the API use "+s.PublicURL+", made from --listen "+s.Listen+
			" and this host's name; if people or the forge reach the pages at another address, set it with --public-url, TURTLES_PUBLIC_URL or public_url in the --config file",
			"url", s.PublicURL)
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, publicURLFile), []byte(s.PublicURL+"\n"), 0o644); err != nil {
		log.Warn("cannot record the public URL for turtles submit", "err", err)
	}
}
