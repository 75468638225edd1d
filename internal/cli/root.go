// Package cli is keyhole's command line (SPEC §9): `serve`, and commands
// that are clients of a node's admin API.
package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keyhole-gw/keyhole/internal/server"
	"github.com/keyhole-gw/keyhole/internal/version"
)

// Main runs the CLI and returns the exit code.
func Main(args []string) int {
	root := NewRoot()
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "keyhole:", err)
		return 1
	}
	return 0
}

// NewRoot builds the command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "keyhole",
		Short:         "A gateway that lets AI agents call APIs without holding the API keys",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddCommand(server.Command())
	root.AddCommand(&cobra.Command{Use: "version", Short: "Print keyhole's version", Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) { fmt.Fprintln(cmd.OutOrStdout(), "keyhole", version.String()) }})
	return root
}
