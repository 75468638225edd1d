package server

import (
	"os"

	"github.com/spf13/cobra"
)

// Command is `keyhole serve`.
func Command() *cobra.Command {
	var cfg Config
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a keyhole node: the gateway for agents and the admin API",
		Long: `Run one keyhole node (SPEC §2).

The gateway listener takes agents' requests (http://HOST/{proxy}/…); the admin
listener serves the admin API (/api/v1), the dashboard and /metrics. With no
flags keyhole runs on the embedded SQLite store in ./keyhole-data, generating
a master key and an admin token there on first start.

Every flag can also be set with the environment variable named in its help.
Secrets: the master key comes from KEYHOLE_MASTER_KEY or --master-key-file;
the bootstrap admin token from KEYHOLE_ADMIN_TOKEN (never from a flag, so it
stays out of process listings and shell history).

On SIGTERM or SIGINT keyhole stops accepting, lets in-flight requests finish
(up to --shutdown-timeout), flushes the audit log and exits 0.`,
		Example: `  keyhole serve
  keyhole serve --listen 0.0.0.0:8080 --admin-listen 127.0.0.1:8081
  KEYHOLE_MASTER_KEY=$(cat /run/secrets/keyhole-master) keyhole serve --store sqlite:///var/lib/keyhole/keyhole.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			return Run(cmd.Context(), cfg, os.Stdout, os.Stderr)
		},
	}
	cfg.Bind(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}
