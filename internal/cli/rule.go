package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) ruleCmd() *cobra.Command {
	return group("rule", "Add, remove and list a proxy's rules",
		`Rules say which requests agents may make through a proxy (SPEC §5). A
matching deny rule refuses the request (403 denied_by_rule); otherwise a
matching allow rule forwards it; otherwise it is refused (403 no_rule_allows).
A rule applies to every agent unless --agent or --label narrows it, and may
carry a CEL condition over the request (--when).`,
		`  keyhole rule add stripe --allow 'GET /v1/invoices/*'
  keyhole rule add stripe --deny 'POST /v1/refunds' --name no-refunds
  keyhole rule add stripe --allow 'POST /v1/charges' --when 'request.form["amount"][0] == "100"' --rate-limit 10/m
  keyhole rule ls stripe
  keyhole rule rm stripe no-refunds`,
		a.ruleAddCmd(), a.ruleRmCmd(), a.ruleLsCmd())
}

func (a *app) ruleAddCmd() *cobra.Command {
	var allow, deny, name, when, rate string
	var agents, lbls []string
	var report bool
	c := &cobra.Command{
		Use:   "add PROXY (--allow|--deny) 'METHODS PATHS'",
		Short: "Add a rule to a proxy",
		Long: `Add one rule to a proxy; it is in effect when the command returns.

The rule is the shorthand 'METHODS PATHS': methods comma-separated or *, path
patterns comma-separated (* is one segment, ** any number of segments, zero
included); a bare pattern means every method.

Without --name the rule is named allow-N or deny-N, the first number not
taken. --when is a CEL expression that must be true (variables request.method,
request.path, request.query, request.headers, request.json, request.form,
agent.name, agent.labels, token.id). --report records what the rule would
have decided without enforcing it (reason report:… in the audit log).`,
		Example: `  keyhole rule add stripe --allow 'GET,HEAD /v1/customers/**'
  keyhole rule add stripe --deny 'DELETE /**' --name never-delete
  keyhole rule add stripe --allow 'GET /v1/customers' --when "int(request.query['limit'][0]) <= 100" --rate-limit 60/m
  keyhole rule add openai --allow 'POST /v1/chat/completions' --label team=research
  keyhole rule add stripe --deny 'POST /v1/**' --report`,
		Args: exactArgs("PROXY"),
		RunE: func(c *cobra.Command, args []string) error {
			proxy := args[0]
			effect, spec := "allow", allow
			if c.Flags().Changed("deny") {
				effect, spec = "deny", deny
			}
			r, err := shorthandRule(effect, name, spec)
			if err != nil {
				return usageErr(c, err)
			}
			r.When, r.RateLimit, r.Agents = when, rate, agents
			if report {
				r.Mode = "report"
			}
			if len(lbls) > 0 {
				if r.AgentLabels, err = pairs(lbls, "=", "--label", "team=billing"); err != nil {
					return usageErr(c, err)
				}
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			if r.Name == "" {
				var p proxyView
				if _, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/proxies/"+seg(proxy), nil, nil, &p); err != nil {
					return err
				}
				r.Name = nextRuleName(effect, p.Rules)
			}
			var p proxyView
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/proxies/"+seg(proxy)+"/rules", nil, r, &p)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				desc := list(r.Methods, "*") + " " + strings.Join(r.Paths, ",")
				_, err := fmt.Fprintf(c.OutOrStdout(), "rule %s added to proxy %s: %s %s (%s)\n",
					clean(r.Name), clean(proxy), effect, clean(desc), plural(len(p.Rules), "rule"))
				return err
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&allow, "allow", "", "an allow rule 'METHODS PATHS', e.g. 'GET /v1/customers/**'")
	fl.StringVar(&deny, "deny", "", "a deny rule 'METHODS PATHS', e.g. 'DELETE /**'")
	fl.StringVar(&name, "name", "", "the rule's name (default allow-N or deny-N)")
	fl.StringVar(&when, "when", "", "a CEL condition that must be true, e.g. \"request.json.amount <= 100\"")
	fl.StringArrayVar(&agents, "agent", nil, "only for this agent (repeatable; default every agent in scope)")
	fl.StringArrayVar(&lbls, "label", nil, "only for agents with this label k=v (repeatable; all must match)")
	fl.StringVar(&rate, "rate-limit", "", "at most N requests per agent per window: N/s, N/m or N/h")
	fl.BoolVar(&report, "report", false, "dry run: record the would-be decision, never enforce it")
	c.MarkFlagsMutuallyExclusive("allow", "deny")
	c.MarkFlagsOneRequired("allow", "deny")
	fl.SortFlags = false
	return c
}

// nextRuleName is effect-N with the smallest N not taken.
func nextRuleName(effect string, rules []ruleJSON) string {
	taken := map[string]bool{}
	for _, r := range rules {
		taken[r.Name] = true
	}
	for n := 1; ; n++ {
		if s := fmt.Sprintf("%s-%d", effect, n); !taken[s] {
			return s
		}
	}
}

func (a *app) ruleRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm PROXY RULE",
		Aliases: []string{"delete"},
		Short:   "Remove a rule from a proxy",
		Long:    "Remove one rule from a proxy, by name; it is out of effect when the command returns. A proxy without rules allows nothing.",
		Example: "  keyhole rule rm stripe allow-2",
		Args:    exactArgs("PROXY", "RULE"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var p proxyView
			raw, err := cl.getJSON(c.Context(), http.MethodDelete, "/api/v1/proxies/"+seg(args[0])+"/rules/"+seg(args[1]), nil, nil, &p)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				w := c.OutOrStdout()
				fmt.Fprintf(w, "rule %s removed from proxy %s (%s left)\n", clean(args[1]), clean(args[0]), plural(len(p.Rules), "rule"))
				if len(p.Rules) == 0 {
					fmt.Fprintf(w, "proxy %s has no rules now: it allows nothing\n", clean(args[0]))
				}
				return nil
			})
		},
	}
}

func (a *app) ruleLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls PROXY",
		Aliases: []string{"list"},
		Short:   "List a proxy's rules",
		Long:    "List a proxy's rules with their effect, methods, paths, agents, condition and rate limit. --json prints {\"rules\":[…]} as the API holds them.",
		Example: "  keyhole rule ls stripe",
		Args:    exactArgs("PROXY"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var p struct {
				Rules json.RawMessage `json:"rules"`
			}
			if _, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/proxies/"+seg(args[0]), nil, nil, &p); err != nil {
				return err
			}
			if len(p.Rules) == 0 || string(p.Rules) == "null" {
				p.Rules = json.RawMessage("[]")
			}
			raw, _ := json.Marshal(map[string]json.RawMessage{"rules": p.Rules})
			return a.out(c.OutOrStdout(), raw, func() error {
				var rules []ruleJSON
				if err := json.Unmarshal(p.Rules, &rules); err != nil {
					return err
				}
				if len(rules) == 0 {
					_, err := fmt.Fprintf(c.OutOrStdout(), "proxy %s has no rules: it allows nothing\n", clean(args[0]))
					return err
				}
				return printRules(c.OutOrStdout(), rules, "")
			})
		},
	}
}
