package mcp

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// ToolPrefix starts the name of every proxy's tool: call_stripe.
const ToolPrefix = "call_"

// standardMethods are offered when a rule allows every method, in this order.
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Bounds of a tool description: a proxy with hundreds of rules must not
// fill the agent's context with them.
const (
	maxRuleLines   = 40
	maxRuleLineLen = 300
	maxDescription = 1000
)

// proxyTool is one call_<proxy> tool.
type proxyTool struct {
	tool  *sdk.Tool
	proxy string
}

// buildTools returns one tool per proxy in the token's scope, sorted by name.
// A proxy of the scope that no longer exists has no tool (a call would get
// 404 unknown_proxy).
func buildTools(snap *catalog.Snapshot, tok *catalog.Token, agent *catalog.Agent) []*proxyTool {
	if snap == nil || tok == nil {
		return nil
	}
	name := tok.Agent
	var labels map[string]string
	if agent != nil {
		labels = agent.Labels
	}
	names := append([]string{}, tok.Proxies...)
	sort.Strings(names)
	var out []*proxyTool
	seen := map[string]bool{}
	for _, pn := range names {
		p := snap.Proxy(pn)
		if p == nil || seen[pn] {
			continue
		}
		seen[pn] = true
		proxyRules := applicable(p.Rules, name, labels)
		var tokRules []spec.Rule
		hasTokRules := tok.Rules != nil
		if hasTokRules {
			tokRules = applicable(tok.RulesFor(p.Spec.CaseInsensitivePaths), name, labels)
		}
		methods := intersect(allowedMethods(proxyRules), allowedMethods(tokRules), hasTokRules)
		out = append(out, &proxyTool{proxy: pn, tool: &sdk.Tool{
			Name:        ToolPrefix + pn,
			Title:       "Call " + pn + " through keyhole",
			Description: describe(p, proxyRules, tokRules, hasTokRules),
			InputSchema: inputSchema(pn, methods),
			Annotations: annotations(methods),
		}})
	}
	return out
}

// applicable lists the enforced rules of s that apply to the agent (its
// agents and agent_labels selectors hold). Report-mode rules never decide,
// so they are not described.
func applicable(s *rules.Set, agent string, labels map[string]string) []spec.Rule {
	var out []spec.Rule
	for _, r := range s.Rules() {
		if r.Report {
			continue
		}
		sr := r.Spec
		if len(sr.Agents) > 0 && !contains(sr.Agents, agent) {
			continue
		}
		ok := true
		for k, v := range sr.AgentLabels {
			if got, has := labels[k]; !has || got != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, sr)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// allowedMethods is the union of the methods of the allow rules; nil means
// every method (an allow rule names none), an empty non-nil set none.
func allowedMethods(rs []spec.Rule) map[string]bool {
	out := map[string]bool{}
	for _, r := range rs {
		if r.Effect != "allow" {
			continue
		}
		if len(r.Methods) == 0 {
			return nil
		}
		for _, m := range r.Methods {
			out[strings.ToUpper(m)] = true
		}
	}
	return out
}

// intersect combines the proxy's and the token's own allowed methods (a
// child token's rules apply in addition to the proxy's) into the schema's
// enum, in a stable order. When nothing is allowed the enum lists the
// standard methods: an empty enum would make the tool uncallable in
// clients that validate, and the call itself gets keyhole's explanation.
func intersect(proxy, tok map[string]bool, hasTok bool) []string {
	set := proxy
	if hasTok {
		switch {
		case proxy == nil:
			set = tok
		case tok != nil:
			set = map[string]bool{}
			for m := range proxy {
				if tok[m] {
					set[m] = true
				}
			}
		}
	}
	if set == nil || len(set) == 0 {
		return append([]string{}, standardMethods...)
	}
	var out []string
	for _, m := range standardMethods {
		if set[m] {
			out = append(out, m)
		}
	}
	var extra []string
	for m := range set {
		if !contains(standardMethods, m) {
			extra = append(extra, m)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func annotations(methods []string) *sdk.ToolAnnotations {
	ro := true
	for _, m := range methods {
		if m != "GET" && m != "HEAD" && m != "OPTIONS" {
			ro = false
		}
	}
	open := true
	return &sdk.ToolAnnotations{ReadOnlyHint: ro, OpenWorldHint: &open}
}

// describe builds the tool's description: the proxy's own description, how
// keyhole treats the call, and the rules that apply to this agent.
func describe(p *catalog.Proxy, proxyRules, tokRules []spec.Rule, hasTok bool) string {
	var b strings.Builder
	d := strings.TrimSpace(p.Spec.Description)
	if d == "" {
		d = "The " + p.Name + " API."
	}
	if len(d) > maxDescription {
		d = d[:maxDescription] + "…"
	}
	b.WriteString(d)
	if p.Upstream != nil {
		u := url.URL{Scheme: p.Upstream.Scheme, Host: p.Upstream.Host, Path: p.Upstream.Path}
		fmt.Fprintf(&b, "\n\nSends one HTTP request to %s through keyhole, which adds the API's credential (you never see it), "+
			"applies the rules below and records the call. `path` is the API's own path (e.g. /v1/…), not a URL.", u.String())
	}
	writeRules(&b, "Rules that apply to you (first matching deny wins, else a matching allow; anything else is refused with no_rule_allows):", proxyRules)
	if len(proxyRules) == 0 {
		b.WriteString("\nNo rule of this proxy applies to you: every call will be refused (no_rule_allows).")
	}
	if hasTok {
		writeRules(&b, "Your token adds its own rules; a call must pass both:", tokRules)
		if len(tokRules) == 0 {
			b.WriteString("\nYour token's own rules allow nothing on this proxy.")
		}
	}
	return b.String()
}

func writeRules(b *strings.Builder, title string, rs []spec.Rule) {
	if len(rs) == 0 {
		return
	}
	b.WriteString("\n\n" + title)
	for i, r := range rs {
		if i == maxRuleLines {
			fmt.Fprintf(b, "\n- … and %d more rules", len(rs)-i)
			break
		}
		line := ruleLine(r)
		if len(line) > maxRuleLineLen {
			line = line[:maxRuleLineLen] + "…"
		}
		b.WriteString("\n- " + line)
	}
}

// ruleLine is one rule in the SPEC §5 shorthand: "allow GET,HEAD
// /v1/customers/** when request.query.limit … (rate limit 60/m)".
func ruleLine(r spec.Rule) string {
	methods := "any method"
	if len(r.Methods) > 0 {
		methods = strings.Join(r.Methods, ",")
	}
	s := r.Effect + " " + methods + " " + strings.Join(r.Paths, ", ")
	if w := strings.Join(strings.Fields(r.When), " "); w != "" {
		s += " when " + w
	}
	if r.RateLimit != "" {
		s += " (rate limit " + r.RateLimit + ")"
	}
	return s + " [rule " + r.Name + "]"
}

// inputSchema is the JSON Schema of a call_<proxy> tool's arguments.
func inputSchema(proxy string, methods []string) map[string]any {
	return map[string]any{
		"type": "object",
		"properties": map[string]any{
			"method": map[string]any{
				"type":        "string",
				"enum":        methods,
				"description": "The HTTP method.",
			},
			"path": map[string]any{
				"type":        "string",
				"pattern":     "^/",
				"description": "The path on the " + proxy + " API, starting with /, e.g. /v1/items/42 (percent-encode reserved characters in a segment). No query string: use query.",
			},
			"query": map[string]any{
				"type":                 "object",
				"description":          "Query parameters: name → value, or name → list of values.",
				"additionalProperties": map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}},
			},
			"headers": map[string]any{
				"type":                 "object",
				"description":          "Extra request headers (e.g. Content-Type, Idempotency-Key). keyhole adds the credential: Authorization and X-Keyhole-Token cannot be set here.",
				"additionalProperties": map[string]any{"type": "string"},
			},
			"body": map[string]any{
				"description": "The request body: a JSON value is sent as JSON (Content-Type application/json unless headers set one); a string is sent as it is (set Content-Type, e.g. application/x-www-form-urlencoded).",
			},
		},
		"required":             []string{"method", "path"},
		"additionalProperties": false,
	}
}
