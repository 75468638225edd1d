package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

func (a *app) ruleCmd() *cobra.Command {
	return group("rule", "Add, remove and list a proxy's rules",
		`Rules say which requests agents may make through a proxy (SPEC §5). A
matching deny rule refuses the request (403 denied_by_rule); otherwise a
matching allow rule forwards it; otherwise it is refused (403 no_rule_allows).
A rule applies to every agent unless --agent or --label narrows it, and may
carry a CEL condition over the request (--when). `+"`rule test`"+` shows which rule
would decide a request, and why each rule matches or not.`,
		`  keyhole rule add stripe --allow 'GET /v1/invoices/*'
  keyhole rule add stripe --deny 'POST /v1/refunds' --name no-refunds
  keyhole rule add stripe --allow 'POST /v1/charges' --when 'request.form["amount"][0] == "100"' --rate-limit 10/m
  keyhole rule ls stripe
  keyhole rule rm stripe no-refunds
  keyhole rule test stripe --agent billing-bot 'POST /v1/charges' --json '{"amount":9000}'`,
		a.ruleAddCmd(), a.ruleRmCmd(), a.ruleLsCmd(), a.ruleTestCmd())
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

// exitDenied is `rule test`'s exit status when the request would be
// refused (0: allowed, 1: an error, 2: a usage error).
const exitDenied = 3

// ruleTestView is the answer of POST /api/v1/proxies/{name}/rules/test.
type ruleTestView struct {
	Allow          bool              `json:"allow"`
	Status         int               `json:"status"`
	Reason         string            `json:"reason"`
	Rule           string            `json:"rule"`
	Message        string            `json:"message"`
	Report         []string          `json:"report"`
	Rules          []ruleResultView  `json:"rules"`
	TokenRules     []ruleResultView  `json:"token_rules"`
	RateLimit      string            `json:"rate_limit"`
	TokenRateLimit string            `json:"token_rate_limit"`
	Path           string            `json:"path"`
	Agent          string            `json:"agent"`
	AgentLabels    map[string]string `json:"agent_labels"`
}

type ruleResultView struct {
	Name   string `json:"name"`
	Effect string `json:"effect"`
	Mode   string `json:"mode"`
	Result string `json:"result"`
	Why    string `json:"why"`
}

// ruleTestBody is what `rule test` sends.
type ruleTestBody struct {
	Agent   string              `json:"agent,omitempty"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    *string             `json:"body,omitempty"`
	TokenID string              `json:"token_id,omitempty"`
}

// maxTestBody bounds --body-file (the admin API takes bodies up to 4 MiB).
const maxTestBody = 4 << 20

func (a *app) ruleTestCmd() *cobra.Command {
	var agent, jsonBody, bodyFile, query, tokenID string
	var headers []string
	var jsonOut bool
	c := &cobra.Command{
		Use:   "test PROXY 'METHOD PATH'",
		Short: "Show which rule would decide a request, and why",
		Long: `Evaluate one request against a proxy's rules without sending it: keyhole
answers what the gateway would decide (allowed, or the status and reason code
it would refuse with), which rule decides, and for every rule whether it
matched and why not ("method POST not in [GET]", "label team=billing
missing", "condition error: … (fails closed: deny matches)", …). Nothing
changes: no rate limit is consumed, nothing is forwarded or recorded, and any
admin role may run it.

The request is 'METHOD PATH' (the path after /PROXY, as the agent would send
it, optionally with ?query). The agent's labels are the stored agent's.
--json gives a JSON body (Content-Type application/json unless --header sets
one); --body-file reads the body from a file (- for stdin). A proxy whose
rules read bodies applies the gateway's body rules: strict JSON, 413 above
max_rule_body, no body on GET or HEAD. --token-id evaluates as that token
(token.id in conditions, and a child token's own rules).

Because --json here is the request body, the API's JSON answer is printed
with --json-output.

Exit status: 0 when the request would be allowed, 3 when it would be
refused, 1 on an error (2 on a usage error).`,
		Example: `  keyhole rule test stripe --agent billing-bot 'POST /v1/charges' --json '{"amount":9000}'
  keyhole rule test stripe --agent billing-bot 'GET /v1/customers?limit=500'
  keyhole rule test openai --agent research-bot 'POST /v1/chat/completions' --body-file req.json \
          --header 'Content-Type: application/json'
  keyhole rule test stripe --token-id tok_123 'DELETE /v1/customers/cus_1' --json-output`,
		Args: func(c *cobra.Command, args []string) error {
			// The global --json placed before the command takes the next
			// argument as this command's body: say so, rather than only
			// that an argument is missing.
			if len(args) != 2 && c.Flags().Changed("json") && !json.Valid([]byte(jsonBody)) {
				return usagef(c, "--json is the request body in %s, and %s is not JSON; for the API's JSON answer use --json-output",
					c.CommandPath(), clean(clip(jsonBody, 40)))
			}
			return exactArgs("PROXY", "'METHOD PATH'")(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			proxy := args[0]
			method, path, err := parseRequestLine(args[1])
			if err != nil {
				return usageErr(c, err)
			}
			if agent == "" && tokenID == "" {
				return usagef(c, "%s needs --agent (or --token-id): the agent the request would come from", c.CommandPath())
			}
			req := ruleTestBody{Agent: agent, Method: method, Path: path, Query: query, TokenID: tokenID}
			if strings.Contains(path, "?") && query != "" {
				return usagef(c, "give the query either after ? in the path or with --query, not both")
			}
			if len(headers) > 0 {
				req.Headers = map[string][]string{}
				for _, h := range headers {
					k, v, ok := strings.Cut(h, ":")
					k, v = strings.TrimSpace(k), strings.TrimSpace(v)
					if !ok || k == "" {
						return usagef(c, "--header wants 'Name: value', e.g. 'Content-Type: application/json'")
					}
					req.Headers[k] = append(req.Headers[k], v)
				}
			}
			switch {
			case c.Flags().Changed("json"):
				req.Body = &jsonBody
				if !hasHeader(req.Headers, "Content-Type") {
					if req.Headers == nil {
						req.Headers = map[string][]string{}
					}
					req.Headers["Content-Type"] = []string{"application/json"}
				}
			case bodyFile != "":
				b, err := readBodyFile(c, bodyFile)
				if err != nil {
					return err
				}
				req.Body = &b
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var v ruleTestView
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/proxies/"+seg(proxy)+"/rules/test", nil, req, &v)
			if err != nil {
				return err
			}
			if jsonOut {
				err = printJSON(c.OutOrStdout(), raw)
			} else {
				err = printRuleTest(c.OutOrStdout(), &v)
			}
			if err != nil {
				return err
			}
			if !v.Allow {
				return &exitError{code: exitDenied}
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&agent, "agent", "", "the agent the request comes from (its stored labels are used)")
	fl.StringVar(&jsonBody, "json", "", "a JSON request body, e.g. '{\"amount\":9000}' (sets Content-Type: application/json)")
	fl.StringVar(&bodyFile, "body-file", "", "read the request body from a file (- for stdin)")
	fl.StringArrayVar(&headers, "header", nil, "a request header 'Name: value' (repeatable)")
	fl.StringVar(&query, "query", "", "the raw query string, e.g. 'limit=3&starting_after=cus_1'")
	fl.StringVar(&tokenID, "token-id", "", "evaluate as this token (token.id; a child token's own rules apply too)")
	fl.BoolVar(&jsonOut, "json-output", false, "print the API's JSON answer (--json is the request body here)")
	c.MarkFlagsMutuallyExclusive("json", "body-file")
	fl.SortFlags = false
	return c
}

// parseRequestLine reads 'METHOD PATH'.
func parseRequestLine(s string) (method, path string, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return "", "", fmt.Errorf("the request is 'METHOD PATH', e.g. 'POST /v1/charges' (got %s)", clean(clip(s, 80)))
	}
	if !strings.HasPrefix(f[1], "/") {
		return "", "", fmt.Errorf("the path %s must start with / (it is the path after /PROXY)", clean(clip(f[1], 80)))
	}
	return strings.ToUpper(f[0]), f[1], nil
}

func hasHeader(h map[string][]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func readBodyFile(c *cobra.Command, name string) (string, error) {
	var r io.Reader
	if name == "-" {
		r = c.InOrStdin()
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("cannot read the body file %s: %v", clean(name), pathErr(err))
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTestBody+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the body file %s: %v", clean(name), pathErr(err))
	}
	if len(b) > maxTestBody {
		return "", fmt.Errorf("the body file %s is larger than %d bytes", clean(name), maxTestBody)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("the body file %s is not UTF-8 text; a rule test takes text bodies (JSON, forms)", clean(name))
	}
	return string(b), nil
}

// printRuleTest writes the decision, then one line per rule.
func printRuleTest(w io.Writer, v *ruleTestView) error {
	if v.Allow {
		fmt.Fprintf(w, "allowed (%s)", clean(v.Reason))
		if v.RateLimit != "" {
			fmt.Fprintf(w, "; rate limit %s (a test does not consume it)", clean(v.RateLimit))
		}
		if v.TokenRateLimit != "" {
			fmt.Fprintf(w, "; token rule rate limit %s", clean(v.TokenRateLimit))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "refused: %d %s", v.Status, clean(v.Reason))
		if v.Message != "" {
			fmt.Fprintf(w, ": %s", clean(v.Message))
		}
		fmt.Fprintln(w)
	}
	who := clean(v.Agent)
	if l := labels(v.AgentLabels); l != "" {
		who += " (" + clean(l) + ")"
	}
	if v.Path != "" {
		fmt.Fprintf(w, "agent %s, path %s\n", who, clean(v.Path))
	} else {
		fmt.Fprintf(w, "agent %s\n", who)
	}
	for _, r := range v.Report {
		fmt.Fprintf(w, "report: %s\n", clean(r))
	}
	ran := v.Allow || strings.HasPrefix(v.Reason, "denied_by_rule") || strings.HasPrefix(v.Reason, "no_rule_allows")
	switch {
	case !ran:
		_, err := fmt.Fprintln(w, "(refused before the rules run)")
		return err
	case len(v.Rules) == 0 && len(v.TokenRules) == 0:
		_, err := fmt.Fprintln(w, "(the proxy has no rules: it allows nothing)")
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "RULE", "EFFECT", "MODE", "RESULT", "WHY")
	for _, r := range v.Rules {
		name := r.Name
		if r.Name == v.Rule {
			name = "* " + name
		}
		t.row(name, r.Effect, r.Mode, r.Result, r.Why)
	}
	for _, r := range v.TokenRules {
		t.row("token:"+r.Name, r.Effect, r.Mode, r.Result, r.Why)
	}
	return t.flush()
}
