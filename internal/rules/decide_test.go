package rules

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhole-gw/keyhole/internal/policy"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

func mustCompile(t testing.TB, opt Options, rs ...spec.Rule) *Set {
	t.Helper()
	s, err := Compile(rs, opt)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

func rule(name, effect string, paths ...string) spec.Rule {
	return spec.Rule{Name: name, Effect: effect, Paths: paths}
}

// w returns r changed by f.
func w(r spec.Rule, f func(*spec.Rule)) spec.Rule { f(&r); return r }

// decisionOpts compares Decisions on their exported fields.
var decisionOpts = cmp.Options{cmpopts.IgnoreUnexported(Decision{}), cmpopts.EquateEmpty()}

func TestDecide(t *testing.T) {
	filters := &spec.Filters{Remove: []string{"**.ssn"}}
	get := func(path string) *Input { return &Input{Method: "GET", Path: path, Agent: "bot"} }
	tests := []struct {
		name  string
		opt   Options
		rules []spec.Rule
		in    *Input
		want  Decision
	}{
		{
			name: "no rules allow nothing",
			in:   get("/"),
			want: Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "allow",
			rules: []spec.Rule{rule("a", "allow", "/v1/**")},
			in:    get("/v1/x"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "no match",
			rules: []spec.Rule{rule("a", "allow", "/v1/**")},
			in:    get("/v2/x"),
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "deny before allow",
			rules: []spec.Rule{rule("d", "deny", "/v1/admin/**"), rule("a", "allow", "/v1/**")},
			in:    get("/v1/admin/users"),
			want:  Decision{Rule: "d", Reason: "denied_by_rule:d"},
		},
		{
			name:  "deny after allow still wins",
			rules: []spec.Rule{rule("a", "allow", "/v1/**"), rule("d", "deny", "/v1/admin/**")},
			in:    get("/v1/admin/users"),
			want:  Decision{Rule: "d", Reason: "denied_by_rule:d"},
		},
		{
			name:  "first of two denies names the rule",
			rules: []spec.Rule{rule("a", "allow", "/**"), rule("d1", "deny", "/x"), rule("d2", "deny", "/x")},
			in:    get("/x"),
			want:  Decision{Rule: "d1", Reason: "denied_by_rule:d1"},
		},
		{
			name:  "deny not matching lets allow through",
			rules: []spec.Rule{rule("a", "allow", "/v1/**"), rule("d", "deny", "/v1/admin/**")},
			in:    get("/v1/customers"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name: "first matching allow decides and carries its filters",
			rules: []spec.Rule{
				rule("other", "allow", "/v2/**"),
				w(rule("first", "allow", "/v1/*"), func(r *spec.Rule) { r.ResponseFilters = filters }),
				w(rule("second", "allow", "/v1/**"), func(r *spec.Rule) { r.ResponseFilters = &spec.Filters{Mask: []string{"x"}} }),
			},
			in:   get("/v1/c"),
			want: Decision{Allow: true, Rule: "first", Reason: "allowed_by_rule:first", Filters: filters},
		},
		{
			name: "allow without filters has none",
			rules: []spec.Rule{
				rule("plain", "allow", "/v1/*"),
				w(rule("filtered", "allow", "/v1/**"), func(r *spec.Rule) { r.ResponseFilters = filters }),
			},
			in:   get("/v1/c"),
			want: Decision{Allow: true, Rule: "plain", Reason: "allowed_by_rule:plain"},
		},
		{
			name:  "agents selector matches",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.Agents = []string{"other", "bot"} })},
			in:    get("/x"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "agents selector excludes",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.Agents = []string{"other"} })},
			in:    get("/x"),
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "deny for another agent does not apply",
			rules: []spec.Rule{rule("a", "allow", "/**"), w(rule("d", "deny", "/**"), func(r *spec.Rule) { r.Agents = []string{"other"} })},
			in:    get("/x"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "labels match",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.AgentLabels = map[string]string{"team": "billing", "env": "prod"} })},
			in:    &Input{Method: "GET", Path: "/x", Labels: map[string]string{"team": "billing", "env": "prod", "extra": "1"}},
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "label missing",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.AgentLabels = map[string]string{"team": "billing", "env": "prod"} })},
			in:    &Input{Method: "GET", Path: "/x", Labels: map[string]string{"team": "billing"}},
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "label wrong value",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.AgentLabels = map[string]string{"team": "billing"} })},
			in:    &Input{Method: "GET", Path: "/x", Labels: map[string]string{"team": "Billing"}},
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "label selector with empty value needs the label",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.AgentLabels = map[string]string{"team": ""} })},
			in:    &Input{Method: "GET", Path: "/x"},
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "agents and labels both required",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.Agents = []string{"bot"}; r.AgentLabels = map[string]string{"team": "x"} })},
			in:    &Input{Method: "GET", Path: "/x", Agent: "bot", Labels: map[string]string{"team": "y"}},
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "method in set",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.Methods = []string{"GET", "HEAD"} })},
			in:    &Input{Method: "HEAD", Path: "/x"},
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "method not in set",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.Methods = []string{"GET", "HEAD"} })},
			in:    &Input{Method: "POST", Path: "/x"},
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "methods are case-sensitive (RFC 9110 §9.1)",
			rules: []spec.Rule{w(rule("a", "allow", "/**"), func(r *spec.Rule) { r.Methods = []string{"GET"} })},
			in:    &Input{Method: "get", Path: "/x"},
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "no methods means every method",
			rules: []spec.Rule{rule("a", "allow", "/**")},
			in:    &Input{Method: "PROPFIND", Path: "/x"},
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "star is one segment",
			rules: []spec.Rule{rule("a", "allow", "/v1/customers/*")},
			in:    get("/v1/customers/cus_1/cards"),
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "double star zero segments",
			rules: []spec.Rule{rule("a", "allow", "/v2/**")},
			in:    get("/v2"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "double star many segments",
			rules: []spec.Rule{rule("a", "allow", "/v2/**")},
			in:    get("/v2/a/b/c"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "double star not a prefix match",
			rules: []spec.Rule{rule("a", "allow", "/v2/**")},
			in:    get("/v2x"),
			want:  Decision{Reason: "no_rule_allows"},
		},
		{
			name:  "second path of a rule",
			rules: []spec.Rule{rule("a", "allow", "/v1/customers", "/v1/customers/*")},
			in:    get("/v1/customers/cus_1"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "case-sensitive deny is dodged by case",
			rules: []spec.Rule{rule("a", "allow", "/**"), rule("d", "deny", "/v1/admin/**")},
			in:    get("/V1/ADMIN/x"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name:  "case-insensitive set folds patterns",
			opt:   Options{CaseInsensitive: true},
			rules: []spec.Rule{rule("a", "allow", "/**"), rule("d", "deny", "/V1/Admin/**")},
			in:    get(policy.FoldCase("/v1/ADMIN/x")),
			want:  Decision{Rule: "d", Reason: "denied_by_rule:d"},
		},
		{
			name:  "case-insensitive allow",
			opt:   Options{CaseInsensitive: true},
			rules: []spec.Rule{rule("a", "allow", "/Customers/*")},
			in:    get(policy.FoldCase("/CUSTOMERS/Cus_1")),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
		{
			name: "report deny never decides",
			rules: []spec.Rule{
				w(rule("x", "deny", "/**"), func(r *spec.Rule) { r.Mode = "report" }),
				rule("a", "allow", "/**"),
			},
			in:   get("/x"),
			want: Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a", Report: []string{"report:denied_by_rule:x"}},
		},
		{
			name: "report allow never decides",
			rules: []spec.Rule{
				w(rule("x", "allow", "/**"), func(r *spec.Rule) { r.Mode = "report" }),
			},
			in:   get("/x"),
			want: Decision{Reason: "no_rule_allows", Report: []string{"report:allowed_by_rule:x"}},
		},
		{
			name: "report rules recorded even after a deny",
			rules: []spec.Rule{
				rule("d", "deny", "/**"),
				w(rule("r1", "allow", "/**"), func(r *spec.Rule) { r.Mode = "report" }),
				w(rule("r2", "deny", "/**"), func(r *spec.Rule) { r.Mode = "report" }),
				w(rule("r3", "deny", "/other"), func(r *spec.Rule) { r.Mode = "report" }),
			},
			in:   get("/x"),
			want: Decision{Rule: "d", Reason: "denied_by_rule:d", Report: []string{"report:allowed_by_rule:r1", "report:denied_by_rule:r2"}},
		},
		{
			name: "report allow does not carry filters",
			rules: []spec.Rule{
				w(rule("x", "allow", "/**"), func(r *spec.Rule) { r.Mode = "report"; r.ResponseFilters = filters }),
				rule("a", "allow", "/**"),
			},
			in:   get("/x"),
			want: Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a", Report: []string{"report:allowed_by_rule:x"}},
		},
		{
			name:  "allow-only set",
			opt:   Options{AllowOnly: true},
			rules: []spec.Rule{rule("a", "allow", "/v1/*")},
			in:    get("/v1/x"),
			want:  Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.opt, tt.rules...)
			got := s.Decide(tt.in)
			if diff := cmp.Diff(tt.want, got, decisionOpts); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if tt.want.Filters != nil && got.Filters != tt.want.Filters {
				t.Errorf("Filters is not the deciding rule's")
			}
		})
	}
}

func TestDecideNilSet(t *testing.T) {
	var s *Set
	if d := s.Decide(&Input{Method: "GET", Path: "/"}); d.Allow || d.Reason != "no_rule_allows" {
		t.Errorf("nil Set decided %+v", d)
	}
	if s.Rules() != nil {
		t.Error("nil Set has rules")
	}
}

// condInput builds a POST carrying body (nil: no body) with ct.
func condInput(body, ct, query string, h http.Header) *Input {
	in := &Input{Method: "POST", Path: "/x", RawQuery: query, Header: h, Agent: "billing-bot",
		Labels: map[string]string{"team": "billing"}, TokenID: "tok_1"}
	if body != "\x00nil" {
		in.Body = NewBody([]byte(body), ct)
	}
	return in
}

const noBody = "\x00nil"

// TestConditions evaluates one `when` as an allow rule and as a deny rule
// over one request. wantAllow is the allow rule's verdict; an erroring
// condition (wantErr) must not match the allow and must match the deny
// (fail closed, SPEC §5).
func TestConditions(t *testing.T) {
	hdr := http.Header{"X-Request-Tag": {"a", "b"}, "Content-Type": {"application/json"}, "X-Empty": {""}}
	tests := []struct {
		name      string
		when      string
		body      string
		ct        string
		query     string
		header    http.Header
		wantAllow bool
		wantErr   bool // the condition errors: allow does not match, deny does
	}{
		// request.json numbers: int when integral and fits int64, else double.
		{name: "amount 99.5", when: "request.json.amount <= 100", body: `{"amount":99.5}`, wantAllow: true},
		{name: "amount 100.5", when: "request.json.amount <= 100", body: `{"amount":100.5}`, wantAllow: false},
		{name: "amount 100", when: "request.json.amount <= 100", body: `{"amount":100}`, wantAllow: true},
		{name: "amount 1e2", when: "request.json.amount <= 100", body: `{"amount":1e2}`, wantAllow: true},
		{name: "amount 2^63", when: "request.json.amount <= 100", body: `{"amount":9223372036854775808}`, wantAllow: false},
		{name: "amount -2^63", when: "request.json.amount <= 100", body: `{"amount":-9223372036854775808}`, wantAllow: true},
		{name: "amount is int", when: "type(request.json.amount) == int", body: `{"amount":100}`, wantAllow: true},
		{name: "amount 1.0 is double", when: "type(request.json.amount) == double", body: `{"amount":1.0}`, wantAllow: true},
		{name: "amount 1e2 is double", when: "type(request.json.amount) == double", body: `{"amount":1e2}`, wantAllow: true},
		{name: "amount 2^63 is double", when: "type(request.json.amount) == double", body: `{"amount":9223372036854775808}`, wantAllow: true},
		{name: "int equals double", when: "request.json.a == 1.0", body: `{"a":1}`, wantAllow: true},
		{name: "amount string errors", when: "request.json.amount <= 100", body: `{"amount":"5"}`, wantErr: true},
		{name: "amount missing errors", when: "request.json.amount <= 100", body: `{"other":1}`, wantErr: true},
		{name: "has on missing key", when: "has(request.json.amount)", body: `{"other":1}`, wantAllow: false},
		{name: "nested", when: "request.json.params.name == 'create_issue'", body: `{"method":"tools/call","params":{"name":"create_issue"}}`, wantAllow: true},
		{name: "array", when: "request.json.items.all(i, i.qty < 10)", body: `{"items":[{"qty":1},{"qty":9}]}`, wantAllow: true},
		{name: "array one over", when: "request.json.items.exists(i, i.qty >= 10)", body: `{"items":[{"qty":1},{"qty":10}]}`, wantAllow: true},
		{name: "bool field", when: "request.json.flag == true", body: `{"flag":true}`, wantAllow: true},
		{name: "null field", when: "request.json.x == null", body: `{"x":null}`, wantAllow: true},
		{name: "keys are case-sensitive", when: "has(request.json.Amount)", body: `{"amount":1}`, wantAllow: false},
		{name: "top-level scalar", when: "request.json == 5", body: `5`, wantAllow: true},
		{name: "JSON whatever the content type", when: "request.json.a == 1", body: `{"a":1}`, ct: "text/plain", wantAllow: true},
		{name: "JSON with no content type", when: "request.json.a == 1", body: `{"a":1}`, ct: "", wantAllow: true},
		// Bodies that are not JSON: reading request.json errors.
		{name: "non-JSON body errors", when: "request.json.a == 1", body: `a=1`, ct: "application/x-www-form-urlencoded", wantErr: true},
		{name: "duplicate keys are not JSON", when: "request.json.a == 1", body: `{"a":1,"a":2}`, wantErr: true},
		{name: "empty body is not JSON", when: "request.json.a == 1", body: ``, wantErr: true},
		{name: "no body is not JSON", when: "request.json.a == 1", body: noBody, wantErr: true},
		{name: "has(request.json) on text", when: "has(request.json)", body: `hello`, wantAllow: false},
		{name: "has(request.json) on JSON", when: "has(request.json)", body: `{}`, wantAllow: true},
		// Other evaluation errors.
		{name: "divide by zero", when: "request.json.a / 0 == 1", body: `{"a":1}`, wantErr: true},
		{name: "constant divide by zero", when: "1 / 0 == 1", body: noBody, wantErr: true},
		{name: "bad int conversion", when: "int(request.query['limit'][0]) <= 100", query: "limit=ten", body: noBody, wantErr: true},
		{name: "index out of range", when: "request.query['limit'][1] == 'x'", query: "limit=1", body: noBody, wantErr: true},
		{name: "error absorbed by or", when: "request.json.a == 1 || true", body: `nope`, wantAllow: true},
		{name: "error absorbed by and", when: "false && request.json.a == 1", body: `nope`, wantAllow: false},
		// request.query: map of lists.
		{name: "query limit", when: "int(request.query['limit'][0]) <= 100", query: "limit=3", body: noBody, wantAllow: true},
		{name: "query limit over", when: "int(request.query['limit'][0]) <= 100", query: "limit=101", body: noBody, wantAllow: false},
		{name: "query repeated", when: "request.query['a'] == ['1', '2']", query: "a=1&a=2", body: noBody, wantAllow: true},
		{name: "query decoded", when: "request.query['q'][0] == 'a b&c'", query: "q=a+b%26c", body: noBody, wantAllow: true},
		{name: "query absent key", when: "'limit' in request.query", query: "a=1", body: noBody, wantAllow: false},
		{name: "query missing key errors", when: "request.query['limit'][0] == '1'", query: "", body: noBody, wantErr: true},
		{name: "query empty", when: "size(request.query) == 0", query: "", body: noBody, wantAllow: true},
		// request.headers: lower-cased names, map of lists.
		{name: "header lower-cased", when: "request.headers['x-request-tag'] == ['a', 'b']", header: hdr, body: noBody, wantAllow: true},
		{name: "header canonical name absent", when: "'X-Request-Tag' in request.headers", header: hdr, body: noBody, wantAllow: false},
		{name: "header empty value", when: "request.headers['x-empty'][0] == ''", header: hdr, body: noBody, wantAllow: true},
		{name: "no headers", when: "size(request.headers) == 0", header: nil, body: noBody, wantAllow: true},
		// request.form.
		{name: "form", when: "request.form['amount'][0] == '500'", body: "amount=500&currency=usd", ct: "application/x-www-form-urlencoded", wantAllow: true},
		{name: "form repeated", when: "request.form['expand[]'] == ['a', 'b']", body: "expand%5B%5D=a&expand%5B%5D=b", ct: "application/x-www-form-urlencoded; charset=utf-8", wantAllow: true},
		{name: "form needs its content type", when: "has(request.form)", body: "a=1", ct: "text/plain", wantAllow: false},
		{name: "form that does not parse", when: "request.form['a'][0] == '1'", body: "a=%zz", ct: "application/x-www-form-urlencoded", wantErr: true},
		// request.body_size.
		{name: "body_size", when: "request.body_size == 7", body: `{"a":1}`, wantAllow: true},
		{name: "body_size no body", when: "request.body_size == 0", body: noBody, wantAllow: true},
		{name: "body_size not JSON", when: "request.body_size == 3", body: "abc", wantAllow: true},
		// agent and token.
		{name: "agent name", when: "agent.name == 'billing-bot'", body: noBody, wantAllow: true},
		{name: "agent labels", when: "agent.labels.team == 'billing'", body: noBody, wantAllow: true},
		{name: "agent label missing errors", when: "agent.labels.env == 'prod'", body: noBody, wantErr: true},
		{name: "agent label has", when: "has(agent.labels.env)", body: noBody, wantAllow: false},
		{name: "token id", when: "token.id == 'tok_1'", body: noBody, wantAllow: true},
		// method and path.
		{name: "method", when: "request.method == 'POST'", body: noBody, wantAllow: true},
		{name: "path", when: "request.path.startsWith('/x')", body: noBody, wantAllow: true},
		// request whole.
		{name: "request whole sees json", when: "'json' in request && request.json.a == 1", body: `{"a":1}`, wantAllow: true},
		{name: "request whole sees every field", when: "['method','path','query','headers','body_size','json'].all(k, k in request)", body: `{}`, wantAllow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allow := w(rule("c", "allow", "/**"), func(r *spec.Rule) { r.When = tt.when })
			deny := w(rule("c", "deny", "/**"), func(r *spec.Rule) { r.When = tt.when })
			in := func() *Input { return condInput(tt.body, tt.ct, tt.query, tt.header) }

			// The condition's own verdict, error included.
			c, err := compileCondition(tt.when)
			if err != nil {
				t.Fatalf("compileCondition: %v", err)
			}
			got, evalErr := newEval(in()).eval(c)
			if (evalErr != nil) != tt.wantErr {
				t.Fatalf("eval = %v, %v; want error %v", got, evalErr, tt.wantErr)
			}
			if !tt.wantErr && got != tt.wantAllow {
				t.Fatalf("eval = %v, want %v", got, tt.wantAllow)
			}

			wantAllow := tt.wantAllow && !tt.wantErr
			if d := mustCompile(t, Options{}, allow).Decide(in()); d.Allow != wantAllow {
				t.Errorf("allow rule: Decide = %+v, want Allow %v", d, wantAllow)
			}
			wantDeny := tt.wantAllow || tt.wantErr
			d := mustCompile(t, Options{}, deny, rule("all", "allow", "/**")).Decide(in())
			if gotDeny := d.Reason == "denied_by_rule:c"; gotDeny != wantDeny {
				t.Errorf("deny rule: Decide = %+v, want deny %v", d, wantDeny)
			}
		})
	}
}

// A report rule whose condition errors is recorded as its enforce twin
// would act: a report deny as matching, a report allow as not.
func TestReportFailClosed(t *testing.T) {
	s := mustCompile(t, Options{},
		w(rule("rd", "deny", "/**"), func(r *spec.Rule) { r.Mode = "report"; r.When = "request.json.a == 1" }),
		w(rule("ra", "allow", "/**"), func(r *spec.Rule) { r.Mode = "report"; r.When = "request.json.a == 1" }),
		rule("a", "allow", "/**"),
	)
	d := s.Decide(condInput("not json", "text/plain", "", nil))
	want := Decision{Allow: true, Rule: "a", Reason: "allowed_by_rule:a", Report: []string{"report:denied_by_rule:rd"}}
	if diff := cmp.Diff(want, d, decisionOpts); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The activation is built lazily and once: a condition reading only the
// method builds no query, headers or body fields, and two conditions
// reading the body parse it once.
func TestLazyActivation(t *testing.T) {
	tests := []struct {
		name      string
		when      []string
		wantKeys  []string
		wantParse bool
	}{
		{name: "method only", when: []string{"request.method == 'POST'"}, wantKeys: []string{"method", "path"}},
		{name: "query", when: []string{"'a' in request.query"}, wantKeys: []string{"method", "path", "query"}},
		{name: "headers", when: []string{"'a' in request.headers"}, wantKeys: []string{"headers", "method", "path"}},
		{name: "json", when: []string{"has(request.json)"}, wantKeys: []string{"json", "method", "path"}, wantParse: true},
		{name: "body_size does not parse", when: []string{"request.body_size > 0"}, wantKeys: []string{"body_size", "method", "path"}},
		{name: "two conditions", when: []string{"request.json.a == 1", "request.body_size > 0"}, wantKeys: []string{"body_size", "json", "method", "path"}, wantParse: true},
		{name: "whole", when: []string{"size(request) > 0"}, wantKeys: []string{"body_size", "headers", "json", "method", "path", "query"}, wantParse: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := condInput(`{"a":1}`, "application/json", "a=1", http.Header{"A": {"1"}})
			ev := newEval(in)
			for _, src := range tt.when {
				c, err := compileCondition(src)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ev.eval(c); err != nil {
					t.Fatalf("eval(%q): %v", src, err)
				}
			}
			var keys []string
			for k := range ev.request {
				keys = append(keys, k)
			}
			if diff := cmp.Diff(tt.wantKeys, keys, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("activation keys (-want +got):\n%s", diff)
			}
			parsed := in.Body.json != nil || in.Body.jsonErr != nil
			if parsed != tt.wantParse {
				t.Errorf("body parsed = %v, want %v", parsed, tt.wantParse)
			}
		})
	}
}

// Rate limits through Decide: the deciding allow rule's limit, per agent
// and per rule, each with its own budget.
func TestDecisionRateLimit(t *testing.T) {
	lim := NewLimits()
	s := mustCompile(t, Options{Proxy: "p", Limits: lim},
		w(rule("one", "allow", "/one"), func(r *spec.Rule) { r.RateLimit = "2/m" }),
		w(rule("two", "allow", "/two"), func(r *spec.Rule) { r.RateLimit = "1/m" }),
		rule("free", "allow", "/free"),
	)
	other := mustCompile(t, Options{Proxy: "q", Limits: lim},
		w(rule("one", "allow", "/one"), func(r *spec.Rule) { r.RateLimit = "2/m" }),
	)
	now := t0
	try := func(s *Set, agent, path string) bool {
		d := s.Decide(&Input{Method: "GET", Path: path, Agent: agent})
		if !d.Allow {
			t.Fatalf("%s %s not allowed: %+v", agent, path, d)
		}
		ok, _ := d.RateLimit(agent, now)
		return ok
	}
	tests := []struct {
		name  string
		set   *Set
		agent string
		path  string
		want  bool
	}{
		{name: "a one 1", set: s, agent: "a", path: "/one", want: true},
		{name: "a one 2", set: s, agent: "a", path: "/one", want: true},
		{name: "a one 3 refused", set: s, agent: "a", path: "/one", want: false},
		{name: "b has its own budget", set: s, agent: "b", path: "/one", want: true},
		{name: "a two is another rule", set: s, agent: "a", path: "/two", want: true},
		{name: "a two 2 refused", set: s, agent: "a", path: "/two", want: false},
		{name: "same rule name on another proxy", set: other, agent: "a", path: "/one", want: true},
		{name: "rule without a limit", set: s, agent: "a", path: "/free", want: true},
		{name: "rule without a limit again", set: s, agent: "a", path: "/free", want: true},
	}
	for _, tt := range tests {
		if got := try(tt.set, tt.agent, tt.path); got != tt.want {
			t.Errorf("%s: RateLimit = %v, want %v", tt.name, got, tt.want)
		}
	}
	// A denied decision has no limit to spend.
	d := s.Decide(&Input{Method: "GET", Path: "/nowhere", Agent: "a"})
	if ok, wait := d.RateLimit("a", now); !ok || wait != 0 {
		t.Errorf("RateLimit of a refusal = %v, %v", ok, wait)
	}
	// Without Limits, no rate limiting at all.
	nl := mustCompile(t, Options{}, w(rule("one", "allow", "/one"), func(r *spec.Rule) { r.RateLimit = "1/m" }))
	for i := range 3 {
		d := nl.Decide(&Input{Method: "GET", Path: "/one", Agent: "a"})
		if ok, _ := d.RateLimit("a", now); !ok {
			t.Fatalf("request %d limited without Limits", i)
		}
	}
}
