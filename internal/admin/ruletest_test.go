package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/netguard"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/token"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// ruleTestFixture is an API over a real SQLite store: proxies with rules,
// two agents, tokens (one a child with its own rules) and admin tokens of
// each role.
type ruleTestFixture struct {
	api    *API
	cat    *catalog.Catalog
	limits *rules.Limits
	admin  string // admin-role token
	viewer string // viewer-role token
}

func newRuleTestFixture(t *testing.T) *ruleTestFixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/k.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, _, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	wk, err := mk.NewDataKey(1)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.AddKey(ctx, store.Key{ID: wk.ID, Wrapped: wk.Wrapped, CreatedAt: at, Active: true}))

	proxy := func(name string, edit func(p *spec.Proxy), rs ...spec.Rule) {
		t.Helper()
		p := spec.NewProxy()
		p.Name, p.Upstream, p.Auth.Type, p.Rules = name, "https://api.example.com", "none", rs
		if edit != nil {
			edit(&p)
		}
		p.Normalize()
		must(p.Validate())
		js, err := json.Marshal(p)
		must(err)
		must(st.PutProxy(ctx, store.Proxy{Name: name, Spec: js, CreatedAt: at, UpdatedAt: at}, true))
	}
	r := func(name, effect, shorthand string, edit func(r *spec.Rule)) spec.Rule {
		rule := spec.Rule{Name: name, Effect: effect}
		var err error
		rule.Methods, rule.Paths, err = policyShorthand(shorthand)
		must(err)
		if edit != nil {
			edit(&rule)
		}
		return rule
	}
	proxy("stripe", nil,
		r("read-customers", "allow", "GET /v1/customers/**", func(r *spec.Rule) { r.Agents = []string{"billing-bot"} }),
		r("charges", "allow", "POST /v1/charges", func(r *spec.Rule) { r.When = "request.json.amount <= 5000"; r.RateLimit = "1/m" }),
		r("no-big", "deny", "POST /v1/charges", func(r *spec.Rule) { r.When = "request.json.amount > 5000" }),
		r("team", "allow", "/v1/team/**", func(r *spec.Rule) { r.AgentLabels = map[string]string{"team": "billing"} }),
		r("token-id", "allow", "GET /v1/me", func(r *spec.Rule) { r.When = "token.id != ''" }),
		r("watch-refunds", "deny", "/v1/refunds/**", func(r *spec.Rule) { r.Mode = "report" }),
		r("refunds", "allow", "GET /v1/refunds/**", nil),
	)
	proxy("ci", func(p *spec.Proxy) { p.CaseInsensitivePaths = true },
		r("no-admin", "deny", "/v1/admin/**", nil),
		r("all", "allow", "/**", nil))
	proxy("plain", nil, r("all", "allow", "/**", nil))
	proxy("small", func(p *spec.Proxy) { p.MaxRuleBody = 16 },
		r("sized", "allow", "/**", func(r *spec.Rule) { r.When = "request.body_size < 100" }))

	must(st.CreateAgent(ctx, store.Agent{Name: "billing-bot", Labels: map[string]string{"team": "billing"}, CreatedAt: at}))
	must(st.CreateAgent(ctx, store.Agent{Name: "ops-bot", Labels: map[string]string{"team": "ops"}, CreatedAt: at}))
	tok := func(id, agent, parent string, proxies []string, rs ...spec.Rule) {
		t.Helper()
		raw, err := token.Generate(token.Agent)
		must(err)
		tk := store.Token{ID: id, Hash: token.Hash(raw), Agent: agent, Proxies: proxies, ParentID: parent, CreatedAt: at}
		if parent != "" {
			tk.Depth = 1
		}
		if len(rs) > 0 {
			tk.Rules, err = json.Marshal(rs)
			must(err)
		}
		must(st.CreateToken(ctx, tk))
	}
	tok("tok_billing", "billing-bot", "", []string{"stripe"})
	tok("tok_child", "billing-bot", "tok_billing", []string{"stripe"},
		r("only-customers", "allow", "GET /v1/customers/**", func(r *spec.Rule) { r.RateLimit = "5/s" }))
	tok("tok_ops", "ops-bot", "", []string{"ci"})

	admTok := func(role string) string {
		raw, err := token.Generate(token.Admin)
		must(err)
		must(st.CreateAdminToken(ctx, store.AdminToken{ID: token.NewID("adm_"), Hash: token.Hash(raw), Name: role, Role: role, CreatedAt: at}))
		return raw
	}
	f := &ruleTestFixture{limits: rules.NewLimits()}
	f.admin, f.viewer = admTok(RoleAdmin), admTok(RoleViewer)
	guard, err := netguard.New(nil)
	must(err)
	f.cat, err = catalog.New(ctx, catalog.Options{Store: st, Master: mk, Guard: guard, Limits: f.limits})
	must(err)
	f.api = New(Options{Store: st, Catalog: f.cat, Master: mk, Node: "test"})
	return f
}

func policyShorthand(s string) ([]string, []string, error) {
	methods, path, ok := strings.Cut(s, " ")
	if !ok {
		return nil, []string{s}, nil
	}
	return strings.Split(methods, ","), []string{path}, nil
}

// post calls the rule test as tok with a raw JSON body.
func (f *ruleTestFixture) post(t *testing.T, tok, proxy, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/proxies/"+proxy+"/rules/test", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, rec.Body.String())
	}
	return rec.Code, m
}

// TestRuleTestAPI: one row per path through a dry evaluation. whys are
// "rule: result: why" lines that must appear, in order, among the
// answer's rules (then token_rules).
func TestRuleTestAPI(t *testing.T) {
	f := newRuleTestFixture(t)
	tests := []struct {
		name       string
		proxy      string
		body       string
		wantHTTP   int
		wantAllow  bool
		wantStatus float64 // 0: absent
		wantReason string
		wantRule   string
		wantMsg    string // substring of message (or of the error's message)
		wantWhys   []string
		wantReport []string
		wantRate   string
		wantPath   string
	}{
		{
			name:  "the brief's example: a deny rule decides",
			proxy: "stripe",
			body: `{"agent":"billing-bot","method":"POST","path":"/v1/charges","query":"a=1",
			        "headers":{"Content-Type":["application/json"]},"body":"{\"amount\":9000}"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "denied_by_rule:no-big", wantRule: "no-big",
			wantMsg: "denied by rule no-big of proxy stripe",
			wantWhys: []string{
				"read-customers: no_match: method POST not in [GET]",
				"charges: no_match: condition false",
				"no-big: matched: matched",
				"team: no_match: path /v1/charges matches none of [/v1/team/**]",
				"token-id: no_match: method POST not in [GET]",
			},
			wantPath: "/v1/charges",
		},
		{
			name:     "allowed, with the rate limit named and not consumed",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"POST","path":"/v1/charges","headers":{"content-type":["application/json"]},"body":"{\"amount\":50}"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:charges", wantRule: "charges",
			wantWhys: []string{"charges: matched: matched", "no-big: no_match: condition false"},
			wantRate: "1/m",
		},
		{
			name:     "no rule allows",
			proxy:    "stripe",
			body:     `{"agent":"ops-bot","method":"DELETE","path":"/v1/customers/cus_1"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "no_rule_allows", wantMsg: "no rule of this proxy allows this request",
			wantWhys: []string{"read-customers: no_match: agent ops-bot not selected (agents [billing-bot])", "team: no_match: label team=billing missing (the agent has team=ops)"},
		},
		{
			name:     "labels come from the stored agent",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/team/x"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:team", wantRule: "team",
		},
		{
			name:     "report rules are reported",
			proxy:    "stripe",
			body:     `{"agent":"ops-bot","method":"GET","path":"/v1/refunds/re_1"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:refunds", wantRule: "refunds",
			wantReport: []string{"report:denied_by_rule:watch-refunds"},
			wantWhys:   []string{"watch-refunds: matched: matched (report mode: recorded, never enforced)"},
		},
		{
			name:     "erroring deny fails closed: a text body is not JSON",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"POST","path":"/v1/charges","headers":{"Content-Type":["text/plain"]},"body":"amount=9000"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "denied_by_rule:no-big", wantRule: "no-big",
			wantWhys: []string{"charges: error: condition error: no such key: json (fails closed: allow does not match)",
				"no-big: error: condition error: no such key: json (fails closed: deny matches)"},
		},
		{
			name:     "a JSON body labelled text is still JSON to the rules",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"POST","path":"/v1/charges","headers":{"Content-Type":["text/plain"]},"body":"{\"amount\":9000}"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "denied_by_rule:no-big", wantRule: "no-big",
		},
		{
			name:     "query in the path",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/customers/c?limit=3"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:read-customers", wantRule: "read-customers",
		},
		{
			name:     "bad path",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/customers/%2e%2e/admin"}`,
			wantHTTP: 200, wantStatus: 400, wantReason: "bad_path", wantMsg: "dot segment",
		},
		{
			name:     "percent-encoded path is decoded as at the gateway",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/customers/%63us"}`,
			wantHTTP: 200, wantAllow: true, wantRule: "read-customers", wantReason: "allowed_by_rule:read-customers", wantPath: "/v1/customers/cus",
		},
		{
			name:     "case-insensitive proxy folds the path",
			proxy:    "ci",
			body:     `{"agent":"ops-bot","method":"GET","path":"/V1/ADMIN/users"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "denied_by_rule:no-admin", wantRule: "no-admin", wantPath: "/v1/admin/users",
		},
		{
			name:     "body above max_rule_body",
			proxy:    "small",
			body:     `{"agent":"ops-bot","method":"POST","path":"/x","body":"` + strings.Repeat("a", 17) + `"}`,
			wantHTTP: 200, wantStatus: 413, wantReason: "body_too_large", wantMsg: "up to 16 bytes",
		},
		{
			name:     "body at max_rule_body",
			proxy:    "small",
			body:     `{"agent":"ops-bot","method":"POST","path":"/x","body":"` + strings.Repeat("a", 16) + `"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:sized", wantRule: "sized",
		},
		{
			name:     "GET with a body on a body-reading proxy",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/customers/c","body":"{}"}`,
			wantHTTP: 200, wantStatus: 400, wantReason: "bad_body", wantMsg: "GET requests carry no body",
		},
		{
			name:     "GET with a body where no rule reads bodies",
			proxy:    "plain",
			body:     `{"agent":"billing-bot","method":"GET","path":"/","body":"{}"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:all", wantRule: "all",
		},
		{
			name:     "JSON-labelled body that is not strict JSON",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"POST","path":"/v1/charges","headers":{"Content-Type":["application/json"]},"body":"{\"amount\":1,\"amount\":9000}"}`,
			wantHTTP: 200, wantStatus: 400, wantReason: "bad_body", wantMsg: `repeats the key "amount"`,
		},
		{
			name:     "unsupported encoding",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"POST","path":"/v1/charges","headers":{"Content-Encoding":["br"]},"body":"{}"}`,
			wantHTTP: 200, wantStatus: 415, wantReason: "unsupported_encoding",
		},
		{
			name:     "TRACE is never forwarded",
			proxy:    "plain",
			body:     `{"agent":"billing-bot","method":"TRACE","path":"/"}`,
			wantHTTP: 200, wantStatus: 405, wantReason: "method_not_allowed",
		},
		{
			name:     "token id reaches conditions",
			proxy:    "stripe",
			body:     `{"method":"GET","path":"/v1/me","token_id":"tok_billing"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:token-id", wantRule: "token-id",
		},
		{
			name:     "without a token, token.id is empty",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/me"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "no_rule_allows", wantWhys: []string{"token-id: no_match: condition false"},
		},
		{
			name:     "a child token's own rules narrow the proxy's",
			proxy:    "stripe",
			body:     `{"agent":"billing-bot","method":"GET","path":"/v1/refunds/re_1","token_id":"tok_child"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "no_rule_allows:token", wantMsg: "this token's own rules do not",
			wantWhys:   []string{"refunds: matched: matched", "only-customers: no_match: path /v1/refunds/re_1 matches none of [/v1/customers/**]"},
			wantReport: []string{"report:denied_by_rule:watch-refunds"},
		},
		{
			name:     "a child token's own rules allow",
			proxy:    "stripe",
			body:     `{"method":"GET","path":"/v1/customers/c","token_id":"tok_child"}`,
			wantHTTP: 200, wantAllow: true, wantReason: "allowed_by_rule:read-customers", wantRule: "read-customers",
			wantWhys: []string{"only-customers: matched: matched"},
		},
		{
			name:     "token out of scope",
			proxy:    "plain",
			body:     `{"method":"GET","path":"/","token_id":"tok_billing"}`,
			wantHTTP: 200, wantStatus: 403, wantReason: "not_in_scope",
		},

		{name: "unknown agent", proxy: "stripe", body: `{"agent":"nobody","method":"GET","path":"/"}`, wantHTTP: 400, wantMsg: `agent "nobody" does not exist`},
		{name: "no agent", proxy: "stripe", body: `{"method":"GET","path":"/"}`, wantHTTP: 400, wantMsg: "agent is required"},
		{name: "unknown token", proxy: "stripe", body: `{"method":"GET","path":"/","token_id":"tok_nope"}`, wantHTTP: 400, wantMsg: `token "tok_nope" does not exist`},
		{name: "token of another agent", proxy: "stripe", body: `{"agent":"ops-bot","method":"GET","path":"/","token_id":"tok_billing"}`, wantHTTP: 400, wantMsg: "belongs to agent billing-bot"},
		{name: "no method", proxy: "stripe", body: `{"agent":"ops-bot","path":"/"}`, wantHTTP: 400, wantMsg: "method is required"},
		{name: "relative path", proxy: "stripe", body: `{"agent":"ops-bot","method":"GET","path":"v1/x"}`, wantHTTP: 400, wantMsg: "starts with /"},
		{name: "query twice", proxy: "stripe", body: `{"agent":"ops-bot","method":"GET","path":"/x?a=1","query":"b=2"}`, wantHTTP: 400, wantMsg: "not both"},
		{name: "bad header name", proxy: "stripe", body: `{"agent":"ops-bot","method":"GET","path":"/","headers":{"a b":["1"]}}`, wantHTTP: 400, wantMsg: "not a valid header name"},
		{name: "unknown field", proxy: "stripe", body: `{"agent":"ops-bot","method":"GET","path":"/","Body":"x"}`, wantHTTP: 400, wantMsg: `unknown field "Body" in the rule test (did you mean "body"?)`},
		{name: "duplicate field", proxy: "stripe", body: `{"agent":"ops-bot","agent":"billing-bot","method":"GET","path":"/"}`, wantHTTP: 400, wantMsg: `repeats the key "agent"`},
		{name: "body is a string", proxy: "stripe", body: `{"agent":"ops-bot","method":"POST","path":"/","body":{"amount":1}}`, wantHTTP: 400, wantMsg: `field "body" must be a string`},
		{name: "unknown proxy", proxy: "nope", body: `{"agent":"ops-bot","method":"GET","path":"/"}`, wantHTTP: 404, wantMsg: "proxy nope does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, m := f.post(t, f.admin, tt.proxy, tt.body)
			if code != tt.wantHTTP {
				t.Fatalf("HTTP %d, want %d: %v", code, tt.wantHTTP, m)
			}
			if code != 200 {
				e, _ := m["error"].(map[string]any)
				if msg, _ := e["message"].(string); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("error %v, want a message containing %q", m, tt.wantMsg)
				}
				return
			}
			if m["allow"] != tt.wantAllow || m["reason"] != tt.wantReason || m["rule"] != tt.wantRule {
				t.Errorf("allow, reason, rule = %v, %v, %v; want %v, %v, %v", m["allow"], m["reason"], m["rule"], tt.wantAllow, tt.wantReason, tt.wantRule)
			}
			if st, _ := m["status"].(float64); st != tt.wantStatus {
				t.Errorf("status = %v, want %v", m["status"], tt.wantStatus)
			}
			if msg, _ := m["message"].(string); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q, want it to contain %q", msg, tt.wantMsg)
			}
			if rl, _ := m["rate_limit"].(string); rl != tt.wantRate {
				t.Errorf("rate_limit = %q, want %q", rl, tt.wantRate)
			}
			if tt.wantPath != "" && m["path"] != tt.wantPath {
				t.Errorf("path = %v, want %q", m["path"], tt.wantPath)
			}
			var lines []string
			for _, key := range []string{"rules", "token_rules"} {
				list, _ := m[key].([]any)
				for _, e := range list {
					r := e.(map[string]any)
					lines = append(lines, r["name"].(string)+": "+r["result"].(string)+": "+r["why"].(string))
					if r["effect"] == "" || r["mode"] == "" {
						t.Errorf("rule %v has no effect or mode", r)
					}
				}
			}
			if _, ok := m["rules"].([]any); !ok {
				t.Errorf("rules is not a list: %v", m["rules"])
			}
			j := 0
			for _, w := range tt.wantWhys {
				for j < len(lines) && !strings.HasPrefix(lines[j], w) {
					j++
				}
				if j == len(lines) {
					t.Errorf("no result %q (in order) among:\n%s", w, strings.Join(lines, "\n"))
					break
				}
			}
			report, _ := m["report"].([]any)
			var got []string
			for _, r := range report {
				got = append(got, r.(string))
			}
			if strings.Join(got, ",") != strings.Join(tt.wantReport, ",") {
				t.Errorf("report = %q, want %q", got, tt.wantReport)
			}
		})
	}
}

// Any role may test rules (it changes nothing), and a test consumes no
// rate limit: the rule "charges" allows one request a minute, and after
// many tests the real first request is still allowed.
func TestRuleTestAnyRoleAndNoSideEffects(t *testing.T) {
	f := newRuleTestFixture(t)
	body := `{"agent":"billing-bot","method":"POST","path":"/v1/charges","headers":{"Content-Type":["application/json"]},"body":"{\"amount\":1}"}`
	for range 5 {
		for _, tok := range []string{f.admin, f.viewer} {
			code, m := f.post(t, tok, "stripe", body)
			if code != 200 || m["allow"] != true {
				t.Fatalf("HTTP %d %v", code, m)
			}
		}
	}
	snap := f.cat.Load()
	d := snap.Proxy("stripe").Rules.Decide(&rules.Input{Method: "POST", Path: "/v1/charges", Agent: "billing-bot",
		Body: rules.NewBody([]byte(`{"amount":1}`), "application/json")})
	if ok, _ := d.RateLimit("billing-bot", time.Now()); !ok {
		t.Fatal("a rule test consumed the rule's rate limit")
	}
	if ok, _ := d.RateLimit("billing-bot", time.Now()); ok {
		t.Fatal("the limit 1/m allowed a second request")
	}
}

// The route is POST only; other methods answer 405 with Allow.
func TestRuleTestRoute(t *testing.T) {
	f := newRuleTestFixture(t)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/proxies/stripe/rules/test", nil)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Header().Get("Allow"), "POST") {
		t.Errorf("GET → %d (Allow %q)", rec.Code, rec.Header().Get("Allow"))
	}
}
