package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRuleTest runs `keyhole rule test` against a node: the decision line,
// the per-rule table, the exit status (0 allowed, 3 refused, 1 error, 2
// usage), --json-output, and bodies from --json, --body-file and stdin.
func TestRuleTest(t *testing.T) {
	n := startNode(t)
	n.ok(t, "", "proxy", "create", "stripe", "--upstream", "https://api.stripe.com", "--auth", "none",
		"--allow", "GET /v1/customers/**")
	n.ok(t, "", "rule", "add", "stripe", "--allow", "POST /v1/charges", "--name", "charges",
		"--when", "request.json.amount <= 5000", "--rate-limit", "10/m")
	n.ok(t, "", "rule", "add", "stripe", "--deny", "POST /v1/charges", "--name", "no-big",
		"--when", "request.json.amount > 5000")
	n.ok(t, "", "rule", "add", "stripe", "--allow", "/v1/team/**", "--label", "team=billing", "--name", "team")
	n.ok(t, "", "agent", "create", "billing-bot")
	dir := t.TempDir()
	bodyFile := filepath.Join(dir, "body.json")
	if err := os.WriteFile(bodyFile, []byte(`{"amount":6000}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantOut  []string // regexps, each must match stdout
		wantErr  string   // substring of stderr
	}{
		{
			name:     "denied by a rule, with the table",
			args:     []string{"--agent", "billing-bot", "POST /v1/charges", "--json", `{"amount":9000}`},
			wantCode: 3,
			wantOut: []string{
				`(?m)^refused: 403 denied_by_rule:no-big: denied by rule no-big of proxy stripe$`,
				`(?m)^agent billing-bot, path /v1/charges$`,
				`(?m)^RULE\s+EFFECT\s+MODE\s+RESULT\s+WHY$`,
				`(?m)^allow-1\s+allow\s+enforce\s+no_match\s+method POST not in \[GET\]$`,
				`(?m)^charges\s+allow\s+enforce\s+no_match\s+condition false$`,
				`(?m)^\* no-big\s+deny\s+enforce\s+matched\s+matched$`,
				`(?m)^team\s+allow\s+enforce\s+no_match\s+label team=billing missing$`,
			},
		},
		{
			name:     "allowed, naming the rate limit",
			args:     []string{"--agent", "billing-bot", "POST /v1/charges", "--json", `{"amount":50}`},
			wantCode: 0,
			wantOut:  []string{`(?m)^allowed \(allowed_by_rule:charges\); rate limit 10/m \(a test does not consume it\)$`, `(?m)^\* charges\s+allow`},
		},
		{
			name:     "query in the request line",
			args:     []string{"--agent", "billing-bot", "GET /v1/customers/cus_1?limit=3"},
			wantCode: 0,
			wantOut:  []string{`(?m)^allowed \(allowed_by_rule:allow-1\)$`},
		},
		{
			name:     "body from a file",
			args:     []string{"--agent", "billing-bot", "POST /v1/charges", "--body-file", bodyFile, "--header", "Content-Type: application/json"},
			wantCode: 3,
			wantOut:  []string{`denied_by_rule:no-big`},
		},
		{
			name:     "body from stdin",
			stdin:    `{"amount":7}`,
			args:     []string{"--agent", "billing-bot", "POST /v1/charges", "--body-file", "-"},
			wantCode: 0,
			// No Content-Type: the body is still JSON to the rules.
			wantOut: []string{`(?m)^allowed \(allowed_by_rule:charges\)`},
		},
		{
			name:     "refused before the rules run",
			args:     []string{"--agent", "billing-bot", "GET /v1/customers/%2e%2e/x"},
			wantCode: 3,
			wantOut:  []string{`(?m)^refused: 400 bad_path: path contains a dot segment`, `(?m)^\(refused before the rules run\)$`},
		},
		{
			name:     "a body that is not strict JSON",
			args:     []string{"--agent", "billing-bot", "POST /v1/charges", "--json", `{"amount":1,"amount":9000}`},
			wantCode: 3,
			wantOut:  []string{`(?m)^refused: 400 bad_body: the JSON body repeats the key "amount"`, `(?m)^\(refused before the rules run\)$`},
		},
		{name: "unknown agent", args: []string{"--agent", "nobody", "GET /"}, wantCode: 1, wantErr: `agent "nobody" does not exist`},
		{name: "unknown proxy", args: []string{"--agent", "billing-bot", "GET /"}, wantCode: 1, wantErr: "does not exist"},
		{name: "no agent", args: []string{"GET /"}, wantCode: 2, wantErr: "needs --agent"},
		{name: "bad request line", args: []string{"--agent", "billing-bot", "/v1/charges"}, wantCode: 2, wantErr: "'METHOD PATH'"},
		{name: "relative path", args: []string{"--agent", "billing-bot", "GET v1"}, wantCode: 2, wantErr: "must start with /"},
		{name: "bad header", args: []string{"--agent", "billing-bot", "GET /", "--header", "nocolon"}, wantCode: 2, wantErr: "'Name: value'"},
		{name: "json and body-file", args: []string{"--agent", "billing-bot", "GET /", "--json", "{}", "--body-file", bodyFile}, wantCode: 2},
		{name: "query twice", args: []string{"--agent", "billing-bot", "GET /?a=1", "--query", "b=2"}, wantCode: 2, wantErr: "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := "stripe"
			if tt.name == "unknown proxy" {
				proxy = "nope"
			}
			args := append([]string{"rule", "test", proxy}, tt.args...)
			r := n.run(tt.stdin, args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.out, r.err)
			}
			for _, re := range tt.wantOut {
				if !regexp.MustCompile(re).MatchString(r.out) {
					t.Errorf("stdout does not match %s:\n%s", re, r.out)
				}
			}
			if !strings.Contains(r.err, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", r.err, tt.wantErr)
			}
		})
	}

	t.Run("json output", func(t *testing.T) {
		r := n.run("", "rule", "test", "stripe", "--agent", "billing-bot", "POST /v1/charges", "--json", `{"amount":9000}`, "--json-output")
		if r.code != 3 {
			t.Fatalf("exit %d: %s %s", r.code, r.out, r.err)
		}
		var v struct {
			Allow  bool   `json:"allow"`
			Status int    `json:"status"`
			Reason string `json:"reason"`
			Rule   string `json:"rule"`
			Rules  []struct {
				Name, Effect, Mode, Result, Why string
			} `json:"rules"`
		}
		if err := json.Unmarshal([]byte(r.out), &v); err != nil {
			t.Fatalf("--json-output is not JSON: %v\n%s", err, r.out)
		}
		if v.Allow || v.Status != 403 || v.Reason != "denied_by_rule:no-big" || v.Rule != "no-big" || len(v.Rules) != 4 {
			t.Errorf("answer %+v", v)
		}
	})

	// The global --json before the command would take the next argument as
	// the body: the error says so.
	t.Run("global json", func(t *testing.T) {
		r := n.run("", "--json", "rule", "test", "stripe", "--agent", "billing-bot", "GET /")
		if r.code != 2 || !strings.Contains(r.err, "use --json-output") {
			t.Errorf("exit %d, stderr %q", r.code, r.err)
		}
	})
}
