package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyhole-gw/keyhole/internal/policy"
)

// ruleJSON is a rule as the admin API takes and returns it (SPEC §5, §7.1).
// Omitted fields take the API's defaults (every agent, every method,
// enforce).
type ruleJSON struct {
	Name            string            `json:"name"`
	Effect          string            `json:"effect"`
	Mode            string            `json:"mode,omitempty"`
	Agents          []string          `json:"agents,omitempty"`
	AgentLabels     map[string]string `json:"agent_labels,omitempty"`
	Methods         []string          `json:"methods,omitempty"`
	Paths           []string          `json:"paths"`
	When            string            `json:"when,omitempty"`
	RateLimit       string            `json:"rate_limit,omitempty"`
	ResponseFilters json.RawMessage   `json:"response_filters,omitempty"`
}

// shorthandRule turns the CLI shorthand "METHODS PATHS" (SPEC §5: methods
// comma-separated or "*", paths comma-separated, a bare path meaning every
// method) into a rule.
func shorthandRule(effect, name, s string) (ruleJSON, error) {
	methods, paths, err := policy.ParseShorthand(s)
	if err != nil {
		return ruleJSON{}, fmt.Errorf("--%s %s: %v", effect, clean(s), err)
	}
	return ruleJSON{Name: name, Effect: effect, Methods: methods, Paths: paths}, nil
}

// shorthandRules turns repeated --allow and --deny flags into rules named
// allow-1, allow-2, …, deny-1, …, in the order given.
func shorthandRules(allow, deny []string) ([]ruleJSON, error) {
	var out []ruleJSON
	for _, set := range []struct {
		effect string
		specs  []string
	}{{"allow", allow}, {"deny", deny}} {
		for i, s := range set.specs {
			r, err := shorthandRule(set.effect, fmt.Sprintf("%s-%d", set.effect, i+1), s)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// proxyView is what the CLI reads of a proxy to show it; --json prints the
// API's full object.
type proxyView struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Upstream    string `json:"upstream"`
	Auth        struct {
		Type      string            `json:"type"`
		Secret    string            `json:"secret"`
		Headers   map[string]string `json:"headers"`
		Params    map[string]string `json:"params"`
		TokenURL  string            `json:"token_url"`
		Scopes    []string          `json:"scopes"`
		Audience  string            `json:"audience"`
		AuthStyle string            `json:"auth_style"`
		Region    string            `json:"region"`
		Service   string            `json:"service"`
	} `json:"auth"`
	AgentTokenHeader string            `json:"agent_token_header"`
	StaticHeaders    map[string]string `json:"static_headers"`
	Capture          struct {
		RequestBody   bool     `json:"request_body"`
		ResponseBody  bool     `json:"response_body"`
		MaxBytes      int64    `json:"max_bytes"`
		RedactHeaders []string `json:"redact_headers"`
		RedactJSON    []string `json:"redact_json"`
	} `json:"capture"`
	Timeouts struct {
		Connect        string `json:"connect"`
		ResponseHeader string `json:"response_header"`
		Total          string `json:"total"`
	} `json:"timeouts"`
	Rules                []ruleJSON      `json:"rules"`
	MaxRuleBody          int64           `json:"max_rule_body"`
	ResponseFilters      json.RawMessage `json:"response_filters"`
	Quotas               []any           `json:"quotas"`
	AllowSemicolons      bool            `json:"allow_semicolons"`
	CaseInsensitivePaths bool            `json:"case_insensitive_paths"`
	PassCookies          bool            `json:"pass_cookies"`
	AllowWebsocket       bool            `json:"allow_websocket"`
	CreatedAt            *string         `json:"created_at"`
	UpdatedAt            *string         `json:"updated_at"`
}

func (a *app) proxyCmd() *cobra.Command {
	return group("proxy", "Create, list, show and delete proxies (one upstream API each)",
		`A proxy is one upstream API: a name (the first path segment agents call,
GATEWAY/NAME/…), a base URL, how keyhole authenticates to it with a secret,
and rules saying which requests agents may make. A proxy with no rules allows
nothing.`,
		`  keyhole proxy create stripe --upstream https://api.stripe.com --auth bearer \
          --secret stripe-key --allow 'GET /v1/customers/**'
  keyhole proxy ls
  keyhole proxy show stripe`,
		a.proxyCreateCmd(), a.proxyLsCmd(), a.proxyShowCmd(), a.proxyRmCmd(), a.proxyTemplatesCmd())
}

type proxyFlags struct {
	upstream, auth, secret, tokenHeader, description, fromFile string
	headers, params, static, allow, deny, scopes               []string
	tokenURL, audience, authStyle, region, service             string
	template, refreshMargin                                    string
}

// configFlags are the flags that describe the proxy; --from-file replaces
// all of them.
var configFlags = []string{"upstream", "auth", "secret", "header", "param", "token-header", "static-header",
	"allow", "deny", "description", "token-url", "scope", "audience", "auth-style", "region", "service",
	"template", "refresh-margin"}

func (a *app) proxyCreateCmd() *cobra.Command {
	var f proxyFlags
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a proxy for an upstream API",
		Long: `Create a proxy. Agents then call GATEWAY/NAME/PATH and keyhole forwards to
UPSTREAM/PATH with the credential injected.

--auth says how the secret is sent upstream (SPEC §4):
  none                       nothing injected
  bearer                     Authorization: Bearer {{secret}}
  header                     each --header 'Name: template', e.g. --header 'X-Api-Key: {{secret}}'
  query                      each --param 'name=template', e.g. --param 'api_key={{secret}}'
  basic                      an object secret with username and password
  oauth2_client_credentials  client_id, client_secret; --token-url, --scope, --audience, --auth-style
  oauth2_refresh_token       client_id, client_secret, refresh_token; --token-url, --scope
  aws_sigv4                  access_key_id, secret_access_key[, session_token]; --region, --service
Templates are {{secret}} for a string secret and {{secret.FIELD}} for an object.
Without --auth: header with --header, query with --param, none without --secret.

Rules: each --allow and --deny is the shorthand 'METHODS PATHS': methods
comma-separated or *, path patterns comma-separated (* is one segment, ** any
number); a bare pattern means every method. They become rules named allow-1,
allow-2, …, deny-1, …; a matching deny always wins. Add rules with conditions
later with ` + "`keyhole rule add`" + `.

--template NAME starts from a well-known API of keyhole's catalog (keyhole
proxy templates lists them): its upstream, auth type and settings, the header
its official SDK sends the API key in, and the headers it needs. Flags given
beside it replace the template's values (--upstream for an instance URL or
another site, --region for AWS, --static-header per header). The template is
read from the node (GET /api/v1/templates/NAME) and the merged proxy is sent
as a full spec: the admin API itself takes full specs only.

--from-file reads the whole proxy as JSON (the admin API's shape, SPEC §7.1)
instead of the flags.`,
		Example: `  keyhole proxy create stripe --upstream https://api.stripe.com --auth bearer \
          --secret stripe-key --allow 'GET /v1/customers/**' --allow 'GET /v1/charges'
  keyhole proxy create anthropic --upstream https://api.anthropic.com --auth header \
          --secret anthropic-key --header 'X-Api-Key: {{secret}}' --token-header x-api-key \
          --static-header 'Anthropic-Version: 2023-06-01' --allow 'POST /v1/messages'
  keyhole proxy create weather --upstream https://api.weather.example --auth query \
          --secret weather-key --param 'appid={{secret}}' --allow 'GET /data/**' --deny '/data/admin/**'
  keyhole proxy create github --from-file github-proxy.json
  keyhole proxy create openai --template openai --secret openai-key --allow 'POST /v1/chat/completions'
  keyhole proxy create sf --template salesforce --secret sf-oauth --upstream https://yourco.my.salesforce.com --allow 'GET /services/data/**'
  keyhole proxy create bedrock --template aws-bedrock --secret aws-keys --region eu-west-1 --allow 'POST /model/**'`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			var tpl *templateView
			if f.template != "" {
				if f.fromFile != "" {
					return usagef(c, "--template and --from-file cannot be combined: --from-file holds the whole proxy")
				}
				cl, err := a.client()
				if err != nil {
					return err
				}
				if tpl, err = fetchTemplate(c, cl, f.template); err != nil {
					return err
				}
			}
			body, err := f.build(c, args[0], tpl)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var p proxyView
			raw, err := cl.getJSON(c.Context(), "POST", "/api/v1/proxies", nil, body, &p)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				w := c.OutOrStdout()
				fmt.Fprintf(w, "proxy %s created: agents call GATEWAY/%s/… → %s\n", clean(p.Name), clean(p.Name), clean(p.Upstream))
				if len(p.Rules) == 0 {
					fmt.Fprintf(w, "it has no rules, so it allows nothing yet: keyhole rule add %s --allow 'GET /**'\n", clean(p.Name))
				}
				if tpl != nil && tpl.SDK != "" {
					fmt.Fprintf(w, "SDK: %s\n", clean(strings.ReplaceAll(tpl.SDK, "GATEWAY/"+tpl.Name, "GATEWAY/"+p.Name)))
				}
				return nil
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.upstream, "upstream", "", "the upstream's base URL, e.g. https://api.stripe.com")
	fl.StringVar(&f.auth, "auth", "", "how the secret is sent: none, bearer, header, query, basic, oauth2_client_credentials, oauth2_refresh_token, aws_sigv4")
	fl.StringVar(&f.secret, "secret", "", "the secret the auth uses (keyhole secret set NAME)")
	fl.StringArrayVar(&f.headers, "header", nil, "auth header template 'Name: {{secret}}' (--auth header; repeatable)")
	fl.StringArrayVar(&f.params, "param", nil, "auth query parameter template 'name={{secret}}' (--auth query; repeatable)")
	fl.StringVar(&f.tokenHeader, "token-header", "", "an extra header agents may put their keyhole token in, e.g. x-api-key (for SDKs that send their key there)")
	fl.StringArrayVar(&f.static, "static-header", nil, "a non-secret header set on every call, 'Name: value' (repeatable)")
	fl.StringArrayVar(&f.allow, "allow", nil, "allow rule 'METHODS PATHS', e.g. 'GET,HEAD /v1/customers/**' (repeatable)")
	fl.StringArrayVar(&f.deny, "deny", nil, "deny rule 'METHODS PATHS', e.g. 'DELETE /**' (repeatable)")
	fl.StringVar(&f.description, "description", "", "what this API is for (shown to agents over MCP)")
	fl.StringVar(&f.tokenURL, "token-url", "", "OAuth 2.0 token endpoint (oauth2_* auth)")
	fl.StringArrayVar(&f.scopes, "scope", nil, "OAuth 2.0 scope (repeatable)")
	fl.StringVar(&f.audience, "audience", "", "OAuth 2.0 audience")
	fl.StringVar(&f.authStyle, "auth-style", "", "OAuth 2.0 client authentication: header or body")
	fl.StringVar(&f.region, "region", "", "AWS region (aws_sigv4)")
	fl.StringVar(&f.service, "service", "", "AWS service name (aws_sigv4)")
	fl.StringVar(&f.refreshMargin, "refresh-margin", "", "OAuth 2.0: refresh this long before expiry (default 60s, at most half the token's lifetime)")
	fl.StringVar(&f.template, "template", "", "start from a well-known API: "+strings.Join(templateNames, ", ")+" (keyhole proxy templates)")
	fl.StringVar(&f.fromFile, "from-file", "", "read the whole proxy from a JSON file (\"-\" for stdin) instead of the flags")
	fl.SortFlags = false
	return c
}

// build makes the POST /proxies body: only what was given, so every
// omitted field takes the API's default. With a template, its values fill
// what the flags leave out.
func (f *proxyFlags) build(c *cobra.Command, name string, tpl *templateView) (any, error) {
	if tpl != nil {
		if err := f.applyTemplate(c, tpl); err != nil {
			return nil, err
		}
	}
	if f.fromFile != "" {
		for _, n := range configFlags {
			if c.Flags().Changed(n) {
				return nil, usagef(c, "--from-file holds the whole proxy; --%s cannot be combined with it", n)
			}
		}
		return proxyFromFile(c, f.fromFile, name)
	}
	if f.upstream == "" {
		return nil, usagef(c, "--upstream is required (the API's base URL, e.g. https://api.stripe.com)")
	}
	authType := f.auth
	if authType == "" {
		switch {
		case len(f.headers) > 0:
			authType = "header"
		case len(f.params) > 0:
			authType = "query"
		case f.secret != "":
			return nil, usagef(c, "say how the secret %s is sent upstream: --auth bearer, header, query, basic, oauth2_client_credentials, oauth2_refresh_token or aws_sigv4", clean(f.secret))
		default:
			authType = "none"
		}
	}
	if len(f.headers) > 0 && authType != "header" {
		return nil, usagef(c, "--header sets auth headers and needs --auth header (use --static-header for non-secret headers)")
	}
	if len(f.params) > 0 && authType != "query" {
		return nil, usagef(c, "--param sets auth query parameters and needs --auth query")
	}
	auth := map[string]any{"type": authType}
	if f.secret != "" {
		auth["secret"] = f.secret
	}
	if len(f.headers) > 0 {
		m, err := pairs(f.headers, ":", "--header", "'X-Api-Key: {{secret}}'")
		if err == nil {
			err = templated(m, "--header")
		}
		if err != nil {
			return nil, usageErr(c, err)
		}
		auth["headers"] = m
	}
	if len(f.params) > 0 {
		m, err := pairs(f.params, "=", "--param", "'api_key={{secret}}'")
		if err == nil {
			err = templated(m, "--param")
		}
		if err != nil {
			return nil, usageErr(c, err)
		}
		auth["params"] = m
	}
	for k, v := range map[string]string{"token_url": f.tokenURL, "audience": f.audience, "auth_style": f.authStyle,
		"region": f.region, "service": f.service, "refresh_margin": f.refreshMargin} {
		if v != "" {
			auth[k] = v
		}
	}
	if len(f.scopes) > 0 {
		auth["scopes"] = f.scopes
	}
	body := map[string]any{"name": name, "upstream": f.upstream, "auth": auth}
	if f.description != "" {
		body["description"] = f.description
	}
	if f.tokenHeader != "" {
		body["agent_token_header"] = f.tokenHeader
	}
	if len(f.static) > 0 {
		m, err := pairs(f.static, ":", "--static-header", "'Anthropic-Version: 2023-06-01'")
		if err != nil {
			return nil, usageErr(c, err)
		}
		body["static_headers"] = m
	}
	rules, err := shorthandRules(f.allow, f.deny)
	if err != nil {
		return nil, usageErr(c, err)
	}
	if len(rules) > 0 {
		body["rules"] = rules
	}
	return body, nil
}

// pairs parses repeated 'key SEP value' flags into a map. A malformed
// flag is not repeated in the error: it may hold a credential pasted where
// a template belongs.
func pairs(in []string, sep, flag, example string) (map[string]string, error) {
	m := make(map[string]string, len(in))
	for _, s := range in {
		k, v, ok := strings.Cut(s, sep)
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s wants %s; one of them has no %q", flag, example, sep)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s: %s is given twice", flag, clean(k))
		}
		m[k] = v
	}
	return m, nil
}

// templated refuses auth headers and parameters that do not use the
// secret: a literal value there is a credential typed into a flag, which
// would be stored in the proxy's configuration in clear and end up in shell
// history. The value is never repeated.
func templated(m map[string]string, flag string) error {
	for k, v := range m {
		if !strings.Contains(v, "{{") {
			return fmt.Errorf("%s %s: the value must be a template using the secret, such as {{secret}} or {{secret.FIELD}}; "+
				"store credentials with keyhole secret set, never in a flag", flag, clean(k))
		}
	}
	return nil
}

// proxyFromFile reads a proxy's JSON; its name is the argument's (filled in
// when the file has none, an error when the file names another).
func proxyFromFile(c *cobra.Command, path, name string) (any, error) {
	var r io.Reader = c.InOrStdin()
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", clean(path), pathErr(err))
		}
		defer fh.Close()
		r = fh
	}
	b, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", clean(path), pathErr(err))
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("%s is not a JSON object describing a proxy (the admin API's shape, SPEC §7.1)", clean(path))
	}
	if raw, ok := m["name"]; ok {
		var n string
		if json.Unmarshal(raw, &n) != nil || n != name {
			return nil, fmt.Errorf("%s names another proxy than %s", clean(path), clean(name))
		}
	} else {
		m["name"], _ = json.Marshal(name)
	}
	return m, nil
}

func (a *app) proxyLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List proxies",
		Long:    "List every proxy with its upstream, auth type, secret and number of rules.",
		Example: "  keyhole proxy ls\n  keyhole proxy ls --json | jq -r '.proxies[].name'",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Proxies []proxyView `json:"proxies"`
			}
			raw, err := cl.getJSON(c.Context(), "GET", "/api/v1/proxies", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				now := time.Now()
				t := newTable(c.OutOrStdout(), "NAME", "UPSTREAM", "AUTH", "SECRET", "RULES", "UPDATED")
				for _, p := range resp.Proxies {
					t.row(p.Name, p.Upstream, p.Auth.Type, p.Auth.Secret, fmt.Sprint(len(p.Rules)), rel(now, p.UpdatedAt))
				}
				return t.flush()
			})
		},
	}
}

func (a *app) proxyShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a proxy: upstream, auth, rules",
		Long: `Show a proxy's upstream, how it authenticates (the secret's name, never its
value), its headers, capture and timeout settings, and its rules with their
effect, methods, paths, agents and conditions. --json prints the whole object.`,
		Example: "  keyhole proxy show stripe\n  keyhole proxy show stripe --json > stripe.json",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var p proxyView
			raw, err := cl.getJSON(c.Context(), "GET", "/api/v1/proxies/"+seg(args[0]), nil, nil, &p)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error { return showProxy(c.OutOrStdout(), &p) })
		},
	}
}

func showProxy(w io.Writer, p *proxyView) error {
	now := time.Now()
	t := newTable(w)
	t.row("proxy:", p.Name)
	if p.Description != "" {
		t.row("description:", p.Description)
	}
	t.row("upstream:", p.Upstream)
	auth := p.Auth.Type
	if p.Auth.Secret != "" {
		auth += ", secret " + p.Auth.Secret
	}
	t.row("auth:", auth)
	for _, k := range sortedKeys(p.Auth.Headers) {
		t.row("auth header:", k+": "+p.Auth.Headers[k])
	}
	for _, k := range sortedKeys(p.Auth.Params) {
		t.row("auth param:", k+"="+p.Auth.Params[k])
	}
	if p.Auth.TokenURL != "" {
		t.row("token url:", p.Auth.TokenURL)
	}
	if len(p.Auth.Scopes) > 0 {
		t.row("scopes:", strings.Join(p.Auth.Scopes, " "))
	}
	if p.Auth.Audience != "" {
		t.row("audience:", p.Auth.Audience)
	}
	if p.Auth.AuthStyle != "" {
		t.row("auth style:", p.Auth.AuthStyle)
	}
	if p.Auth.Region != "" || p.Auth.Service != "" {
		t.row("aws:", "region "+p.Auth.Region+", service "+p.Auth.Service)
	}
	if p.AgentTokenHeader != "" {
		t.row("token header:", p.AgentTokenHeader+" (agents may send their keyhole token here)")
	}
	for _, k := range sortedKeys(p.StaticHeaders) {
		t.row("static header:", k+": "+p.StaticHeaders[k])
	}
	t.row("capture:", describeCapture(p))
	if p.Timeouts.Total != "" {
		t.row("timeouts:", fmt.Sprintf("connect %s, response header %s, total %s", p.Timeouts.Connect, p.Timeouts.ResponseHeader, p.Timeouts.Total))
	}
	var opts []string
	for _, o := range []struct {
		on   bool
		name string
	}{{p.AllowSemicolons, "allow_semicolons"}, {p.CaseInsensitivePaths, "case_insensitive_paths"},
		{p.PassCookies, "pass_cookies"}, {p.AllowWebsocket, "allow_websocket"}} {
		if o.on {
			opts = append(opts, o.name)
		}
	}
	if len(opts) > 0 {
		t.row("options:", strings.Join(opts, ", "))
	}
	if len(p.Quotas) > 0 {
		t.row("quotas:", plural(len(p.Quotas), "quota")+" (see --json)")
	}
	if f := bytes.TrimSpace(p.ResponseFilters); len(f) > 0 && !bytes.Equal(f, []byte("{}")) && !bytes.Equal(f, []byte("null")) {
		t.row("response filters:", string(f))
	}
	t.row("updated:", rel(now, p.UpdatedAt))
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(p.Rules) == 0 {
		_, err := fmt.Fprintf(w, "no rules: this proxy allows nothing (keyhole rule add %s --allow 'GET /**')\n", clean(p.Name))
		return err
	}
	fmt.Fprintf(w, "rules (%d; a matching deny wins, else a matching allow, else 403):\n", len(p.Rules))
	return printRules(w, p.Rules, "  ")
}

func describeCapture(p *proxyView) string {
	var what []string
	if p.Capture.RequestBody {
		what = append(what, "request")
	}
	if p.Capture.ResponseBody {
		what = append(what, "response")
	}
	s := "no bodies"
	if len(what) > 0 {
		s = strings.Join(what, " and ") + fmt.Sprintf(" bodies up to %d bytes", p.Capture.MaxBytes)
	}
	if len(p.Capture.RedactHeaders) > 0 {
		s += "; redacts headers " + strings.Join(p.Capture.RedactHeaders, ", ")
	}
	if len(p.Capture.RedactJSON) > 0 {
		s += "; redacts JSON " + strings.Join(p.Capture.RedactJSON, ", ")
	}
	return s
}

func printRules(w io.Writer, rules []ruleJSON, indent string) error {
	t := newTable(w, indent+"NAME", "EFFECT", "METHODS", "PATHS", "AGENTS", "WHEN", "RATE LIMIT")
	for _, r := range rules {
		effect := r.Effect
		if r.Mode == "report" {
			effect += " (report only)"
		}
		agents := strings.Join(r.Agents, ",")
		if l := labels(r.AgentLabels); l != "" {
			if agents != "" {
				agents += " "
			}
			agents += l
		}
		if agents == "" {
			agents = "*"
		}
		t.row(indent+r.Name, effect, list(r.Methods, "*"), list(r.Paths, ""), agents, r.When, r.RateLimit)
	}
	return t.flush()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (a *app) proxyRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Delete a proxy",
		Long:    "Delete a proxy and its rules. Agents calling it get 404 from then on; tokens scoped to it keep their other proxies. The secret it used is kept.",
		Example: "  keyhole proxy rm stripe",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			raw, err := cl.do(c.Context(), http.MethodDelete, "/api/v1/proxies/"+seg(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				_, err := fmt.Fprintf(c.OutOrStdout(), "proxy %s deleted\n", clean(args[0]))
				return err
			})
		},
	}
}

// templateView is a template as GET /api/v1/templates/{name} returns it
// (internal/templates).
type templateView struct {
	Name             string `json:"name"`
	Title            string `json:"title"`
	Description      string `json:"description"`
	Upstream         string `json:"upstream"`
	UpstreamByRegion string `json:"upstream_by_region"`
	Auth             struct {
		Type          string            `json:"type"`
		Headers       map[string]string `json:"headers"`
		Params        map[string]string `json:"params"`
		TokenURL      string            `json:"token_url"`
		Scopes        []string          `json:"scopes"`
		Audience      string            `json:"audience"`
		AuthStyle     string            `json:"auth_style"`
		RefreshMargin string            `json:"refresh_margin"`
		Region        string            `json:"region"`
		Service       string            `json:"service"`
	} `json:"auth"`
	AgentTokenHeader string            `json:"agent_token_header"`
	StaticHeaders    map[string]string `json:"static_headers"`
	SecretFields     []string          `json:"secret_fields"`
	Requires         []string          `json:"requires"`
	Connect          *struct {
		AuthorizeURL string            `json:"authorize_url"`
		Params       map[string]string `json:"params"`
	} `json:"connect"`
	SDK     string   `json:"sdk"`
	Example string   `json:"example"`
	Quirks  []string `json:"quirks"`
	Docs    string   `json:"docs"`
}

// templateNames is the catalog as of this build, for help texts (the node
// is the authority: an older or newer node may know others).
var templateNames = []string{"openai", "anthropic", "gemini", "mistral", "stripe", "github", "slack", "notion", "linear",
	"hubspot", "hubspot-oauth", "salesforce", "google", "twilio", "sendgrid", "datadog", "airtable", "aws-bedrock", "aws-s3",
	"microsoft-graph"}

func fetchTemplate(c *cobra.Command, cl *client, name string) (*templateView, error) {
	var t templateView
	if _, err := cl.getJSON(c.Context(), "GET", "/api/v1/templates/"+seg(name), nil, nil, &t); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil, usagef(c, "there is no template %s; keyhole proxy templates lists them", clean(name))
		}
		return nil, err
	}
	return &t, nil
}

// applyTemplate fills the flags the user left out from the template.
func (f *proxyFlags) applyTemplate(c *cobra.Command, t *templateView) error {
	changed := c.Flags().Changed
	for _, r := range t.Requires {
		flag, what := "", ""
		switch r {
		case "upstream":
			flag, what = "upstream", "your instance's base URL"
		case "token_url":
			flag, what = "token-url", "the token endpoint of your tenant"
		case "scopes":
			flag, what = "scope", "the OAuth scopes the token needs (repeatable)"
		default:
			continue
		}
		if !changed(flag) {
			return usagef(c, "template %s needs --%s: %s (template default: %s)", clean(t.Name), flag, what, clean(templateDefault(t, r)))
		}
	}
	if !changed("upstream") {
		f.upstream = t.Upstream
		if f.region != "" && t.UpstreamByRegion != "" {
			f.upstream = strings.ReplaceAll(t.UpstreamByRegion, "{region}", f.region)
		}
	}
	if !changed("description") {
		f.description = t.Description
	}
	if !changed("token-header") {
		f.tokenHeader = t.AgentTokenHeader
	}
	if !changed("auth") {
		f.auth = t.Auth.Type
	}
	if f.auth == t.Auth.Type {
		// The template's auth settings go with its auth type only.
		if !changed("header") {
			f.headers = pairList(t.Auth.Headers, ": ")
		}
		if !changed("param") {
			f.params = pairList(t.Auth.Params, "=")
		}
		for _, s := range []struct {
			flag string
			dst  *string
			val  string
		}{{"token-url", &f.tokenURL, t.Auth.TokenURL}, {"audience", &f.audience, t.Auth.Audience},
			{"auth-style", &f.authStyle, t.Auth.AuthStyle}, {"region", &f.region, t.Auth.Region},
			{"service", &f.service, t.Auth.Service}, {"refresh-margin", &f.refreshMargin, t.Auth.RefreshMargin}} {
			if !changed(s.flag) {
				*s.dst = s.val
			}
		}
		if !changed("scope") {
			f.scopes = t.Auth.Scopes
		}
	}
	// Static headers: the template's, each replaced by a --static-header of
	// the same name.
	given := map[string]bool{}
	for _, s := range f.static {
		k, _, _ := strings.Cut(s, ":")
		given[http.CanonicalHeaderKey(strings.TrimSpace(k))] = true
	}
	for _, kv := range pairList(t.StaticHeaders, ": ") {
		k, _, _ := strings.Cut(kv, ":")
		if !given[http.CanonicalHeaderKey(k)] {
			f.static = append(f.static, kv)
		}
	}
	if f.auth != "none" && f.secret == "" {
		what := "a string secret (the API key)"
		if len(t.SecretFields) > 0 {
			what = "an object secret with fields " + strings.Join(t.SecretFields, ", ")
		}
		return usagef(c, "template %s needs --secret: %s (keyhole secret set NAME)", clean(t.Name), what)
	}
	return nil
}

func templateDefault(t *templateView, r string) string {
	switch r {
	case "upstream":
		return t.Upstream
	case "token_url":
		return t.Auth.TokenURL
	}
	return "none"
}

// pairList turns a map into sorted "k<sep>v" flag values.
func pairList(m map[string]string, sep string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+sep+m[k])
	}
	return out
}

func (a *app) proxyTemplatesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "templates [NAME]",
		Aliases: []string{"template"},
		Short:   "List the catalog of well-known APIs (for proxy create --template)",
		Long: `List the templates of well-known APIs that proxy create --template starts
from, or show one: its upstream, auth, the secret it needs, the header its
official SDK sends the key in, how to point the SDK at keyhole, and the
provider's quirks.`,
		Example: "  keyhole proxy templates\n  keyhole proxy templates anthropic\n  keyhole proxy templates --json | jq -r '.templates[].name'",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var t templateView
				raw, err := cl.getJSON(c.Context(), "GET", "/api/v1/templates/"+seg(args[0]), nil, nil, &t)
				if err != nil {
					return err
				}
				return a.out(c.OutOrStdout(), raw, func() error { return showTemplate(c.OutOrStdout(), &t) })
			}
			var resp struct {
				Templates []templateView `json:"templates"`
			}
			raw, err := cl.getJSON(c.Context(), "GET", "/api/v1/templates", nil, nil, &resp)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				t := newTable(c.OutOrStdout(), "NAME", "AUTH", "UPSTREAM", "API")
				for _, tp := range resp.Templates {
					t.row(tp.Name, tp.Auth.Type, tp.Upstream, tp.Title)
				}
				return t.flush()
			})
		},
	}
}

func showTemplate(w io.Writer, tp *templateView) error {
	t := newTable(w)
	t.row("template:", tp.Name+" ("+tp.Title+")")
	t.row("description:", tp.Description)
	t.row("upstream:", tp.Upstream)
	if tp.UpstreamByRegion != "" {
		t.row("by region:", tp.UpstreamByRegion+" (--region)")
	}
	t.row("auth:", tp.Auth.Type)
	for _, k := range sortedKeys(tp.Auth.Headers) {
		t.row("auth header:", k+": "+tp.Auth.Headers[k])
	}
	if tp.Auth.TokenURL != "" {
		t.row("token url:", tp.Auth.TokenURL)
	}
	if len(tp.Auth.Scopes) > 0 {
		t.row("scopes:", strings.Join(tp.Auth.Scopes, " "))
	}
	if tp.Auth.AuthStyle != "" {
		t.row("auth style:", tp.Auth.AuthStyle)
	}
	if tp.Auth.Service != "" {
		t.row("aws:", "region "+tp.Auth.Region+", service "+tp.Auth.Service)
	}
	secret := "a string (the API key)"
	if len(tp.SecretFields) > 0 {
		secret = "an object with " + strings.Join(tp.SecretFields, ", ")
	}
	t.row("secret:", secret)
	if tp.AgentTokenHeader != "" {
		t.row("token header:", tp.AgentTokenHeader+" (where the SDK sends its key)")
	}
	for _, k := range sortedKeys(tp.StaticHeaders) {
		t.row("static header:", k+": "+tp.StaticHeaders[k])
	}
	if len(tp.Requires) > 0 {
		t.row("you give:", strings.Join(tp.Requires, ", "))
	}
	if tp.Connect != nil {
		t.row("connect:", "keyhole secret connect NAME --template "+tp.Name+" --scope …")
	}
	t.row("SDK:", tp.SDK)
	t.row("example:", tp.Example)
	for _, q := range tp.Quirks {
		t.row("quirk:", q)
	}
	t.row("docs:", tp.Docs)
	return t.flush()
}
