package main

import (
	"os"

	"github.com/spf13/cobra"
)

func botCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bot",
		Short: "Take tasks from the queue and run them",
		Long: `bot is a worker: it claims tasks of its pool, runs each in a fresh checkout,
streams the log to the store, emits events for the reporter and acks only
when the result is stored. Bots hold no forge credentials.

Several bots on one host can share the embedded queue file of a
'turtles serve' (--queue, --store-dir); across hosts, use RabbitMQ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(s, os.Stderr)
			ctx, again, stop := signals()
			defer stop()
			sys, err := openSystem(s, log, botParts)
			if err != nil {
				return err
			}
			defer sys.Close()
			if s.HealthListen != "" {
				stopHealth, _, err := serveHealth(s, sys, log)
				if err != nil {
					return err
				}
				defer stopHealth()
			}
			log.Info("bot running", "name", s.BotName, "pool", s.Pool, "slots", s.Slots, "queue", redactQueue(s.Queue))
			return sys.run(ctx, again)
		},
	}
	addFlags(cmd.Flags(), "data-dir", "public-url", "queue", "lease", "max-deliveries", "retry-delays", "bot-name", "pool", "slots",
		"work-dir", "store-dir", "store", "s3-credentials-file", "images-dir", "secrets-dir", "known-issues", "drain-timeout", "log-level", "log-format", "bot-heartbeat", "health-listen")
	// Accepted so that older command lines still start; links are built
	// by the process that serves the pages.
	cmd.Flags().MarkDeprecated("public-url", "the reporter (or serve) builds log links from its own --public-url; bots ignore it")
	// Plans' spawns are deduped in the state database, shared with the
	// hooks and reporters.
	addOptions(cmd.Flags(), "database")
	addImageFlags(cmd.Flags())
	addOptions(cmd.Flags(), vmFlags...)
	addIsolationFlags(cmd.Flags(), true)
	addOptions(cmd.Flags(), gitMirrorBotFlags...)
	return cmd
}

// botParts: a worker, which holds no forge credentials and serves nothing.
var botParts = spec{need: []partID{partQueue, partEvents, partStore, partBot}}
