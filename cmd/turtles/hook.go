package main

import (
	"os"

	"github.com/spf13/cobra"
)

func hookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Receive forge webhooks and queue plan tasks, for turtles on RabbitMQ",
		Long: `hook runs only the webhook receiver (/hook/github, or /hook/gitlab with
--forge gitlab), /metrics and /healthz: it checks each delivery's signature (GitLab:
its token) with the webhook secret and publishes a plan task
to --queue. It needs no forge token. A publish that fails or takes longer
than --webhook-publish-timeout (the broker is down) answers 503, so the
forge can deliver again.

Delivery IDs and the SHA-256 of each body are remembered in the state
database (--database) so that a redelivered webhook, or a payload replayed
under a new delivery ID, is not queued twice. With --database
postgres://..., run as many hooks as you like behind a load balancer: they
share what they remember. When the database is away, webhooks are answered
503 as when the broker is, never 2xx for a delivery that was not recorded.
Unsigned bodies are bounded by --http-read-timeout and --webhook-body-budget.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			return runHook(s)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "listen", "queue", "pool", "lease", "max-deliveries", "webhook-secret-file",
		"bot-name", "log-level", "log-format")
	addForgeFlags(cmd.Flags(), "forge")
	addHTTPFlags(cmd.Flags())
	addOptions(cmd.Flags(), stateFlags...)
	return cmd
}

// hookParts: the webhook receiver alone. It always gives the receiver
// the inbox, when the backend has one: whether the reporter has a gate it
// cannot know, and the reporter takes every request.
var hookParts = spec{
	need: []partID{partQueue, partState, partDeliveries, partReceiver, partHTTP},
	may:  []partID{partInbox},
}

func runHook(s Settings) error {
	log := newLogger(s, os.Stderr)
	ctx, again, stop := signals()
	defer stop()
	sys, err := openSystem(s, log, hookParts)
	if err != nil {
		return err
	}
	defer sys.Close()
	rcv := sys.Receiver.Get()
	log.Info("turtles hook receiving", "version", buildVersion(), "listen", s.Listen, "queue", redactQueue(s.Queue),
		"database", describeDatabase(s.Database), "webhook", "/hook/"+rcv.name, "webhook_secret", rcv.secretPath, "pool", s.Pool)
	return sys.run(ctx, again)
}
