// Package cli is keyhole's command line (SPEC §9): `serve`, and commands
// that are clients of a node's admin API (secrets, proxies, rules, agents,
// tokens, admin tokens, logs, audit verification).
//
// Every command reads its connection from KEYHOLE_ADDR (or --addr) and
// KEYHOLE_ADMIN_TOKEN (or the node's admin-token file); the admin token is
// never taken from a flag, so it stays out of process listings and shell
// history. Output is a human table by default and the API's JSON with
// --json. Strings that come from the API are printed with control
// characters escaped, so a logged path cannot inject terminal escapes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyhole-gw/keyhole/internal/server"
	"github.com/keyhole-gw/keyhole/internal/version"
)

// Main runs the CLI and returns the exit code: 0 on success, 1 on an error
// (and when `audit verify` finds a broken chain), 2 on a usage error.
func Main(args []string) int {
	root := NewRoot()
	root.SetArgs(args)
	return execute(context.Background(), root)
}

// NewRoot builds the command tree, reading the environment of the process.
func NewRoot() *cobra.Command { return newRoot(os.Getenv) }

// app is what every API command shares: the global flags and the
// environment (injectable for tests).
type app struct {
	getenv func(string) string
	addr   string // --addr
	json   bool   // --json
}

const rootLong = `keyhole lets AI agents call third-party APIs without holding the API keys.

` + "`keyhole serve`" + ` runs a node. Every other command is a client of a node's admin API:

  KEYHOLE_ADDR         the admin listener, e.g. http://127.0.0.1:8081 (a bare host:port
                       works too; default http://127.0.0.1:8081); --addr overrides it
  KEYHOLE_ADMIN_TOKEN  an admin token; default: the admin-token file in $KEYHOLE_DATA_DIR
                       or ./keyhole-data, which a node writes on its first start.
                       Never taken from a flag (process listings, shell history).

Output is a table for people; --json prints the API's JSON for scripts.`

const rootExample = `  # secure a new API in three commands
  printf %s "$STRIPE_KEY" | keyhole secret set stripe-key
  keyhole proxy create stripe --upstream https://api.stripe.com --auth bearer \
          --secret stripe-key --allow 'GET /v1/customers/**'
  keyhole agent create billing-bot && keyhole token issue billing-bot --proxy stripe --ttl 24h`

func newRoot(getenv func(string) string) *cobra.Command {
	a := &app{getenv: getenv}
	root := &cobra.Command{
		Use:           "keyhole",
		Short:         "A gateway that lets AI agents call APIs without holding the API keys",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&a.addr, "addr", "", "admin API base URL or host:port (overrides KEYHOLE_ADDR; default "+DefaultAddr+")")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print the API's JSON (indented) instead of a table, for scripts")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErr(c, err) })
	root.CompletionOptions.HiddenDefaultCmd = true

	root.AddCommand(server.Command())
	root.AddCommand(&cobra.Command{
		Use:     "version",
		Short:   "Print keyhole's version",
		Long:    "Print the version of this keyhole binary.",
		Example: "  keyhole version",
		Args:    noArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "keyhole", version.String())
		},
	})
	root.AddCommand(a.secretCmd(), a.proxyCmd(), a.ruleCmd(), a.agentCmd(), a.tokenCmd(),
		a.adminTokenCmd(), a.logsCmd(), a.auditCmd(), a.applyCmd())
	root.AddCommand(a.caCmd()) // forward-proxy mode's CA (ca.go)
	// Dashboard users (adminuser.go).
	root.AddCommand(a.adminUserCmd())
	return root
}

// execute runs root and turns its error into an exit code and a message on
// stderr.
func execute(ctx context.Context, root *cobra.Command) int {
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	stderr := root.ErrOrStderr()
	var ex *exitError
	var ue *usageError
	switch {
	case errors.As(err, &ex):
		return ex.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "keyhole: %s\nRun '%s --help' for usage.\n", ue.err, ue.cmd)
		return 2
	case cobraUsage(err) && cmd != nil:
		fmt.Fprintf(stderr, "keyhole: %s\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return 2
	case errors.Is(err, context.Canceled):
		return 130
	}
	fmt.Fprintln(stderr, "keyhole:", err)
	return 1
}

// cobraUsage recognises the usage errors cobra itself returns (they carry
// no type): unknown commands and failed flag-group checks.
func cobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "required flag(s)", "if any flags in the group",
		"at least one of the flags in the group", "none of the flags in the group"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// exitError ends the CLI with a code, its message already printed (audit
// verify finding a broken chain).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// usageError is a wrong argument or flag: the message says which and where
// the help is.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func usageErr(c *cobra.Command, err error) error {
	return &usageError{cmd: c.CommandPath(), err: err}
}

func usagef(c *cobra.Command, format string, a ...any) error {
	return usageErr(c, fmt.Errorf(format, a...))
}

// exactArgs checks the argument count and names the arguments in its error.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		want := strings.Join(names, " ")
		switch {
		case len(args) < len(names):
			return usagef(c, "%s needs %s (missing %s)", c.CommandPath(), want, strings.Join(names[len(args):], " "))
		default:
			// The extra arguments are not repeated: one may be a secret
			// typed where it does not belong.
			return usagef(c, "%s takes %s (got %d arguments)", c.CommandPath(), want, len(args))
		}
	}
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usagef(c, "%s takes no arguments (got %d)", c.CommandPath(), len(args))
}

// group is a command that only holds subcommands: alone it prints its
// help; with an unknown subcommand it is a usage error (cobra would print
// the help and exit 0).
func group(use, short, long, example string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			if c.Name() == "secret" {
				// `keyhole secret sk_live_…` must not print the value back.
				return usagef(c, "unknown subcommand for %s", c.CommandPath())
			}
			return usagef(c, "unknown command %s for %s", clean(clip(args[0], 40)), c.CommandPath())
		},
	}
	g.AddCommand(subs...)
	return g
}

// client connects to the node named by --addr / KEYHOLE_ADDR with the admin
// token of KEYHOLE_ADMIN_TOKEN or the admin-token file.
func (a *app) client() (*client, error) {
	addr, from := a.addr, "--addr"
	if addr == "" {
		addr, from = a.getenv("KEYHOLE_ADDR"), "KEYHOLE_ADDR"
		if strings.TrimSpace(addr) == "" {
			from = "the default address"
		}
	}
	base, err := normalizeAddr(addr)
	if err != nil {
		if from == "--addr" {
			err = errors.New(strings.Replace(err.Error(), "KEYHOLE_ADDR", "--addr", 1))
		}
		return nil, err
	}
	tok, src, err := adminToken(a.getenv)
	if err != nil {
		return nil, err
	}
	return newClient(base, tok, src, from), nil
}

// out writes the API's JSON with --json, else runs human.
func (a *app) out(w io.Writer, raw []byte, human func() error) error {
	if a.json {
		return printJSON(w, raw)
	}
	return human()
}
