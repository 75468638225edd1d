package cli

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// agentView is an agent as the API returns it.
type agentView struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	CreatedAt *string           `json:"created_at"`
}

// tokenView is an agent token's metadata (never the token).
type tokenView struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Agent      string   `json:"agent"`
	Proxies    []string `json:"proxies"`
	CreatedAt  *string  `json:"created_at"`
	ExpiresAt  *string  `json:"expires_at"`
	RevokedAt  *string  `json:"revoked_at"`
	ParentID   *string  `json:"parent_id"`
	Depth      int      `json:"depth"`
	State      string   `json:"state"`
	LastUsedAt *string  `json:"last_used_at"`
}

func (a *app) agentCmd() *cobra.Command {
	return group("agent", "Create, list, show and delete agents",
		`An agent is an identity (a bot, a workflow, a team's assistant) with labels
that rules can select on. Agents call proxies with tokens issued to them
(`+"`keyhole token issue`"+`).`,
		`  keyhole agent create billing-bot --label team=billing
  keyhole agent ls
  keyhole agent show billing-bot`,
		a.agentCreateCmd(), a.agentLsCmd(), a.agentShowCmd(), a.agentRmCmd())
}

func (a *app) agentCreateCmd() *cobra.Command {
	var lbls []string
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an agent",
		Long:  "Create an agent. Labels (k=v) let rules apply to groups of agents (`keyhole rule add … --label team=billing`).",
		Example: `  keyhole agent create billing-bot
  keyhole agent create research-assistant --label team=research --label env=prod`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			body := map[string]any{"name": args[0]}
			if len(lbls) > 0 {
				m, err := pairs(lbls, "=", "--label", "team=billing")
				if err != nil {
					return usageErr(c, err)
				}
				body["labels"] = m
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var ag agentView
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/agents", nil, body, &ag)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "agent %s created\n", clean(ag.Name))
				return err
			})
		},
	}
	c.Flags().StringArrayVar(&lbls, "label", nil, "a label k=v (repeatable)")
	return c
}

func (a *app) agentLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List agents",
		Long:    "List every agent with its labels.",
		Example: "  keyhole agent ls",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Agents []agentView `json:"agents"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/agents", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				now := time.Now()
				t := newTable(c.OutOrStdout(), "NAME", "LABELS", "CREATED")
				for _, ag := range resp.Agents {
					t.row(ag.Name, labels(ag.Labels), rel(now, ag.CreatedAt))
				}
				return t.flush()
			})
		},
	}
}

func (a *app) agentShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show an agent and its tokens",
		Long:    "Show an agent's labels and its tokens (ids, scope, expiry, state; never the tokens themselves). --json prints the agent only.",
		Example: "  keyhole agent show billing-bot",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var ag agentView
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/agents/"+seg(args[0]), nil, nil, &ag)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(c.OutOrStdout(), raw)
			}
			var toks struct {
				Tokens []tokenView `json:"tokens"`
			}
			if _, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/agents/"+seg(args[0])+"/tokens", nil, nil, &toks); err != nil {
				return err
			}
			w := c.OutOrStdout()
			now := time.Now()
			t := newTable(w)
			t.row("agent:", ag.Name)
			t.row("labels:", labels(ag.Labels))
			t.row("created:", rel(now, ag.CreatedAt))
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintln(w)
			if len(toks.Tokens) == 0 {
				_, err := fmt.Fprintf(w, "no tokens (keyhole token issue %s --proxy PROXY)\n", clean(ag.Name))
				return err
			}
			fmt.Fprintln(w, "tokens:")
			return printTokens(w, toks.Tokens, "  ")
		},
	}
}

func (a *app) agentRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Delete an agent and revoke its tokens",
		Long:    "Delete an agent. Every token issued to it is revoked at once.",
		Example: "  keyhole agent rm billing-bot",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			raw, err := cl.do(c.Context(), http.MethodDelete, "/api/v1/agents/"+seg(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "agent %s deleted; its tokens are revoked\n", clean(args[0]))
				return err
			})
		},
	}
}

// ---- agent tokens ----

func (a *app) tokenCmd() *cobra.Command {
	return group("token", "Issue, list and revoke agents' tokens",
		`A token is what an agent presents to the gateway (Authorization: Bearer kh_…).
It is scoped to a list of proxies and may expire. keyhole shows a token once,
when it is issued, and keeps only its hash; revoking it (and every child
token it minted) takes effect at once.`,
		`  TOKEN=$(keyhole token issue billing-bot --proxy stripe --ttl 24h)
  keyhole token ls billing-bot
  keyhole token revoke tok_…`,
		a.tokenIssueCmd(), a.tokenLsCmd(), a.tokenRevokeCmd())
}

// dayTTL lets --ttl say 30d; the API takes Go durations.
var dayTTL = regexp.MustCompile(`^([0-9]{1,5})d$`)

func ttlValue(s string) string {
	if m := dayTTL.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
		var n int
		fmt.Sscan(m[1], &n)
		return fmt.Sprintf("%dh", n*24)
	}
	return s
}

func (a *app) tokenIssueCmd() *cobra.Command {
	var proxies []string
	var ttl, name string
	c := &cobra.Command{
		Use:   "issue AGENT --proxy PROXY",
		Short: "Issue a token to an agent (prints only the token)",
		Long: `Issue a token to an agent, scoped to the proxies named by --proxy. The token
is printed once, alone on stdout followed by a newline, so $(…) captures it;
keyhole keeps only its hash. --json prints the whole object (id, token,
agent, proxies, expires_at).

--ttl is a Go duration (24h, 90m) or a number of days (30d); the default is
720h; 0 issues a token that never expires.`,
		Example: `  TOKEN=$(keyhole token issue billing-bot --proxy stripe --ttl 24h)
  keyhole token issue research-assistant --proxy openai --proxy anthropic --name laptop
  keyhole token issue ci-bot --proxy github --ttl 0 --json`,
		Args: exactArgs("AGENT"),
		RunE: func(c *cobra.Command, args []string) error {
			var scope []string
			for _, p := range proxies {
				for _, s := range strings.Split(p, ",") {
					if s = strings.TrimSpace(s); s != "" {
						scope = append(scope, s)
					}
				}
			}
			if len(scope) == 0 {
				return usagef(c, "name at least one proxy the token may call: --proxy PROXY")
			}
			body := map[string]any{"proxies": scope}
			if ttl != "" {
				body["ttl"] = ttlValue(ttl)
			}
			if name != "" {
				body["name"] = name
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Token string `json:"token"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/agents/"+seg(args[0])+"/tokens", nil, body, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				if resp.Token == "" || !printable(resp.Token) {
					return fmt.Errorf("the node's answer holds no token")
				}
				_, err := fmt.Fprintln(c.OutOrStdout(), resp.Token)
				return err
			})
		},
	}
	c.Flags().StringArrayVar(&proxies, "proxy", nil, "a proxy the token may call (repeatable, or comma-separated)")
	c.Flags().StringVar(&ttl, "ttl", "", "lifetime: a Go duration (24h) or days (30d); 0 never expires (default 720h)")
	c.Flags().StringVar(&name, "name", "", "a name for the token, e.g. where it is used")
	return c
}

func (a *app) tokenLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls AGENT",
		Aliases: []string{"list"},
		Short:   "List an agent's tokens (never the tokens themselves)",
		Long:    "List an agent's tokens: id, name, proxies, expiry, state (active, expired, revoked) and when each was last used. Child tokens minted by an agent are listed too.",
		Example: "  keyhole token ls billing-bot",
		Args:    exactArgs("AGENT"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Tokens []tokenView `json:"tokens"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/agents/"+seg(args[0])+"/tokens", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error { return printTokens(c.OutOrStdout(), resp.Tokens, "") })
		},
	}
}

func printTokens(w io.Writer, toks []tokenView, indent string) error {
	now := time.Now()
	t := newTable(w, indent+"ID", "NAME", "PROXIES", "EXPIRES", "STATE", "LAST USED")
	for _, k := range toks {
		state := k.State
		if k.ParentID != nil && *k.ParentID != "" {
			state += " (child of " + *k.ParentID + ")"
		}
		t.row(indent+k.ID, k.Name, list(k.Proxies, ""), rel(now, k.ExpiresAt), state, rel(now, k.LastUsedAt))
	}
	return t.flush()
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Aliases: []string{"rm"},
		Short:   "Revoke a token and every child token it minted",
		Long:    "Revoke an agent token by id (see `keyhole token ls AGENT`), with every child token it minted. The gateway refuses it (401 token_revoked) from the moment this returns, and on every node within a second.",
		Example: "  keyhole token revoke tok_01HV…",
		Args:    exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Revoked int `json:"revoked"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodDelete, "/api/v1/tokens/"+seg(args[0]), nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				w := c.OutOrStdout()
				var err error
				switch resp.Revoked {
				case 0:
					_, err = fmt.Fprintf(w, "token %s was already revoked\n", clean(args[0]))
				case 1:
					_, err = fmt.Fprintf(w, "token %s revoked\n", clean(args[0]))
				default:
					_, err = fmt.Fprintf(w, "token %s revoked, with %s\n", clean(args[0]), plural(resp.Revoked-1, "child token"))
				}
				return err
			})
		},
	}
}

// ---- admin tokens ----

type adminTokenView struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Role      string  `json:"role"`
	CreatedAt *string `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	RevokedAt *string `json:"revoked_at"`
}

func (a *app) adminTokenCmd() *cobra.Command {
	return group("admin-token", "Issue, list and revoke admin API tokens",
		`Admin tokens (kha_…) authenticate to the admin API, the dashboard and this
CLI (KEYHOLE_ADMIN_TOKEN). Roles: admin (everything), auditor (reads
everything, payloads included, changes nothing), viewer (reads configuration
and log metadata, never payloads, changes nothing).`,
		`  keyhole admin-token issue --name alice --role admin --ttl 30d
  keyhole admin-token issue --name grafana --role viewer --ttl 0
  keyhole admin-token ls
  keyhole admin-token revoke adm_…`,
		a.adminTokenIssueCmd(), a.adminTokenLsCmd(), a.adminTokenRevokeCmd())
}

func (a *app) adminTokenIssueCmd() *cobra.Command {
	var name, role, ttl string
	c := &cobra.Command{
		Use:   "issue --name NAME --role admin|auditor|viewer",
		Short: "Issue an admin token (prints only the token)",
		Long: `Issue an admin API token. It is printed once, alone on stdout followed by a
newline; keyhole keeps only its hash. --json prints the whole object.
--ttl is a Go duration or days (30d); default 720h; 0 never expires.`,
		Example: `  export KEYHOLE_ADMIN_TOKEN=$(keyhole admin-token issue --name alice --role admin --ttl 12h)
  keyhole admin-token issue --name auditors --role auditor --json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			body := map[string]any{"name": name, "role": role}
			if ttl != "" {
				body["ttl"] = ttlValue(ttl)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Token string `json:"token"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/admin-tokens", nil, body, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				if resp.Token == "" || !printable(resp.Token) {
					return fmt.Errorf("the node's answer holds no token")
				}
				_, err := fmt.Fprintln(c.OutOrStdout(), resp.Token)
				return err
			})
		},
	}
	c.Flags().StringVar(&name, "name", "", "whose token this is (required)")
	c.Flags().StringVar(&role, "role", "", "admin, auditor or viewer (required)")
	c.Flags().StringVar(&ttl, "ttl", "", "lifetime: a Go duration (12h) or days (30d); 0 never expires (default 720h)")
	c.MarkFlagRequired("name")
	c.MarkFlagRequired("role")
	return c
}

func (a *app) adminTokenLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List admin tokens (never the tokens themselves)",
		Long:    "List admin tokens: id, name, role, when created, expiry and state.",
		Example: "  keyhole admin-token ls",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Tokens []adminTokenView `json:"admin_tokens"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/admin-tokens", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				now := time.Now()
				t := newTable(c.OutOrStdout(), "ID", "NAME", "ROLE", "CREATED", "EXPIRES", "STATE")
				for _, k := range resp.Tokens {
					state := "active"
					switch {
					case k.RevokedAt != nil:
						state = "revoked"
					case k.ExpiresAt != nil && !parseTime(*k.ExpiresAt).IsZero() && !now.Before(parseTime(*k.ExpiresAt)):
						state = "expired"
					}
					t.row(k.ID, k.Name, k.Role, rel(now, k.CreatedAt), rel(now, k.ExpiresAt), state)
				}
				return t.flush()
			})
		},
	}
}

func (a *app) adminTokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Aliases: []string{"rm"},
		Short:   "Revoke an admin token",
		Long:    "Revoke an admin token by id (see `keyhole admin-token ls`). The admin API refuses it from the moment this returns.",
		Example: "  keyhole admin-token revoke adm_01HV…",
		Args:    exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			raw, err := cl.do(c.Context(), http.MethodDelete, "/api/v1/admin-tokens/"+seg(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "admin token %s revoked\n", clean(args[0]))
				return err
			})
		},
	}
}
