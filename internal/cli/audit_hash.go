package cli

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

// auditHashCmd is `keyhole audit hash`: the value comes from stdin, never
// from an argument (process listings, shell history), like a secret's.
func (a *app) auditHashCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash",
		Short: "Print what the audit log stores for a value under redact_mode hmac (value from stdin)",
		Long: `Print the hash that a proxy with capture.redact_mode hmac stores in the
audit log in place of a value it redacts ("hmac-sha256:" and 32 hex digits,
a keyed HMAC under a key derived from the node's master key), so that the
records that carried a value you know can be found:

  keyhole logs --search HASH --since 7d

The value is read from stdin (one trailing newline is dropped), never from an
argument. Values are hashed as the audit log saw them: a JSON string field
as its text, a form field or query parameter URL-decoded, a credential
header without its scheme ("Bearer"), a secret or token as it appeared.

Roles admin and auditor. Each call is an audit record (who asked, not for
what value). A hash lets its holder test guesses of a value: for values
with little entropy (a PIN, a short password) keep redact_mode mask.`,
		Example: `  printf %s "$CARD_NUMBER" | keyhole audit hash
  keyhole logs --search "$(printf %s "$CARD_NUMBER" | keyhole audit hash 2>/dev/null)" --since 7d`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				// The arguments are not repeated: one is probably the value.
				return usagef(c, "%s reads the value from stdin, never from an argument (it would stay in shell history):\n"+
					"  printf %%s \"$VALUE\" | %s", c.CommandPath(), c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			in := c.InOrStdin()
			if isTerminal(in) {
				return fmt.Errorf("the value is read from stdin, and stdin is a terminal (keyhole will not echo it as you type).\n"+
					"Pipe it in:   printf %%s \"$VALUE\" | %s", c.CommandPath())
			}
			val, err := readValue(in, "stdin")
			if err != nil {
				return err
			}
			if val == "" {
				return errors.New("the value is empty; pipe in the value to hash")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var res struct {
				Hash string `json:"hash"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/audit/hash", nil, map[string]string{"value": val}, &res)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			return a.out(w, raw, func() error {
				if res.Hash == "" {
					return errors.New("the admin API's answer holds no hash")
				}
				// The hash alone on stdout, for $(…); the hint on stderr.
				if _, err := fmt.Fprintln(w, clean(res.Hash)); err != nil {
					return err
				}
				fmt.Fprintf(c.ErrOrStderr(), "find the records that carried it: keyhole logs --search %s --since 24h\n", clean(res.Hash))
				return nil
			})
		},
	}
}
