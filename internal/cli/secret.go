package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// maxSecretValue bounds a secret value read from stdin or a file.
const maxSecretValue = 1 << 20

// valueSource is where `secret set|rotate` reads the value: stdin (the
// default), a file or an environment variable; never a flag value or an
// argument, which would end up in process listings and shell history.
type valueSource struct {
	file   string
	env    string
	object bool
}

func (v *valueSource) bind(c *cobra.Command) {
	c.Flags().StringVar(&v.file, "from-file", "", "read the value from this file (\"-\" for stdin); one trailing newline is dropped")
	c.Flags().StringVar(&v.env, "from-env", "", "read the value from this environment variable (taken exactly)")
	c.Flags().BoolVar(&v.object, "object", false, "the value is a JSON object of string fields, e.g. {\"client_id\":\"…\",\"client_secret\":\"…\"}")
	c.MarkFlagsMutuallyExclusive("from-file", "from-env")
}

// read returns the value to send: a JSON string, or with --object the JSON
// object. Error messages never quote the value.
func (v *valueSource) read(c *cobra.Command, a *app, name string) (json.RawMessage, error) {
	var val string
	switch {
	case v.env != "":
		val = a.getenv(v.env)
		if val == "" {
			// The name is not repeated: it may be a value given by mistake.
			return nil, errors.New("the environment variable named by --from-env is empty or not set")
		}
	case v.file != "" && v.file != "-":
		f, err := os.Open(v.file)
		if err != nil {
			return nil, fmt.Errorf("cannot read the file named by --from-file: %v", pathErr(err))
		}
		defer f.Close()
		if val, err = readValue(f, "the --from-file file"); err != nil {
			return nil, err
		}
	default:
		in := c.InOrStdin()
		if isTerminal(in) {
			return nil, fmt.Errorf("the value of %s is read from stdin, and stdin is a terminal (keyhole will not echo a secret as you type it).\n"+
				"Pipe it in:   printf %%s \"$KEY\" | %s %s\n"+
				"or use:       --from-file PATH   or   --from-env VAR", clean(name), c.CommandPath(), clean(name))
		}
		var err error
		if val, err = readValue(in, "stdin"); err != nil {
			return nil, err
		}
	}
	if val == "" {
		return nil, errors.New("the value is empty; nothing was stored")
	}
	if v.object {
		var obj map[string]string
		dec := json.NewDecoder(strings.NewReader(val))
		if err := dec.Decode(&obj); err != nil || dec.More() || obj == nil {
			return nil, errors.New("with --object the value must be one JSON object whose fields are strings, e.g. {\"username\":\"…\",\"password\":\"…\"}")
		}
		if len(obj) == 0 {
			return nil, errors.New("with --object the value must have at least one field")
		}
		return json.Marshal(obj)
	}
	return json.Marshal(val)
}

// readValue reads a value, dropping one trailing newline ("\n" or "\r\n"),
// so that `echo "$KEY" |` and a file saved by an editor store the same
// value as `printf %s "$KEY" |`.
func readValue(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecretValue+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the value from %s: %v", clean(what), pathErr(err))
	}
	if len(b) > maxSecretValue {
		return "", fmt.Errorf("the value from %s is larger than %d bytes", clean(what), maxSecretValue)
	}
	s := string(b)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else if strings.HasSuffix(s, "\n") {
		s = s[:len(s)-1]
	}
	return s, nil
}

// isTerminal reports whether r is a character device (a terminal), without
// golang.org/x/term.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// secretMeta is GET /secrets/{name} (SPEC §7.1): metadata only.
type secretMeta struct {
	Name      string   `json:"name"`
	Version   int      `json:"version"`
	Kind      string   `json:"kind"`
	Fields    []string `json:"fields"`
	CreatedAt *string  `json:"created_at"`
	RotatedAt *string  `json:"rotated_at"`
	UsedBy    []string `json:"used_by"`
}

func (a *app) secretCmd() *cobra.Command {
	return group("secret", "Store, rotate and list upstream credentials (values are write-only)",
		`Secrets are upstream credentials (API keys, OAuth clients, AWS keys), stored
encrypted in keyhole's vault and versioned. They are write-only: no command,
API call or log ever shows a value again.

A value is read from stdin (the default), a file (--from-file) or an
environment variable (--from-env); never from a flag or an argument, which
would end up in process listings and shell history.`,
		`  printf %s "$STRIPE_KEY" | keyhole secret set stripe-key
  keyhole secret set github-app --object --from-file github-app.json
  printf %s "$NEW_KEY" | keyhole secret rotate stripe-key
  keyhole secret ls`,
		a.secretSetCmd(), a.secretRotateCmd(), a.secretLsCmd(), a.secretShowCmd(), a.secretRmCmd(),
		a.secretConnectCmd())
}

func (a *app) secretSetCmd() *cobra.Command {
	var src valueSource
	c := &cobra.Command{
		Use:   "set NAME",
		Short: "Store a new secret (value from stdin, --from-file or --from-env)",
		Long: `Store a new secret as version 1. The value is read from stdin unless
--from-file or --from-env says otherwise; one trailing newline of stdin or a
file is dropped, so printf and echo store the same value.

A plain value is a string, used as {{secret}} in a proxy's auth. With
--object the value is a JSON object of string fields, used as
{{secret.FIELD}} (basic auth needs username and password; OAuth needs
client_id and client_secret; AWS needs access_key_id and secret_access_key).

To change the value of an existing secret, use ` + "`keyhole secret rotate`" + `.`,
		Example: `  printf %s "$STRIPE_KEY" | keyhole secret set stripe-key
  keyhole secret set openai-key --from-env OPENAI_API_KEY
  keyhole secret set jira --object --from-file jira.json     # {"username":"…","password":"…"}`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			val, err := src.read(c, a, name)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var m secretMeta
			raw, err := cl.getJSON(c.Context(), "POST", "/api/v1/secrets", nil, map[string]any{"name": name, "value": val}, &m)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Code == "conflict" {
					ae.Hint = fmt.Sprintf("to store a new value, rotate it: printf %%s \"$KEY\" | keyhole secret rotate %s", clean(name))
				}
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "secret %s version %d stored\n", clean(m.Name), m.Version)
				return err
			})
		},
	}
	src.bind(c)
	return c
}

func (a *app) secretRotateCmd() *cobra.Command {
	var src valueSource
	c := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Store a new version of a secret, used at once by every proxy",
		Long: `Rotate a secret: store a new value as the next version. Every proxy that
uses the secret sends the new value from the moment this command returns
(and on every other node within a second); no agent needs a change.

The value is read as for ` + "`keyhole secret set`" + `: stdin by default, --from-file or
--from-env. A secret that proxies read fields of must keep those fields.`,
		Example: `  printf %s "$NEW_STRIPE_KEY" | keyhole secret rotate stripe-key
  keyhole secret rotate stripe-key --from-file /run/secrets/stripe`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			val, err := src.read(c, a, name)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var m secretMeta
			raw, err := cl.getJSON(c.Context(), "PUT", "/api/v1/secrets/"+seg(name), nil, map[string]any{"value": val}, &m)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				used := ""
				if len(m.UsedBy) > 0 {
					used = " (now used by " + clean(strings.Join(m.UsedBy, ", ")) + ")"
				}
				_, err := fmt.Fprintf(c.OutOrStdout(), "secret %s rotated to version %d%s\n", clean(m.Name), m.Version, used)
				return err
			})
		},
	}
	src.bind(c)
	return c
}

func (a *app) secretLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List secrets (metadata only, never values)",
		Long:    "List every secret with its version, kind (string or object), field names, the proxies that use it and when it was last rotated.",
		Example: "  keyhole secret ls\n  keyhole secret ls --json | jq -r '.secrets[].name'",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Secrets []secretMeta `json:"secrets"`
			}
			raw, err := cl.getJSON(c.Context(), "GET", "/api/v1/secrets", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				now := time.Now()
				t := newTable(c.OutOrStdout(), "NAME", "VERSION", "KIND", "FIELDS", "USED BY", "ROTATED")
				for _, s := range resp.Secrets {
					t.row(s.Name, fmt.Sprint(s.Version), s.Kind, list(s.Fields, "-"), list(s.UsedBy, "-"), rel(now, s.RotatedAt))
				}
				return t.flush()
			})
		},
	}
}

func (a *app) secretShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a secret's metadata (never its value)",
		Long:    "Show a secret's version, kind, field names, the proxies that use it, and when it was created and rotated. The value is never shown.",
		Example: "  keyhole secret show stripe-key",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var s secretMeta
			raw, err := cl.getJSON(c.Context(), "GET", "/api/v1/secrets/"+seg(args[0]), nil, nil, &s)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				now := time.Now()
				t := newTable(c.OutOrStdout())
				t.row("name:", s.Name)
				t.row("version:", fmt.Sprint(s.Version))
				t.row("kind:", s.Kind)
				t.row("fields:", list(s.Fields, "-"))
				t.row("used by:", list(s.UsedBy, "-"))
				t.row("created:", rel(now, s.CreatedAt))
				t.row("rotated:", rel(now, s.RotatedAt))
				return t.flush()
			})
		},
	}
}

func (a *app) secretRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Delete a secret (refused while a proxy uses it)",
		Long:    "Delete a secret and every version of it. The node refuses while a proxy uses the secret: change or delete those proxies first.",
		Example: "  keyhole secret rm old-stripe-key",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			raw, err := cl.do(c.Context(), "DELETE", "/api/v1/secrets/"+seg(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "secret %s deleted\n", clean(args[0]))
				return err
			})
		},
	}
}
