package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/policy"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// POST /api/v1/proxies/{name}/rules/test: a dry evaluation (issue 3). It
// says what the gateway would decide for one request — which rule decides
// and why each rule matched or not — and changes nothing: no rate limit is
// consumed, nothing is forwarded or recorded. Any role may call it.
//
// The request goes through the same steps as at the gateway, in the same
// order, from the node's current snapshot: the token's scope (when a token
// is named), the proxy's compiled state, the canonical path
// (policy.CanonicalPath, so a bad path answers reason bad_path), the body
// rules (read only when a rule needs the body; 413 above max_rule_body;
// JSON strictness; a GET/HEAD with a body on a body-reading proxy is
// bad_body), the proxy's rules, then a child token's own rules. The
// agent's labels are the stored agent's.
//
// Not simulated (they do not depend on rules): authentication of the token
// (expiry, revocation), the query checks of SPEC §3.4, stripping of the
// agent's token and of method-override headers, rate limits and quotas.

// ruleTestRequest is the body of a rule test.
type ruleTestRequest struct {
	// Agent names the stored agent the request comes from (its labels
	// are used). Optional when TokenID names a token: the token's agent.
	Agent string `json:"agent"`
	// Method is the HTTP method, e.g. POST.
	Method string `json:"method"`
	// Path is the path after /{proxy}, percent-encoded as it would be sent
	// (e.g. /v1/charges); a "?query" part is taken as Query.
	Path string `json:"path"`
	// Query is the raw query string, without "?".
	Query string `json:"query"`
	// Headers are the request's headers (names in any case).
	Headers map[string][]string `json:"headers"`
	// Body is the request body as rules read it (decoded: a gzip body is
	// given uncompressed). Absent or null: no body.
	Body *string `json:"body"`
	// TokenID names a token of the agent (token.id in conditions); a
	// child token's own rules then apply too, as at the gateway.
	TokenID string `json:"token_id"`
}

// ruleTestResponse is the answer: the would-be decision and each rule's
// result.
type ruleTestResponse struct {
	Allow bool `json:"allow"`
	// Status is what keyhole would answer with; absent when the request
	// would be forwarded (the upstream answers).
	Status int `json:"status,omitempty"`
	// Reason is the reason code the audit record would hold.
	Reason string `json:"reason"`
	// Rule is the rule that decided ("" when none did).
	Rule string `json:"rule"`
	// Message is the error message the agent would get (refusals only).
	Message string `json:"message,omitempty"`
	// Report lists the would-be results of report-mode rules that matched.
	Report []string `json:"report"`
	// Rules is every proxy rule's result, in order (empty when the
	// request is refused before rules run).
	Rules []rules.RuleResult `json:"rules"`
	// TokenRules is a child token's own rules' results, when it has any
	// and the proxy's rules allowed the request.
	TokenRules []rules.RuleResult `json:"token_rules,omitempty"`
	// RateLimit is the deciding allow rule's rate_limit, TokenRateLimit
	// the token rule's; a test never consumes them.
	RateLimit      string `json:"rate_limit,omitempty"`
	TokenRateLimit string `json:"token_rate_limit,omitempty"`
	// Path is the decoded canonical path the rules matched (case-folded on
	// a case-insensitive proxy).
	Path string `json:"path,omitempty"`
	// Agent and AgentLabels are who the request came from, as the rules
	// saw them.
	Agent       string            `json:"agent"`
	AgentLabels map[string]string `json:"agent_labels"`
}

func (a *API) testRules(c *call) error {
	name := c.r.PathValue("name")
	snap := a.Catalog.Load()
	p := snap.Proxy(name)
	if p == nil {
		return notFound("proxy " + name)
	}
	b, err := c.body()
	if err != nil {
		return err
	}
	var req ruleTestRequest
	if err := spec.DecodeStrict(b, &req, "the rule test"); err != nil {
		return badRequest("%v", err)
	}
	res, err := evalRuleTest(snap, p, &req)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, res)
}

// evalRuleTest evaluates one request against a proxy of snap: an *apiError
// for a request that cannot be evaluated (no or unknown agent, unknown
// token, a malformed header name), else the would-be answer.
func evalRuleTest(snap *catalog.Snapshot, p *catalog.Proxy, req *ruleTestRequest) (*ruleTestResponse, error) {
	var tok *catalog.Token
	agent := req.Agent
	if req.TokenID != "" {
		if tok = snap.TokenByID(req.TokenID); tok == nil {
			return nil, badRequest("token %q does not exist", clip(req.TokenID))
		}
		switch {
		case agent == "":
			agent = tok.Agent
		case agent != tok.Agent:
			return nil, badRequest("token %s belongs to agent %s, not %s", clip(req.TokenID), tok.Agent, clip(agent))
		}
	}
	if agent == "" {
		return nil, badRequest("agent is required: the name of the agent the request would come from")
	}
	ag := snap.Agent(agent)
	if ag == nil {
		return nil, badRequest("agent %q does not exist", clip(agent))
	}
	if req.Method == "" {
		return nil, badRequest("method is required, e.g. \"POST\"")
	}
	rawPath, query := req.Path, req.Query
	if before, after, ok := strings.Cut(rawPath, "?"); ok {
		if query != "" {
			return nil, badRequest("give the query either after ? in path or in query, not both")
		}
		rawPath, query = before, after
	}
	if rawPath != "" && !strings.HasPrefix(rawPath, "/") {
		return nil, badRequest("path is the path after /%s and starts with /, e.g. \"/v1/charges\"", p.Name)
	}
	hdr := http.Header{}
	for k, vs := range req.Headers {
		if !spec.ValidHeaderName(k) {
			return nil, badRequest("headers: %q is not a valid header name", clip(k))
		}
		ck := http.CanonicalHeaderKey(k)
		hdr[ck] = append(hdr[ck], vs...)
	}
	res := &ruleTestResponse{Agent: ag.Name, AgentLabels: ag.Labels, Report: []string{}, Rules: []rules.RuleResult{}}
	if res.AgentLabels == nil {
		res.AgentLabels = map[string]string{}
	}
	refuse := func(status int, reason, message string) (*ruleTestResponse, error) {
		res.Status, res.Reason, res.Message = status, reason, message
		return res, nil
	}

	// The gateway's order (SPEC §3.3): method, scope, proxy state, path,
	// body, rules.
	if req.Method == http.MethodTrace || req.Method == http.MethodConnect {
		return refuse(http.StatusMethodNotAllowed, "method_not_allowed", req.Method+" is never forwarded")
	}
	if !policy.ValidMethod(req.Method) {
		return refuse(http.StatusBadRequest, "bad_method", "the method is not an RFC 9110 token")
	}
	if tok != nil && !tok.Scope[p.Name] {
		return refuse(http.StatusForbidden, "not_in_scope", "this token is not scoped to this proxy")
	}
	if p.Err != nil || p.Rules == nil {
		msg := "this proxy's configuration cannot be used right now"
		if p.Err != nil {
			msg += ": " + p.Err.Error()
		}
		return refuse(http.StatusBadGateway, "proxy_misconfigured", msg)
	}
	path, err := policy.CanonicalPath(rawPath, policy.PathOptions{AllowSemicolons: p.Spec.AllowSemicolons})
	if err != nil {
		msg := "the path is not in canonical form"
		var pe *policy.PathError
		if errors.As(err, &pe) {
			msg = pe.Error()
		}
		return refuse(http.StatusBadRequest, "bad_path", msg+"; keyhole forwards only paths whose meaning is unambiguous")
	}
	if p.Spec.CaseInsensitivePaths {
		path = policy.FoldCase(path)
	}
	res.Path = path

	tr := (*rules.Set)(nil)
	if tok != nil {
		tr = tok.RulesFor(p.Spec.CaseInsensitivePaths)
	}
	body, f := testBody(req, hdr, p.Rules.Body || tr != nil && tr.Body, p.Spec.MaxRuleBody)
	if f != nil {
		return refuse(f.status, f.reason, f.message)
	}

	in := &rules.Input{Method: req.Method, Path: path, RawQuery: query, Header: hdr, Agent: ag.Name,
		Labels: ag.Labels, TokenID: req.TokenID, Body: body}
	ex := p.Rules.Explain(in)
	d := ex.Decision
	res.Rules = nonNilResults(ex.Rules)
	res.Report = append(res.Report, d.Report...)
	res.Allow, res.Reason, res.Rule = d.Allow, d.Reason, d.Rule
	if !d.Allow {
		res.Status = http.StatusForbidden
		res.Message = "no rule of this proxy allows this request"
		if d.Rule != "" {
			res.Message = fmt.Sprintf("denied by rule %s of proxy %s", d.Rule, p.Name)
		}
		return res, nil
	}
	res.RateLimit = d.RateLimitSpec()
	if tr != nil {
		tex := tr.Explain(in)
		res.TokenRules = nonNilResults(tex.Rules)
		res.Report = append(res.Report, tex.Decision.Report...)
		if !tex.Decision.Allow {
			res.Allow, res.Rule, res.RateLimit = false, "", ""
			return refuse(http.StatusForbidden, "no_rule_allows:token", "the proxy's rules allow this request, but this token's own rules do not")
		}
		res.TokenRateLimit = tex.Decision.RateLimitSpec()
	}
	return res, nil
}

func nonNilResults(r []rules.RuleResult) []rules.RuleResult {
	if r == nil {
		return []rules.RuleResult{}
	}
	return r
}

// wouldRefuse is a refusal the gateway would answer with.
type wouldRefuse struct {
	status  int
	reason  string
	message string
}

// testBody applies the gateway's body rules (SPEC §5) to a test's body:
// read only when a rule needs it; a GET or HEAD that carries one is
// bad_body; larger than max_rule_body is 413 body_too_large; encodings
// other than identity and gzip are 415; a body labelled JSON that is not
// strict JSON is bad_body. The test's body is the decoded body (what the
// rules read), so a gzip Content-Encoding is accepted as it stands.
func testBody(req *ruleTestRequest, hdr http.Header, need bool, limit int64) (*rules.Body, *wouldRefuse) {
	if !need {
		return nil, nil
	}
	has := req.Body != nil && *req.Body != ""
	if rules.BodylessMethods(req.Method) {
		if has {
			return nil, &wouldRefuse{http.StatusBadRequest, "bad_body",
				req.Method + " requests carry no body on this proxy (its rules read bodies, and GET/HEAD bodies are never parsed)"}
		}
		return nil, nil
	}
	ct := hdr.Get("Content-Type")
	if !has {
		return rules.NewBody(nil, ct), nil
	}
	data := []byte(*req.Body)
	if int64(len(data)) > limit {
		return nil, &wouldRefuse{http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("this proxy's rules read request bodies up to %d bytes (max_rule_body); this one is larger", limit)}
	}
	switch enc := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))); enc {
	case "", "identity", "gzip", "x-gzip":
	default:
		return nil, &wouldRefuse{http.StatusUnsupportedMediaType, "unsupported_encoding",
			"this proxy's rules read request bodies; keyhole decodes gzip only, so send the body uncompressed or gzip-encoded"}
	}
	b := rules.NewBody(data, ct)
	if rules.IsJSONType(ct) {
		if err := b.JSONErr(); err != nil {
			return nil, &wouldRefuse{http.StatusBadRequest, "bad_body", err.Error()}
		}
	}
	return b, nil
}
