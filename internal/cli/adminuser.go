package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// `keyhole admin-user`: dashboard users, who sign in with a name and a
// password instead of an admin token. Each user is an admin identity of
// its own (an admin token whose value nobody ever sees, named
// "user:NAME"), so roles, revocation and the audit log work as for tokens.

func (a *app) adminUserCmd() *cobra.Command {
	return group("admin-user", "Create, list and delete dashboard users (name and password)",
		`Dashboard users sign in to the dashboard (the admin listener's /) with a name
and a password instead of an admin token. Each has a role: admin (everything),
auditor (reads everything, payloads included, changes nothing) or viewer
(reads configuration and log metadata, never payloads, changes nothing).

The password is read from stdin (never from a flag or an argument), sent to
the node once, and stored only as a PBKDF2-SHA256 hash (600,000 iterations).
A user is an admin identity: revoking its admin token (keyhole admin-token
revoke) or deleting the user signs it out everywhere at once.`,
		`  printf %s "$PASSWORD" | keyhole admin-user create alice --role admin
  keyhole admin-user ls
  keyhole admin-user rm alice`,
		a.adminUserCreateCmd(), a.adminUserLsCmd(), a.adminUserRmCmd())
}

func (a *app) adminUserCreateCmd() *cobra.Command {
	var role, ttl, fromFile, fromEnv string
	c := &cobra.Command{
		Use:   "create NAME --role admin|auditor|viewer",
		Short: "Create a dashboard user (password from stdin)",
		Long: `Create a dashboard user. The password (12 characters or more) is read from
stdin, a file (--from-file) or an environment variable (--from-env); one
trailing newline is dropped. --ttl limits how long the user may sign in
(default: no expiry).`,
		Example: `  printf %s "$PASSWORD" | keyhole admin-user create alice --role admin
  keyhole admin-user create bob --role viewer --from-env BOB_PASSWORD --ttl 720h`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			switch role {
			case "admin", "auditor", "viewer":
			default:
				return usagef(c, "--role is admin, auditor or viewer")
			}
			pw, err := readPassword(c, a, fromFile, fromEnv)
			if err != nil {
				return err
			}
			body := map[string]any{"name": args[0], "role": role, "password": pw}
			if ttl != "" {
				body["ttl"] = ttlValue(ttl)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			out, err := cl.do(c.Context(), http.MethodPost, "/api/v1/users", nil, body)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), out, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "user %s created (role %s); they sign in at the dashboard with their password\n", clean(args[0]), role)
				return err
			})
		},
	}
	c.Flags().StringVar(&role, "role", "", "admin, auditor or viewer (required)")
	c.Flags().StringVar(&ttl, "ttl", "", "how long the user may sign in: a Go duration (720h) or days (30d); default no expiry")
	c.Flags().StringVar(&fromFile, "from-file", "", "read the password from this file (\"-\" for stdin)")
	c.Flags().StringVar(&fromEnv, "from-env", "", "read the password from this environment variable")
	c.MarkFlagsMutuallyExclusive("from-file", "from-env")
	c.MarkFlagRequired("role")
	return c
}

// readPassword reads a password from --from-env, --from-file or stdin
// (never a flag value or an argument); error messages never quote it.
func readPassword(c *cobra.Command, a *app, file, env string) (string, error) {
	var pw string
	switch {
	case env != "":
		if pw = a.getenv(env); pw == "" {
			return "", errors.New("the environment variable named by --from-env is empty or not set")
		}
	case file != "" && file != "-":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("cannot read the file named by --from-file: %v", pathErr(err))
		}
		defer f.Close()
		if pw, err = readValue(f, "the --from-file file"); err != nil {
			return "", err
		}
	default:
		in := c.InOrStdin()
		if isTerminal(in) {
			return "", fmt.Errorf("the password is read from stdin, and stdin is a terminal (keyhole will not echo it as you type).\n"+
				"Pipe it in:   printf %%s \"$PASSWORD\" | %s NAME --role …\n"+
				"or use:       --from-file PATH   or   --from-env VAR", c.CommandPath())
		}
		var err error
		if pw, err = readValue(in, "stdin"); err != nil {
			return "", err
		}
	}
	if pw == "" {
		return "", errors.New("the password is empty; no user was created")
	}
	return pw, nil
}

type userView struct {
	Name         string  `json:"name"`
	Role         string  `json:"role"`
	AdminTokenID string  `json:"admin_token_id"`
	CreatedAt    *string `json:"created_at"`
	ExpiresAt    *string `json:"expires_at"`
	State        string  `json:"state"`
}

func (a *app) adminUserLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List dashboard users",
		Long:    "List dashboard users: name, role, state, their admin identity's id and when they were created.",
		Example: "  keyhole admin-user ls",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Users []userView `json:"users"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/users", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				now := time.Now()
				t := newTable(c.OutOrStdout(), "NAME", "ROLE", "STATE", "ADMIN TOKEN", "CREATED", "EXPIRES")
				for _, u := range resp.Users {
					t.row(u.Name, u.Role, u.State, u.AdminTokenID, rel(now, u.CreatedAt), rel(now, u.ExpiresAt))
				}
				return t.flush()
			})
		},
	}
}

func (a *app) adminUserRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Delete a dashboard user (signs them out)",
		Long:    "Delete a dashboard user: their admin identity is revoked, which ends their sessions at once.",
		Example: "  keyhole admin-user rm alice",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			raw, err := cl.do(c.Context(), http.MethodDelete, "/api/v1/users/"+seg(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "user %s deleted\n", clean(args[0]))
				return err
			})
		},
	}
}
