package rules

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

func TestExplain(t *testing.T) {
	post := func(path, body string) *Input {
		return &Input{Method: "POST", Path: path, Agent: "billing-bot", Labels: map[string]string{"team": "billing"},
			Header: http.Header{"Content-Type": {"application/json"}}, Body: NewBody([]byte(body), "application/json")}
	}
	tests := []struct {
		name      string
		opt       Options
		rules     []spec.Rule
		in        *Input
		wantAllow bool
		wantRule  string
		wantWhy   []string // one per rule, in order: "result: why"
	}{
		{
			name:    "no rules",
			in:      post("/v1/charges", `{}`),
			wantWhy: []string{},
		},
		{
			name: "every kind of miss, then the deciding deny",
			rules: []spec.Rule{
				w(rule("for-ops", "allow", "/**"), func(r *spec.Rule) { r.Agents = []string{"ops-bot", "ci"} }),
				w(rule("for-eng", "allow", "/**"), func(r *spec.Rule) { r.AgentLabels = map[string]string{"team": "eng"} }),
				w(rule("for-prod", "allow", "/**"), func(r *spec.Rule) { r.AgentLabels = map[string]string{"env": "prod"} }),
				w(rule("reads", "allow", "/**"), func(r *spec.Rule) { r.Methods = []string{"GET", "HEAD"} }),
				rule("v2", "allow", "/v2/**", "/v3"),
				w(rule("small", "allow", "/v1/**"), func(r *spec.Rule) { r.When = "request.json.amount <= 100" }),
				w(rule("no-big", "deny", "/v1/charges"), func(r *spec.Rule) { r.When = "request.json.amount > 5000" }),
				rule("fallback", "allow", "/**"),
			},
			in:       post("/v1/charges", `{"amount":9000}`),
			wantRule: "no-big",
			wantWhy: []string{
				"no_match: agent billing-bot not selected (agents [ops-bot, ci])",
				"no_match: label team=eng missing (the agent has team=billing)",
				"no_match: label env=prod missing",
				"no_match: method POST not in [GET, HEAD]",
				"no_match: path /v1/charges matches none of [/v2/**, /v3]",
				"no_match: condition false",
				"matched: matched",
				"matched: matched", // evaluated although the deny decides
			},
		},
		{
			name: "first matching allow decides; later ones still shown",
			rules: []spec.Rule{
				rule("a1", "allow", "/v1/**"),
				rule("a2", "allow", "/**"),
			},
			in:        post("/v1/x", `{}`),
			wantAllow: true,
			wantRule:  "a1",
			wantWhy:   []string{"matched: matched", "matched: matched"},
		},
		{
			name: "an erroring allow does not match (fails closed)",
			rules: []spec.Rule{
				w(rule("needs-json", "allow", "/**"), func(r *spec.Rule) { r.When = "request.json.amount <= 100" }),
			},
			in:      post("/v1/x", `amount=5`),
			wantWhy: []string{"error: condition error: no such key: json (fails closed: allow does not match)"},
		},
		{
			name: "an erroring deny matches (fails closed)",
			rules: []spec.Rule{
				rule("all", "allow", "/**"),
				w(rule("guard", "deny", "/**"), func(r *spec.Rule) { r.When = "request.json.user.role == 'admin'" }),
			},
			in:       post("/v1/x", `{"user":{}}`),
			wantRule: "guard",
			wantWhy:  []string{"matched: matched", "error: condition error: no such key: role (fails closed: deny matches)"},
		},
		{
			name: "report rules are explained and never decide",
			rules: []spec.Rule{
				w(rule("would-deny", "deny", "/**"), func(r *spec.Rule) { r.Mode = "report" }),
				w(rule("would-allow", "allow", "/v9/**"), func(r *spec.Rule) { r.Mode = "report" }),
				rule("all", "allow", "/**"),
			},
			in:        post("/v1/x", `{}`),
			wantAllow: true,
			wantRule:  "all",
			wantWhy: []string{
				"matched: matched (report mode: recorded, never enforced)",
				"no_match: path /v1/x matches none of [/v9/**]",
				"matched: matched",
			},
		},
		{
			name: "case-insensitive proxy: the folded path is shown",
			opt:  Options{CaseInsensitive: true},
			rules: []spec.Rule{
				rule("admin", "deny", "/v1/admin/**"),
			},
			in:      &Input{Method: "GET", Path: "/v1/other", Agent: "a"},
			wantWhy: []string{"no_match: path /v1/other matches none of [/v1/admin/**]"},
		},
		{
			name: "empty agent name is shown as such",
			rules: []spec.Rule{
				w(rule("for-a", "allow", "/**"), func(r *spec.Rule) { r.Agents = []string{"a"} }),
			},
			in:      &Input{Method: "GET", Path: "/"},
			wantWhy: []string{`no_match: agent "" not selected (agents [a])`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.opt, tt.rules...)
			ex := s.Explain(tt.in)
			if ex.Decision.Allow != tt.wantAllow || ex.Decision.Rule != tt.wantRule {
				t.Errorf("decision = %v by %q (%s), want %v by %q", ex.Decision.Allow, ex.Decision.Rule, ex.Decision.Reason, tt.wantAllow, tt.wantRule)
			}
			got := []string{}
			for i, r := range ex.Rules {
				got = append(got, r.Result+": "+r.Why)
				if r.Name != tt.rules[i].Name {
					t.Errorf("result %d names %q, want %q", i, r.Name, tt.rules[i].Name)
				}
				if r.Effect != tt.rules[i].Effect {
					t.Errorf("result %d effect %q, want %q", i, r.Effect, tt.rules[i].Effect)
				}
				if wantMode := map[bool]string{false: "enforce", true: "report"}[tt.rules[i].Mode == "report"]; r.Mode != wantMode {
					t.Errorf("result %d mode %q, want %q", i, r.Mode, wantMode)
				}
			}
			if diff := cmp.Diff(tt.wantWhy, got); diff != "" {
				t.Errorf("per-rule results (-want +got):\n%s", diff)
			}
			// The decision is Decide's, to the last field.
			if diff := cmp.Diff(s.Decide(tt.in), ex.Decision, decisionOpts); diff != "" {
				t.Errorf("Explain's decision differs from Decide's (-Decide +Explain):\n%s", diff)
			}
		})
	}
}

func TestExplainNilSet(t *testing.T) {
	var s *Set
	ex := s.Explain(&Input{Method: "GET", Path: "/"})
	if ex.Decision.Allow || ex.Decision.Reason != "no_rule_allows" || len(ex.Rules) != 0 {
		t.Errorf("Explain on no rules = %+v", ex)
	}
}

// An explanation names the deciding rule's rate limit, and never consumes it.
func TestExplainDoesNotConsumeRateLimits(t *testing.T) {
	lim := NewLimits()
	s := mustCompile(t, Options{Proxy: "p", Limits: lim},
		w(rule("one", "allow", "/**"), func(r *spec.Rule) { r.RateLimit = "1/m" }))
	in := &Input{Method: "GET", Path: "/", Agent: "a"}
	for range 3 {
		ex := s.Explain(in)
		if got := ex.Decision.RateLimitSpec(); got != "1/m" {
			t.Fatalf("RateLimitSpec = %q", got)
		}
	}
	d := s.Decide(in)
	if ok, _ := d.RateLimit("a", t0); !ok {
		t.Fatal("the first real request is refused: an explanation consumed the rate limit")
	}
	if ok, _ := d.RateLimit("a", t0); ok {
		t.Fatal("the second real request is allowed")
	}
	if got := (&Decision{}).RateLimitSpec(); got != "" {
		t.Errorf("RateLimitSpec of a refusal = %q", got)
	}
}

// Long CEL errors are clipped and kept on one line.
func TestExplainClipsErrors(t *testing.T) {
	long := strings.Repeat("k", 500)
	s := mustCompile(t, Options{}, w(rule("r", "allow", "/**"), func(r *spec.Rule) {
		r.When = "request.json['" + long + "'] == 1"
	}))
	ex := s.Explain(&Input{Method: "POST", Path: "/", Body: NewBody([]byte(`{}`), "application/json")})
	why := ex.Rules[0].Why
	if len(why) > 400 || strings.ContainsAny(why, "\r\n") || !strings.Contains(why, "…") {
		t.Errorf("why = %q (%d bytes)", why, len(why))
	}
}

// FuzzExplain: over hostile requests, Explain's decision is Decide's, every
// rule gets exactly one result in order, a result's Matched agrees with its
// Result and effect, and the report list is the matching report rules.
func FuzzExplain(f *testing.F) {
	f.Add([]byte(`{"amount":5000}`), "application/json", "limit=3", "ok", byte(1), byte(0))
	f.Add([]byte(`{"amount":5}`), "text/plain", "limit=1000", "no", byte(1), byte(2))
	f.Add([]byte(`amount=600&x=1`), "application/x-www-form-urlencoded", "", "ok", byte(1), byte(2))
	f.Add([]byte(`{"method":"tools/call","params":{"name":"create_issue"}}`), "application/json", "", "", byte(1), byte(3))
	f.Add([]byte(`{"items":[{"qty":1},{"qty":11}]}`), "application/vnd.api+json", "a=%zz", "ok", byte(2), byte(6))
	f.Add([]byte("\xff\xfe"), "application/json; charset", "limit=%ff", "\xff", byte(0), byte(1))
	f.Add([]byte(nil), "multipart/form-data", ";;", "", byte(0), byte(4))
	set := fuzzSet(f)
	f.Fuzz(func(t *testing.T, body []byte, ct, query, tag string, method, path byte) {
		mk := func() *Input {
			return &Input{Method: fuzzMethods[int(method)%len(fuzzMethods)], Path: fuzzPaths[int(path)%len(fuzzPaths)],
				RawQuery: query, Header: http.Header{"X-Tag": {tag}, "Content-Type": {ct}}, Agent: "bot",
				Labels: map[string]string{"team": "billing"}, TokenID: "tok_1", Body: NewBody(body, ct)}
		}
		d := set.Decide(mk())
		ex := set.Explain(mk())
		if diff := cmp.Diff(d, ex.Decision, decisionOpts); diff != "" {
			t.Fatalf("Explain's decision differs (-Decide +Explain):\n%s", diff)
		}
		if d.limited != ex.Decision.limited {
			t.Fatal("Explain's decision carries another rule's rate limit")
		}
		rs := set.Rules()
		if len(ex.Rules) != len(rs) {
			t.Fatalf("%d results for %d rules", len(ex.Rules), len(rs))
		}
		var report []string
		for i, r := range ex.Rules {
			if r.Name != rs[i].Name || r.Why == "" {
				t.Fatalf("result %d: %+v", i, r)
			}
			switch r.Result {
			case ResultMatched:
				if !r.Matched {
					t.Fatalf("result %d matched but not Matched", i)
				}
			case ResultNoMatch:
				if r.Matched {
					t.Fatalf("result %d no_match but Matched", i)
				}
			case ResultError:
				if r.Matched != rs[i].Deny || !strings.HasPrefix(r.Why, "condition error: ") {
					t.Fatalf("result %d: an erroring %s rule: %+v", i, r.Effect, r)
				}
			default:
				t.Fatalf("result %d: result %q", i, r.Result)
			}
			if rs[i].Report && r.Matched {
				if rs[i].Deny {
					report = append(report, "report:denied_by_rule:"+r.Name)
				} else {
					report = append(report, "report:allowed_by_rule:"+r.Name)
				}
			}
			if !rs[i].Report && r.Matched && !ex.Decision.Allow && ex.Decision.Rule == "" {
				t.Fatalf("rule %s matched but nothing decided: %+v", r.Name, ex.Decision)
			}
		}
		if diff := cmp.Diff(report, ex.Decision.Report, decisionOpts); diff != "" {
			t.Fatalf("report list (-from results +decision):\n%s", diff)
		}
	})
}
