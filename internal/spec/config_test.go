package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Tests of the declarative config (SPEC §9): ParseConfig (keyhole.yaml,
// YAML or JSON, read by the CLI) and DecodeApply (the body of POST
// /api/v1/apply, read by the node). Bad input gets a clear error that
// names where it is (a path, and a line for YAML) and loses nothing: what
// YAML could say that JSON cannot is refused, never given a meaning.

// cfgCanary stands for a secret's value: it may be in an input, never in
// an error message.
const cfgCanary = "sk_live_khCanary7Qx2Zp9WvB4"

// parseBudget is a hang guard for the fuzz targets, not a speed claim
// (tests never assert timings): an input that expands (an alias bomb) or
// loops runs far past it, while the slowest honest input (4 MiB of YAML
// under the race detector on a busy 2-core machine) takes about 15 s.
// The table tests only log how long each input took; their bombs are
// shown refused before any expansion by their messages.
const parseBudget = 2 * time.Minute

// fullYAML uses every kind of secret source, proxies with rules and
// conditions, and agents with labels; fullJSON says the same in JSON.
const fullYAML = `# keyhole.yaml
secrets:
  - name: stripe-key
    from_env: STRIPE_KEY
  - name: github.token
    from_file: secrets/github-token
  - name: jira
    value_object_from_env: {username: JIRA_USER, password: JIRA_PASSWORD}
  - name: aws_billing
    value_object_from_file:
      access_key_id: /run/secrets/aws/id
      secret_access_key: ../aws/secret

proxies:
  - name: stripe
    description: Stripe, for the billing agents
    upstream: https://api.stripe.com
    auth: {type: bearer, secret: stripe-key}
    agent_token_header: X-Agent-Token
    static_headers:
      Stripe-Version: 2024-06-20   # a date stays the text written
    timeouts: {connect: 2s, total: 1m}
    capture: {max_bytes: 0x2000, redact_json: [card.number]}
    max_rule_body: 1.0e6
    quotas:
      - {limit: 1000, per: day}
    rules:
      - name: read-customers
        effect: allow
        methods: [GET]
        paths: ["/v1/customers/**"]
      - name: big-refunds
        effect: deny
        mode: report
        agents: [billing-bot]
        agent_labels: {team: billing}
        paths: [/v1/refunds]
        when: "request.json.amount > 10000 && request.method == 'POST'"
        rate_limit: 10/m
  - name: jira
    upstream: https://example.atlassian.net/rest
    auth:
      type: basic
      secret: jira
    rules:
      - name: read
        effect: allow
        methods: [GET, HEAD]
        paths: ["/**"]
  - name: github
    upstream: https://api.github.com
    auth: {type: header, secret: github.token, headers: {Authorization: "Bearer {{secret}}"}}
  - name: s3
    upstream: https://s3.eu-west-1.amazonaws.com
    auth: {type: aws_sigv4, secret: aws_billing, region: eu-west-1, service: s3}

agents:
  - name: billing-bot
    labels: {team: billing, env: on, tier: "1", since: 2024-06-20}
  - name: no
  - name: ops-bot
    labels:
`

const fullJSON = `{
  "secrets": [
    {"name": "stripe-key", "from_env": "STRIPE_KEY"},
    {"name": "github.token", "from_file": "secrets/github-token"},
    {"name": "jira", "value_object_from_env": {"username": "JIRA_USER", "password": "JIRA_PASSWORD"}},
    {"name": "aws_billing", "value_object_from_file": {"access_key_id": "/run/secrets/aws/id", "secret_access_key": "../aws/secret"}}
  ],
  "proxies": [
    {
      "name": "stripe",
      "description": "Stripe, for the billing agents",
      "upstream": "https://api.stripe.com",
      "auth": {"type": "bearer", "secret": "stripe-key"},
      "agent_token_header": "X-Agent-Token",
      "static_headers": {"Stripe-Version": "2024-06-20"},
      "timeouts": {"connect": "2s", "total": "1m"},
      "capture": {"max_bytes": 8192, "redact_json": ["card.number"]},
      "max_rule_body": 1000000,
      "quotas": [{"limit": 1000, "per": "day"}],
      "rules": [
        {"name": "read-customers", "effect": "allow", "methods": ["GET"], "paths": ["/v1/customers/**"]},
        {"name": "big-refunds", "effect": "deny", "mode": "report", "agents": ["billing-bot"], "agent_labels": {"team": "billing"},
         "paths": ["/v1/refunds"], "when": "request.json.amount > 10000 \u0026\u0026 request.method == 'POST'", "rate_limit": "10/m"}
      ]
    },
    {"name": "jira", "upstream": "https://example.atlassian.net/rest", "auth": {"type": "basic", "secret": "jira"},
     "rules": [{"name": "read", "effect": "allow", "methods": ["GET", "HEAD"], "paths": ["/**"]}]},
    {"name": "github", "upstream": "https://api.github.com", "auth": {"type": "header", "secret": "github.token", "headers": {"Authorization": "Bearer {{secret}}"}}},
    {"name": "s3", "upstream": "https://s3.eu-west-1.amazonaws.com", "auth": {"type": "aws_sigv4", "secret": "aws_billing", "region": "eu-west-1", "service": "s3"}}
  ],
  "agents": [
    {"name": "billing-bot", "labels": {"team": "billing", "env": "on", "tier": "1", "since": "2024-06-20"}},
    {"name": "no"},
    {"name": "ops-bot", "labels": null}
  ]
}
`

// lineContaining is the 1-based line of the first line of s holding sub.
func lineContaining(t testing.TB, s, sub string) int {
	t.Helper()
	n := lineIn(s, sub)
	if n == 0 {
		t.Fatalf("no line holds %q", sub)
	}
	return n
}

func lineIn(s, sub string) int {
	for i, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	return 0
}

// minProxyYAML is a proxy entry of a YAML proxies list.
func minProxyYAML(name string) string {
	return "  - name: " + name + "\n    upstream: https://api.example.com\n    auth: {type: none}\n"
}

func minProxyJSON(name string) string {
	return `{"name":"` + name + `","upstream":"https://api.example.com","auth":{"type":"none"}}`
}

// checkCfgError: err is a *Error (not wrapped: callers type-switch on it)
// whose message holds want, reads well (checkMessage) and quotes no
// secret value.
func checkCfgError(t *testing.T, err error, in, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want an error with %q", want)
	}
	if _, ok := err.(*Error); !ok {
		t.Fatalf("error %T (%v) is not a *spec.Error", err, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, want) {
		t.Errorf("error\n  %q\ndoes not hold\n  %q", msg, want)
	}
	if strings.Contains(msg, cfgCanary) {
		t.Errorf("error quotes the secret value: %q", msg)
	}
	if len(in) <= 64<<10 {
		checkMessage(t, msg, in)
	} else if len(msg) > 512 || strings.ContainsAny(msg, "\r\n") || !utf8.ValidString(msg) {
		t.Errorf("error message %.200q… (%d bytes)", msg, len(msg))
	}
}

func timed(t *testing.T, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if d := time.Since(start); d > time.Second {
		t.Logf("took %v", d)
	}
}

// configCmp compares configs by what they mean: not the lines of the YAML
// they came from, nor the bytes of ProxiesJSON (see jsonEqual).
var configCmp = []cmp.Option{cmpopts.IgnoreUnexported(Config{}), cmpopts.IgnoreFields(Config{}, "ProxiesJSON"), cmpopts.EquateEmpty()}

func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return cmp.Equal(va, vb)
}

func TestParseConfigFullExample(t *testing.T) {
	y, err := ParseConfig([]byte(fullYAML))
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	j, err := ParseConfig([]byte(fullJSON))
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}

	wantSecrets := []SecretSource{
		{Name: "stripe-key", FromEnv: "STRIPE_KEY"},
		{Name: "github.token", FromFile: "secrets/github-token"},
		{Name: "jira", ValueObjectFromEnv: map[string]string{"username": "JIRA_USER", "password": "JIRA_PASSWORD"}},
		{Name: "aws_billing", ValueObjectFromFile: map[string]string{"access_key_id": "/run/secrets/aws/id", "secret_access_key": "../aws/secret"}},
	}
	if diff := cmp.Diff(wantSecrets, y.Secrets); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	wantAgents := []Agent{
		// "on" is a string in YAML 1.2 (and so in yaml.v3): it stays the
		// text written, as does the date.
		{Name: "billing-bot", Labels: map[string]string{"team": "billing", "env": "on", "tier": "1", "since": "2024-06-20"}},
		{Name: "no", Labels: map[string]string{}},
		{Name: "ops-bot", Labels: map[string]string{}},
	}
	if diff := cmp.Diff(wantAgents, y.Agents); diff != "" {
		t.Errorf("agents (-want +got):\n%s", diff)
	}
	for _, a := range y.Agents {
		if a.Labels == nil {
			t.Errorf("agent %s: labels are nil, want {}", a.Name)
		}
	}
	if !y.HasProxies || !y.HasAgents {
		t.Errorf("HasProxies, HasAgents = %v, %v; want true, true", y.HasProxies, y.HasAgents)
	}

	// Proxies: as POST /api/v1/proxies decodes them, defaults filled in.
	if len(y.Proxies) != 4 || len(y.ProxiesJSON) != 4 {
		t.Fatalf("%d proxies, %d ProxiesJSON; want 4, 4", len(y.Proxies), len(y.ProxiesJSON))
	}
	st := y.Proxies[0]
	want := NewProxy()
	want.Name, want.Description, want.Upstream = "stripe", "Stripe, for the billing agents", "https://api.stripe.com"
	want.Auth = Auth{Type: "bearer", Secret: "stripe-key"}
	want.AgentTokenHeader = "X-Agent-Token"
	want.StaticHeaders = map[string]string{"Stripe-Version": "2024-06-20"}
	want.Timeouts.Connect, want.Timeouts.Total = Duration(2*time.Second), Duration(time.Minute)
	want.Capture.MaxBytes, want.Capture.RedactJSON = 0x2000, []string{"card.number"}
	want.MaxRuleBody = 1000000
	want.Quotas = []Quota{{Limit: 1000, Per: "day"}}
	want.Rules = []Rule{
		{Name: "read-customers", Effect: "allow", Mode: "enforce", Agents: []string{}, AgentLabels: map[string]string{},
			Methods: []string{"GET"}, Paths: []string{"/v1/customers/**"}},
		{Name: "big-refunds", Effect: "deny", Mode: "report", Agents: []string{"billing-bot"}, AgentLabels: map[string]string{"team": "billing"},
			Methods: []string{}, Paths: []string{"/v1/refunds"}, When: "request.json.amount > 10000 && request.method == 'POST'", RateLimit: "10/m"},
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("proxy stripe (-want +got):\n%s", diff)
	}
	if p := y.Proxies[1]; p.Auth.Type != "basic" || p.Rules[0].Methods[1] != "HEAD" || p.Timeouts.Total != Duration(5*time.Minute) {
		t.Errorf("proxy jira: %+v", p)
	}
	if p := y.Proxies[2]; p.Auth.Headers["Authorization"] != "Bearer {{secret}}" {
		t.Errorf("proxy github: %+v", p.Auth)
	}
	if p := y.Proxies[3]; p.Auth.Region != "eu-west-1" || p.Auth.Service != "s3" {
		t.Errorf("proxy s3: %+v", p.Auth)
	}

	// ProxiesJSON is the proxy as written (the node fills in its own
	// defaults), YAML's numbers as JSON numbers.
	if want := `{"name":"jira","upstream":"https://example.atlassian.net/rest","auth":{"type":"basic","secret":"jira"},
		"rules":[{"name":"read","effect":"allow","methods":["GET","HEAD"],"paths":["/**"]}]}`; !jsonEqual(t, y.ProxiesJSON[1], []byte(want)) {
		t.Errorf("ProxiesJSON[1] = %s\nwant %s", y.ProxiesJSON[1], want)
	}
	var raw map[string]any
	if err := json.Unmarshal(y.ProxiesJSON[0], &raw); err != nil {
		t.Fatal(err)
	}
	if raw["max_rule_body"] != 1e6 || raw["capture"].(map[string]any)["max_bytes"] != float64(0x2000) ||
		raw["static_headers"].(map[string]any)["Stripe-Version"] != "2024-06-20" || raw["timeouts"].(map[string]any)["response_header"] != nil {
		t.Errorf("ProxiesJSON[0] = %s", y.ProxiesJSON[0])
	}

	// The JSON file means the same; its ProxiesJSON are its own bytes.
	if diff := cmp.Diff(y, j, configCmp...); diff != "" {
		t.Errorf("YAML and JSON differ (-yaml +json):\n%s", diff)
	}
	for i := range y.ProxiesJSON {
		if !jsonEqual(t, y.ProxiesJSON[i], j.ProxiesJSON[i]) {
			t.Errorf("ProxiesJSON[%d]: YAML %s, JSON %s", i, y.ProxiesJSON[i], j.ProxiesJSON[i])
		}
		if !bytes.Contains([]byte(fullJSON), j.ProxiesJSON[i]) {
			t.Errorf("JSON ProxiesJSON[%d] is not the text written: %s", i, j.ProxiesJSON[i])
		}
	}

	// Line: the line of a path, or of its nearest enclosing value.
	jiraRule := lineContaining(t, fullYAML, "methods: [GET, HEAD]") - 2
	for _, tc := range []struct {
		path string
		want int
	}{
		{"secrets", lineContaining(t, fullYAML, "secrets:")},
		{"secrets[0]", lineContaining(t, fullYAML, "- name: stripe-key")},
		{"secrets[3].value_object_from_file", lineContaining(t, fullYAML, "value_object_from_file:")},
		{"secrets[2]", lineContaining(t, fullYAML, "- name: jira")},
		{"secrets[3].value_object_from_file.secret_access_key", lineContaining(t, fullYAML, "secret_access_key:")},
		{"proxies[0].static_headers.Stripe-Version", lineContaining(t, fullYAML, "Stripe-Version:")},
		{"proxies[0].rules[1]", lineContaining(t, fullYAML, "- name: big-refunds")},
		{"proxies[0].rules[1].when", lineContaining(t, fullYAML, "when:")},
		{"proxies[0].rules[1].agent_labels.team", lineContaining(t, fullYAML, "agent_labels:")},
		{"proxies[1].auth.secret", lineContaining(t, fullYAML, "secret: jira")},
		{"proxies[1].rules[0].effect", jiraRule + 1},
		{"proxies[1].rules[0].nope", jiraRule}, // the enclosing value
		{"proxies[1].rules[7]", jiraRule - 1},  // the list, at its key
		{"agents[2].labels", strings.Count(fullYAML, "\n")},
		{"nowhere", 0},
		{"", 0},
	} {
		if got := y.Line(tc.path); got != tc.want {
			t.Errorf("Line(%q) = %d, want %d", tc.path, got, tc.want)
		}
		if got := j.Line(tc.path); got != 0 {
			t.Errorf("JSON: Line(%q) = %d, want 0", tc.path, got)
		}
	}
}

// parseConfigValid are configs ParseConfig takes, and a check of what it
// made of each.
var parseConfigValid = []struct {
	name  string
	in    string
	check func(t *testing.T, c *Config)
}{
	{name: "secrets only: sections absent", in: "secrets:\n  - {name: k, from_env: K}\n", check: func(t *testing.T, c *Config) {
		if c.HasProxies || c.HasAgents || len(c.Proxies)+len(c.ProxiesJSON)+len(c.Agents) != 0 || len(c.Secrets) != 1 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "null sections are absent", in: "secrets:\nproxies:\nagents: ~\n", check: func(t *testing.T, c *Config) {
		if c.HasProxies || c.HasAgents || len(c.Secrets) != 0 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "empty lists are present", in: "proxies: []\nagents: []\n", check: func(t *testing.T, c *Config) {
		if !c.HasProxies || !c.HasAgents || len(c.Proxies) != 0 || len(c.ProxiesJSON) != 0 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "JSON null sections", in: `{"proxies":null,"agents":null,"secrets":null}`, check: func(t *testing.T, c *Config) {
		if c.HasProxies || c.HasAgents {
			t.Errorf("%+v", c)
		}
	}},
	{name: "JSON empty lists", in: `{"proxies":[],"agents":[]}`, check: func(t *testing.T, c *Config) {
		if !c.HasProxies || !c.HasAgents {
			t.Errorf("%+v", c)
		}
	}},
	{name: "empty object", in: `{}`, check: func(t *testing.T, c *Config) {
		if c.HasProxies || c.HasAgents || len(c.Secrets)+len(c.Proxies)+len(c.Agents) != 0 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "only agents, proxies absent", in: "agents:\n  - name: a\n", check: func(t *testing.T, c *Config) {
		if c.HasProxies || !c.HasAgents {
			t.Errorf("HasProxies %v HasAgents %v", c.HasProxies, c.HasAgents)
		}
	}},
	{name: "YAML 1.1 booleans are strings", in: "agents:\n  - name: no\n    labels: {a: yes, b: no, c: on, d: off, e: y, f: n, g: Yes, h: OFF}\n  - name: yes\n  - name: off\n  - name: y\n",
		check: func(t *testing.T, c *Config) {
			want := []Agent{
				{Name: "no", Labels: map[string]string{"a": "yes", "b": "no", "c": "on", "d": "off", "e": "y", "f": "n", "g": "Yes", "h": "OFF"}},
				{Name: "yes", Labels: map[string]string{}}, {Name: "off", Labels: map[string]string{}}, {Name: "y", Labels: map[string]string{}},
			}
			if diff := cmp.Diff(want, c.Agents); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	{name: "keys are their text", in: "agents:\n  - name: a\n    labels: {1: one, true: t, 1.10: v, 0x1F: h, 2024-06-20: d, on: o, \"~\": tilde}\n",
		check: func(t *testing.T, c *Config) {
			want := map[string]string{"1": "one", "true": "t", "1.10": "v", "0x1F": "h", "2024-06-20": "d", "on": "o", "~": "tilde"}
			if diff := cmp.Diff(want, c.Agents[0].Labels); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	{name: "quoted numbers and dates are strings", in: "agents:\n  - name: a\n    labels: {v: \"1.10\", n: '007', d: 2024-06-20T10:00:00Z, big: 1e400}\n",
		check: func(t *testing.T, c *Config) {
			// 1e400 is not a float64: yaml.v3 resolves it as a string,
			// the text written (nothing lost).
			want := map[string]string{"v": "1.10", "n": "007", "d": "2024-06-20T10:00:00Z", "big": "1e400"}
			if diff := cmp.Diff(want, c.Agents[0].Labels); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	{name: "YAML numbers into numbers", in: "proxies:\n" + minProxyYAML("p") + "    capture: {max_bytes: 0o777}\n    max_rule_body: 2.0e3\n    quotas: [{limit: 1_000, per: day}]\n",
		check: func(t *testing.T, c *Config) {
			p := c.Proxies[0]
			if p.Capture.MaxBytes != 0o777 || p.MaxRuleBody != 2000 {
				t.Errorf("max_bytes %d max_rule_body %d", p.Capture.MaxBytes, p.MaxRuleBody)
			}
		}},
	{name: "from_file paths as written", in: "secrets:\n  - {name: a, from_file: /etc/keyhole/a}\n  - {name: b, from_file: ../../../etc/passwd}\n  - {name: c, from_file: '~/x'}\n  - {name: d, from_file: 'C:\\keys\\d.txt'}\n  - {name: e, from_file: \"with space/and é\"}\n  - {name: f, value_object_from_file: {id: ./rel, key: /abs}}\n",
		check: func(t *testing.T, c *Config) {
			// The CLI reads them (relative to the config's folder); the
			// parser only refuses what cannot be a path.
			got := []string{c.Secrets[0].FromFile, c.Secrets[1].FromFile, c.Secrets[2].FromFile, c.Secrets[3].FromFile, c.Secrets[4].FromFile,
				c.Secrets[5].ValueObjectFromFile["id"], c.Secrets[5].ValueObjectFromFile["key"]}
			want := []string{"/etc/keyhole/a", "../../../etc/passwd", "~/x", `C:\keys\d.txt`, "with space/and é", "./rel", "/abs"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	{name: "secret names", in: "secrets:\n  - {name: A.b_c-9, from_env: X}\n  - {name: \"0\", from_env: Y}\n  - {name: " + strings.Repeat("s", 128) + ", from_env: Z}\n",
		check: func(t *testing.T, c *Config) {
			if len(c.Secrets) != 3 || c.Secrets[0].Name != "A.b_c-9" || c.Secrets[1].Name != "0" || len(c.Secrets[2].Name) != 128 {
				t.Errorf("%+v", c.Secrets)
			}
		}},
	{name: "env names are taken as written", in: "secrets:\n  - {name: a, from_env: lower.case-and spaces}\n  - {name: b, value_object_from_env: {user: U, pass: \"ÜBER\"}}\n",
		check: func(t *testing.T, c *Config) {
			if c.Secrets[0].FromEnv != "lower.case-and spaces" || c.Secrets[1].ValueObjectFromEnv["pass"] != "ÜBER" {
				t.Errorf("%+v", c.Secrets)
			}
		}},
	{name: "CRLF line endings", in: "# x\r\nagents:\r\n  - name: a\r\n    labels: {x: y}\r\n  - name: b\r\n", check: func(t *testing.T, c *Config) {
		if len(c.Agents) != 2 || c.Agents[0].Labels["x"] != "y" || c.Line("agents[1]") != 5 {
			t.Errorf("%+v line %d", c.Agents, c.Line("agents[1]"))
		}
	}},
	{name: "CR line endings", in: "agents:\r  - name: a\r  - name: b\r", check: func(t *testing.T, c *Config) {
		if len(c.Agents) != 2 || c.Line("agents[1]") != 3 {
			t.Errorf("%+v line %d", c.Agents, c.Line("agents[1]"))
		}
	}},
	{name: "byte order mark, YAML", in: "\ufeffagents:\n  - name: a\n", check: func(t *testing.T, c *Config) {
		if len(c.Agents) != 1 || c.Line("agents[0]") != 2 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "byte order mark, JSON", in: "\ufeff  \n{\"agents\":[{\"name\":\"a\"}]}", check: func(t *testing.T, c *Config) {
		if len(c.Agents) != 1 || c.Line("agents[0]") != 0 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "tabs inside values and after colons", in: "agents:\n  - name:\ta\n    labels: {k:\t\"x\ty\"}\t# comment\n", check: func(t *testing.T, c *Config) {
		if c.Agents[0].Name != "a" || c.Agents[0].Labels["k"] != "x\ty" {
			t.Errorf("%+v", c.Agents)
		}
	}},
	{name: "one document with markers", in: "---\nagents: [{name: a}]\n...\n", check: func(t *testing.T, c *Config) {
		if len(c.Agents) != 1 {
			t.Errorf("%+v", c)
		}
	}},
	{name: "YAML 1.1 directive keeps 1.2 meanings", in: "%YAML 1.1\n---\nagents: [{name: a, labels: {x: on}}]\n", check: func(t *testing.T, c *Config) {
		if c.Agents[0].Labels["x"] != "on" {
			t.Errorf("%+v", c.Agents)
		}
	}},
	{name: "core tags", in: "agents:\n  - !!map {name: !!str a, labels: !!map {n: !!str 10, t: !!str true}}\nproxies: !!seq []\n", check: func(t *testing.T, c *Config) {
		if c.Agents[0].Labels["n"] != "10" || c.Agents[0].Labels["t"] != "true" || !c.HasProxies {
			t.Errorf("%+v", c)
		}
	}},
	{name: "block scalars", in: "proxies:\n" + minProxyYAML("p") + "    description: |\n      two\n      lines\n    rules:\n      - name: r\n        effect: allow\n        paths: [\"/**\"]\n        when: >-\n          request.method == 'GET'\n          && true\n",
		check: func(t *testing.T, c *Config) {
			p := c.Proxies[0]
			if p.Description != "two\nlines\n" || p.Rules[0].When != "request.method == 'GET' && true" {
				t.Errorf("%q %q", p.Description, p.Rules[0].When)
			}
		}},
	{name: "Unicode and escapes", in: "agents:\n  - name: a\n    labels: {\"ключ\": \"значение 🔑\", e: \"\\u00e9\\t\", s: \"\\U0001F511\"}\n",
		check: func(t *testing.T, c *Config) {
			want := map[string]string{"ключ": "значение 🔑", "e": "é\t", "s": "🔑"}
			if diff := cmp.Diff(want, c.Agents[0].Labels); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	{name: "the most of each list", in: "agents:\n" + manyAgents(MaxApplyItems), check: func(t *testing.T, c *Config) {
		if len(c.Agents) != MaxApplyItems {
			t.Errorf("%d agents", len(c.Agents))
		}
	}},
	{name: "null values keep defaults", in: "proxies:\n" + minProxyYAML("p") + "    capture: ~\n    rules:\n    timeouts: {connect: null}\n", check: func(t *testing.T, c *Config) {
		p := c.Proxies[0]
		if p.Capture.MaxBytes != DefaultMaxBytes || p.Timeouts.Connect != Duration(5*time.Second) || p.Rules == nil {
			t.Errorf("%+v", p)
		}
	}},
}

func manyAgents(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  - name: a%d\n", i)
	}
	return b.String()
}

func TestParseConfigValid(t *testing.T) {
	for _, tt := range parseConfigValid {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			tt.check(t, c)
			checkConfigRoundTrip(t, c)
		})
	}
}

// hostileConfig is an input ParseConfig refuses, and what its message
// must hold.
type hostileConfig struct {
	name, in, want string
	path           string // Error.Path, when not ""
}

// billionLaughs is the alias bomb: 9^depth "lol"s once expanded.
func billionLaughs(depth int, under string) string {
	var b strings.Builder
	b.WriteString(under + "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= depth; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", ")
		fmt.Fprintf(&b, "%sa%d: &a%d [%s]\n", under, i, i, refs)
	}
	return b.String()
}

func deepRuleYAML(effect string) string {
	return "proxies:\n" + minProxyYAML("p") + minProxyYAML("q") +
		"    rules:\n      - name: r\n        paths: [\"/**\"]\n        effect: " + effect + "\n        mode: enforce\n"
}

func parseConfigHostile() []hostileConfig {
	lineOfEffect := lineIn(deepRuleYAML("x"), "effect:")
	return []hostileConfig{
		// Anchors, aliases, merge keys: refused before anything expands.
		{name: "anchor", in: "agents:\n  - &a {name: x}\n", want: "line 2: agents[0]: anchors and aliases (&name, *name) are not supported; write the value out", path: "agents[0]"},
		{name: "anchor and alias", in: "agents:\n  - &a {name: x}\n  - *a\n", want: "line 2: agents[0]: anchors and aliases"},
		{name: "anchor on a key", in: "agents:\n  - &k name: x\n", want: "line 2: agents[0]: anchors and aliases"},
		{name: "alias as a key", in: "x: &k name\nagents:\n  - *k : y\n", want: "line 1: x: anchors and aliases"},
		{name: "alias without an anchor", in: "agents:\n  - name: a\n  - *nope\n", want: "the config is not valid YAML: unknown anchor 'nope' referenced"},
		{name: "anchor on a scalar in secrets", in: "secrets:\n  - name: &n k\n    from_env: X\n", want: "line 2: secrets[0].name: anchors and aliases"},
		{name: "billion laughs", in: billionLaughs(9, ""), want: "line 1: a0: anchors and aliases"},
		{name: "billion laughs deep in a section", in: "agents:\n  - name: a\n    labels:\n" + billionLaughs(12, "      "), want: "line 4: agents[0].labels.a0: anchors and aliases"},
		{name: "billion laughs, aliases first", in: "x: [*a, *a]\n" + billionLaughs(9, ""), want: "unknown anchor 'a' referenced"},
		{name: "merge key", in: "agents:\n  - name: a\n    <<: {labels: {x: y}}\n", want: "line 3: agents[0]: merge keys (<<) are not supported; write the values out"},
		{name: "merge key of an alias", in: "base: &b {labels: {}}\nagents:\n  - name: a\n    <<: *b\n", want: "line 1: base: anchors and aliases"},
		{name: "merge key tagged", in: "agents:\n  - name: a\n    !!merge x: {}\n", want: "line 3: agents[0]: merge keys (<<) are not supported"},
		{name: "quoted << is a key", in: "agents:\n  - name: a\n    \"<<\": {}\n", want: `line 3: unknown field "<<" in agents[0]`},

		// Tags other than the core ones.
		{name: "binary", in: "agents:\n  - name: !!binary aGVsbG8=\n", want: "line 2: agents[0].name: binary values (!!binary) are not supported", path: "agents[0].name"},
		{name: "binary key", in: "agents:\n  - name: a\n    labels: {!!binary aGk=: x}\n", want: "line 3: agents[0].labels: the tag !!binary is not supported"},
		{name: "python object", in: "agents: !!python/object:os.system {}\n", want: "line 1: agents: the tag !!python/object:os.system is not supported"},
		{name: "python on a scalar", in: "agents:\n  - name: !!python/name:os.system a\n", want: "line 2: agents[0].name: the tag !!python/name:os.system is not supported"},
		{name: "custom tag", in: "agents:\n  - name: !env HOME\n", want: "line 2: agents[0].name: the tag !env is not supported"},
		{name: "custom tag on a list", in: "agents: !list []\n", want: "line 1: agents: the tag !list is not supported"},
		{name: "verbatim tag", in: "agents:\n  - name: !<tag:example.com,2000:x> a\n", want: "agents[0].name: the tag tag:example.com,2000:x is not supported"},
		{name: "TAG directive", in: "%TAG !e! tag:example.com,2000:\n---\nagents:\n  - name: !e!foo a\n", want: "line 4: agents[0].name: the tag tag:example.com,2000:foo is not supported"},
		{name: "tag with an escaped newline", in: "!%0A\n", want: `line 1: the tag "!\n" is not supported`},
		{name: "tag with an escape sequence", in: "agents:\n  - name: !%1B[31m a\n", want: `line 2: agents[0].name: the tag "!\x1b[31m" is not supported`},
		{name: "tag not UTF-8", in: "agents: !%FF%FE []\n", want: "the config is not valid YAML: found an incorrect leading UTF-8 octet"},
		{name: "set", in: "agents: !!set {a, b}\n", want: "line 1: agents: the tag !!set is not supported"},
		{name: "omap", in: "agents: !!omap [a: 1]\n", want: "line 1: agents: the tag !!omap is not supported"},
		{name: "str tag on a mapping", in: "agents: !!str {a: b}\n", want: "line 1: agents: the tag !!str is not supported"},
		{name: "int tag on text", in: "agents:\n  - name: a\n    labels: {x: !!int abc}\n", want: "line 3: agents[0].labels.x: the value is not a valid int"},
		{name: "bool tag on text", in: "agents:\n  - name: a\n    labels: {x: !!bool maybe}\n", want: "line 3: agents[0].labels.x: the value is not a valid bool"},
		{name: "null tag is null", in: "agents:\n  - name: !!null a\n", want: `line 2: agents[0].name: agent name "" is invalid`},

		// One document.
		{name: "two documents", in: "agents: []\n---\nproxies: []\n", want: `the config holds more than one YAML document (a second "---"); put everything in one`},
		{name: "two documents, markers", in: "---\nagents: []\n...\n---\nagents: [{name: evil}]\n", want: "more than one YAML document"},
		{name: "an empty second document", in: "---\nagents: []\n---\n", want: "more than one YAML document"},
		{name: "a broken second document", in: "agents: []\n---\n[\n", want: "more than one YAML document"},

		// Keys that are not strings.
		{name: "integer key", in: "1: x\n", want: `line 1: unknown field "1" in the config`},
		{name: "boolean key", in: "true: x\n", want: `line 1: unknown field "true" in the config`},
		{name: "null key", in: "~: x\n", want: "line 1: a key cannot be null (~ or empty); quote it if you mean the text"},
		{name: "empty key", in: "agents:\n  - name: a\n    labels:\n      : x\n", want: "the config is not valid YAML: line 3: did not find expected key"},
		{name: "empty explicit key", in: "agents:\n  - name: a\n    labels:\n      ?\n      : x\n", want: "agents[0].labels: a key cannot be null"},
		{name: "empty key in flow", in: "agents:\n  - name: a\n    labels: {: x}\n", want: "the config is not valid YAML: line 2: did not find expected node content"},
		{name: "mapping as a key", in: "agents:\n  - name: a\n    labels:\n      ? {a: b}\n      : x\n", want: "line 4: agents[0].labels: a key must be a plain value, not a list or a mapping"},
		{name: "list as a key", in: "? [a, b]\n: x\n", want: "line 1: a key must be a plain value, not a list or a mapping"},
		{name: "flow mapping as a key", in: "{[a]: x}\n", want: "not valid JSON"}, // "{" is JSON
		{name: "timestamp key top-level", in: "2024-06-20: x\n", want: `line 1: unknown field "2024-06-20" in the config`},

		// Keys that repeat.
		{name: "duplicate top-level", in: "agents: []\nagents: [{name: a}]\n", want: `line 2: the key "agents" appears twice; a key may appear once per mapping`},
		{name: "duplicate in a rule", in: deepRuleYAML("allow") + "        effect: deny\n", want: `line ` + fmt.Sprint(lineOfEffect+2) + `: proxies[1].rules[0]: the key "effect" appears twice`, path: "proxies[1].rules[0]"},
		{name: "duplicate label", in: "agents:\n  - name: a\n    labels: {x: a, x: b}\n", want: `line 3: agents[0].labels: the key "x" appears twice`},
		{name: "duplicate as text: 1 and \"1\"", in: "agents:\n  - name: a\n    labels: {1: a, \"1\": b}\n", want: `agents[0].labels: the key "1" appears twice`},
		{name: "duplicate by escape", in: "agents:\n  - name: a\n    \"n\\x61me\": b\n", want: `line 3: agents[0]: the key "name" appears twice`},
		{name: "duplicate env field", in: "secrets:\n  - name: j\n    value_object_from_env:\n      user: A\n      user: B\n", want: `line 5: secrets[0].value_object_from_env: the key "user" appears twice`},
		{name: "case variant", in: "Agents: []\n", want: `line 1: unknown field "Agents" in the config (did you mean "agents"?)`, path: "Agents"},
		{name: "case variant beside the key", in: "agents: []\nAGENTS: []\n", want: `unknown field "AGENTS" in the config (did you mean "agents"?)`},

		// Numbers and booleans where strings are wanted: refused, with
		// the hint to quote (the text written would be lost otherwise).
		{name: "boolean label", in: "agents:\n  - name: a\n    labels: {enabled: true}\n", want: "line 3: agents[0].labels.enabled: must be a string, not true or false (in YAML, quote it to make it a string)", path: "agents[0].labels.enabled"},
		{name: "boolean name", in: "agents:\n  - name: false\n", want: "line 2: agents[0].name: must be a string, not true or false (in YAML, quote it to make it a string)"},
		{name: "version label", in: "agents:\n  - name: a\n    labels: {version: 1.10}\n", want: "line 3: agents[0].labels.version: must be a string, not a number (in YAML, quote it to make it a string)"},
		{name: "octal-looking label", in: "agents:\n  - name: a\n    labels: {zip: 0o17}\n", want: "agents[0].labels.zip: must be a string, not a number (in YAML, quote it"},
		{name: "numeric name", in: "agents:\n  - name: 123\n", want: "line 2: agents[0].name: must be a string, not a number (in YAML, quote it"},
		{name: "secret name a number", in: "secrets:\n  - {name: 0, from_env: X}\n", want: "line 2: secrets[0].name: must be a string, not a number (in YAML, quote it"},
		{name: "numeric env name", in: "secrets:\n  - {name: a, from_env: 12}\n", want: "secrets[0].from_env: must be a string, not a number (in YAML, quote it"},
		{name: "huge number as a label", in: "agents:\n  - name: a\n    labels: {n: 123456789012345678901234567890}\n", want: "agents[0].labels.n: must be a string, not a number (in YAML, quote it"},
		{name: "infinity", in: "agents:\n  - name: a\n    labels: {n: .inf}\n", want: "line 3: agents[0].labels.n: JSON has no number for .inf"},
		{name: "not a number", in: "agents:\n  - name: a\n    labels: {n: .NaN}\n", want: "JSON has no number for .NaN"},
		{name: "YAML 1.2 directive", in: "%YAML 1.2\n---\nagents: []\n", want: "the config is not valid YAML: found incompatible YAML document"},
		{name: "YAML 1.1 boolean for a boolean", in: "proxies:\n" + minProxyYAML("p") + "    allow_websocket: yes\n", want: "line 5: proxies[0].allow_websocket: must be true or false, not a string"},
		{name: "list for a string", in: "agents:\n  - name: [a]\n", want: "line 2: agents[0].name: must be a string, not a list"},
		{name: "string for a list", in: "agents: a\n", want: "line 1: agents: must be a list, not a string"},
		{name: "string for a number", in: "proxies:\n" + minProxyYAML("p") + "    max_rule_body: 1MB\n", want: "line 5: proxies[0].max_rule_body: must be a whole number, not a string"},
		{name: "huge number for a number", in: "proxies:\n" + minProxyYAML("p") + "    max_rule_body: 99999999999999999999999\n", want: "proxies[0].max_rule_body: must be a whole number, not a number"},
		{name: "fraction for a number", in: "proxies:\n" + minProxyYAML("p") + "    max_rule_body: 1.5\n", want: "proxies[0].max_rule_body: must be a whole number"},
		{name: "number out of range", in: "proxies:\n" + minProxyYAML("p") + "    max_rule_body: 9223372036854775807\n", want: "proxies[0]: max_rule_body must be between 1 and"},
		{name: "number for a duration", in: "proxies:\n" + minProxyYAML("p") + "    timeouts: {total: 30}\n", want: `line 5: proxies[0].timeouts.total: must be a duration such as "30s", not a number`},
		{name: "bad duration", in: "proxies:\n" + minProxyYAML("p") + "    timeouts: {total: forever}\n", want: `line 5: proxies[0].timeouts.total: invalid duration "forever"`},
		{name: "negative duration", in: "proxies:\n" + minProxyYAML("p") + "    timeouts: {total: -1s}\n", want: `proxies[0].timeouts.total: invalid duration "-1s"`},
		{name: "JSON number for a string", in: `{"agents":[{"name":"a","labels":{"n":1}}]}`, want: "agents[0].labels.n: must be a string, not a number"},
		{name: "JSON huge number", in: `{"agents":[{"name":"a","labels":{"n":1e999}}]}`, want: "the config holds a number out of range"},

		// Nesting, size, long lines.
		{name: "deep flow lists", in: "agents: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n", want: "the config nests deeper than 64 levels"},
		{name: "deep flow mappings", in: "x: " + strings.Repeat("{a: ", 10000) + "1" + strings.Repeat("}", 10000) + "\n", want: "the config nests deeper than 64 levels"},
		{name: "deep block lists", in: "agents:\n  " + strings.Repeat("- ", 10000) + "x\n", want: "exceeded max depth of 10000"},
		{name: "deep lists, just too deep", in: "agents:\n  " + strings.Repeat("- ", 64) + "x\n", want: "line 2: agents[0][0]"},
		{name: "deep block mappings", in: deepBlock(500), want: "nests deeper than 64 levels"},
		{name: "deep long keys: the message stays short", in: deepKeys(70), want: "nests deeper than 64 levels"},
		{name: "deep JSON", in: `{"agents":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, want: "the config nests deeper than 64 levels"},
		{name: "long description", in: "proxies:\n" + minProxyYAML("p") + "    description: " + strings.Repeat("d", 1<<20) + "\n", want: "line 2: proxies[0]: description is longer than 4096 characters"},
		{name: "long label value", in: "agents:\n  - name: a\n    labels: {x: \"" + strings.Repeat("v", 300) + "\"}\n", want: "line 3: agents[0].labels: label keys are 1–63 characters and values at most 256"},
		{name: "long name", in: "agents:\n  - name: " + strings.Repeat("n", 100) + "\n", want: `agents[0].name: agent name "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…" is invalid`},
		{name: "long unknown key", in: "agents:\n  - name: a\n    \"" + strings.Repeat("k", 1000) + "\": 1\n", want: `line 3: unknown field "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…" in agents[0]`},
		{name: "long implicit key", in: strings.Repeat("k", 2000) + ": x\n", want: "the config is not valid YAML"},
		{name: "long explicit key", in: "agents:\n  - name: a\n    ? " + strings.Repeat("k", 100000) + "\n    : 1\n", want: `line 3: unknown field "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…" in agents[0]`},
		{name: "one long line", in: "agents: [" + strings.Repeat("{name: a}, ", 100000) + "]\n", want: "line 1: agents: agents lists 100000 entries; at most 1000 are taken in one apply"},
		{name: "too many agents", in: "agents:\n" + manyAgents(MaxApplyItems+1), want: "line 1: agents: agents lists 1001 entries; at most 1000 are taken in one apply", path: "agents"},
		{name: "too many secrets", in: "secrets:\n" + strings.Repeat("  - {name: s, from_env: X}\n", MaxApplyItems+1), want: "secrets: secrets lists 1001 entries"},
		{name: "too many proxies", in: "{\"proxies\":[" + strings.TrimSuffix(strings.Repeat(minProxyJSON("p")+",", MaxApplyItems+1), ",") + "]}", want: "proxies: proxies lists 1001 entries"},
		{name: "larger than MaxConfigBytes", in: "# " + strings.Repeat("x", MaxConfigBytes), want: "the config is larger than 4194304 bytes"},
		{name: "larger than MaxConfigBytes, JSON", in: `{"agents":[]}` + strings.Repeat(" ", MaxConfigBytes), want: "the config is larger than 4194304 bytes"},

		// Bytes that are not YAML text.
		{name: "NUL", in: "agents: []\n\x00\n", want: "the config is not valid YAML: control characters are not allowed"},
		{name: "NUL in a value", in: "agents:\n  - name: a\x00b\n", want: "control characters are not allowed"},
		{name: "escaped NUL in a name", in: "agents:\n  - name: \"a\\0b\"\n", want: `line 2: agents[0].name: agent name "a\x00b" is invalid`},
		{name: "escaped NUL in a path", in: "secrets:\n  - name: s\n    from_file: \"a\\0b\"\n", want: "line 3: secrets[0].from_file: a file path is 1–4096 characters, without NUL"},
		{name: "JSON NUL after", in: "{\"agents\":[]}\x00", want: "the config holds more than one JSON value"},
		{name: "JSON NUL inside", in: "{\"agents\":[\x00]}", want: `the config is not valid JSON (at byte 12); a config that starts with "{" is read as JSON`},
		{name: "invalid UTF-8", in: "agents:\n  - name: \xff\xfe\n", want: "the config is not valid UTF-8 (save it as UTF-8)"},
		{name: "Latin-1", in: "agents:\n  - name: a\n    labels: {city: M\xfcnchen}\n", want: "the config is not valid UTF-8"},
		{name: "UTF-16", in: "\xff\xfea\x00g\x00", want: "the config is not valid UTF-8"},
		{name: "JSON invalid UTF-8", in: "{\"agents\":[{\"name\":\"\xc0\xaf\"}]}", want: "the config is not valid UTF-8"},
		{name: "lone surrogate escape", in: "agents:\n  - name: a\n    labels: {x: \"\\ud800\"}\n", want: "the config is not valid YAML"},
		{name: "JSON lone surrogate", in: `{"agents":[{"name":"a","labels":{"x":"\ud800"}}]}`, want: "the config holds a lone surrogate escape"},
		{name: "byte order mark inside", in: "agents: []\n\ufeffproxies: []\n", want: `line 2: unknown field "\ufeffproxies" in the config (did you mean "proxies"?)`},
		{name: "tabs for indentation", in: "agents:\n\t- name: a\n", want: "the config is not valid YAML: line 2: found character that cannot start any token"},
		{name: "tab-indented mapping", in: "agents:\n  - name: a\n\tlabels: {}\n", want: "the config is not valid YAML"},
		{name: "bad indentation", in: "proxies:\n  - name: x\n   upstream: bad\n", want: "the config is not valid YAML: line 1: did not find expected '-' indicator"},
		{name: "unclosed flow", in: "agents: [{name: a}\n", want: "the config is not valid YAML"},
		{name: "unclosed quote", in: "agents:\n  - name: \"a\n", want: "the config is not valid YAML"},
		{name: "unknown escape", in: "agents:\n  - name: \"\\q\"\n", want: "the config is not valid YAML"},
		{name: "CRLF keeps line numbers", in: "agents:\r\n  - name: a\r\n    lables: {}\r\n", want: `line 3: unknown field "lables" in agents[0] (did you mean "labels"?)`},

		// Not a mapping.
		{name: "empty file", in: "", want: "the config is empty"},
		{name: "blank lines", in: "\n\n  \n", want: "the config is empty"},
		{name: "only comments", in: "# keyhole.yaml\n# nothing yet\n", want: "the config is empty"},
		{name: "only a document marker", in: "---\n# nothing\n", want: "the config is empty"},
		{name: "only a BOM", in: "\ufeff", want: "the config is empty"},
		{name: "null", in: "null\n", want: "the document must be an object, not null"},
		{name: "tilde", in: "--- ~\n", want: "the document must be an object, not null"},
		{name: "top-level list", in: "- agents: []\n", want: "the document must be an object, not a list"},
		{name: "top-level JSON list", in: `[{"agents":[]}]`, want: "the document must be an object, not a list"},
		{name: "top-level string", in: "agents\n", want: "the document must be an object, not a string"},
		{name: "top-level number", in: "42\n", want: "the document must be an object, not a number"},
		{name: "top-level boolean", in: "true\n", want: "the document must be an object, not true or false"},
		{name: "JSON with a comment", in: "{\"agents\": [] /* none */}", want: `the config is not valid JSON (at byte 15); a config that starts with "{" is read as JSON`},
		{name: "JSON trailing comma", in: `{"agents": [],}`, want: "the config is not valid JSON (at byte 15)"},
		{name: "JSON truncated", in: `{"agents": [`, want: "the config is not valid JSON"},
		{name: "JSON trailing data", in: `{"agents": []} {"agents": []}`, want: "the config holds more than one JSON value"},
		{name: "YAML flow mapping read as JSON", in: "{agents: []}\n", want: `the config is not valid JSON (at byte 2); a config that starts with "{" is read as JSON`},
		{name: "JSON duplicate", in: `{"agents":[],"agents":[]}`, want: `the config repeats the key "agents" in the config; a key may appear once per object`},
		{name: "JSON duplicate deep", in: `{"proxies":[` + minProxyJSON("p") + `,{"name":"q","upstream":"https://a.example","auth":{"type":"none"},"rules":[{"name":"r","effect":"allow","effect":"deny","paths":["/"]}]}]}`, want: `the config repeats the key "effect" in proxies[1].rules[0]`, path: "proxies[1].rules[0]"},
		{name: "JSON duplicate by escape", in: `{"agents":[{"name":"a","labels":{"k":"1","\u006b":"2"}}]}`, want: `repeats the key "k" in agents[0].labels`},
		{name: "JSON case variant", in: `{"Secrets":[]}`, want: `unknown field "Secrets" in the config (did you mean "secrets"?)`},

		// Secrets.
		{name: "secret without a source", in: "secrets:\n  - name: k\n", want: "line 2: secrets[0]: secret k needs exactly one of from_env, from_file, value_object_from_env and value_object_from_file (it has 0)", path: "secrets[0]"},
		{name: "secret with an empty source", in: "secrets:\n  - {name: k, from_env: \"\"}\n", want: "secrets[0]: secret k needs exactly one of from_env, from_file, value_object_from_env and value_object_from_file (it has 0)"},
		{name: "secret with a null source", in: "secrets:\n  - {name: k, value_object_from_env: null}\n", want: "(it has 0)"},
		{name: "secret with two sources", in: "secrets:\n  - name: k\n    from_env: K\n    from_file: k.txt\n", want: "line 2: secrets[0]: secret k needs exactly one of from_env, from_file, value_object_from_env and value_object_from_file (it has 2)"},
		{name: "secret with four sources", in: "secrets:\n  - {name: k, from_env: K, from_file: f, value_object_from_env: {a: A}, value_object_from_file: {a: f}}\n", want: "(it has 4)"},
		{name: "secret without a name", in: "secrets:\n  - from_env: K\n", want: `line 2: secrets[0].name: secret name "" is invalid: 1–128 characters A-Z a-z 0-9 . _ -, starting with a letter or digit`},
		{name: "secret name traversal", in: "secrets:\n  - {name: ../../etc/passwd, from_env: K}\n", want: `line 2: secrets[0].name: secret name "../../etc/passwd" is invalid`, path: "secrets[0].name"},
		{name: "secret name dot-dot", in: "secrets:\n  - {name: \"..\", from_env: K}\n", want: `secret name ".." is invalid`},
		{name: "secret name starting with a dash", in: "secrets:\n  - {name: -rf, from_env: K}\n", want: `secret name "-rf" is invalid`},
		{name: "secret name with a slash", in: "secrets:\n  - {name: a/b, from_env: K}\n", want: `secret name "a/b" is invalid`},
		{name: "secret name percent-encoded", in: "secrets:\n  - {name: \"%2e%2e\", from_env: K}\n", want: `secret name "%2e%2e" is invalid`},
		{name: "secret name too long", in: "secrets:\n  - {name: " + strings.Repeat("s", 129) + ", from_env: K}\n", want: `secret name "ssssssss`},
		{name: "secret listed twice", in: "secrets:\n  - {name: k, from_env: A}\n  - name: k\n    from_file: b\n", want: "line 3: secrets[1].name: secret k is listed twice (also secrets[0])", path: "secrets[1].name"},
		{name: "secret field traversal", in: "secrets:\n  - name: k\n    value_object_from_file: {../x: f}\n", want: `line 3: secrets[0].value_object_from_file: field name "../x" is invalid: 1–64 characters A-Z a-z 0-9 _ -`},
		{name: "secret field with a dot", in: "secrets:\n  - name: k\n    value_object_from_env: {a.b: A}\n", want: `field name "a.b" is invalid`},
		{name: "secret with no fields", in: "secrets:\n  - name: k\n    value_object_from_env: {}\n", want: "line 3: secrets[0].value_object_from_env: an object secret needs at least one field"},
		{name: "secret with 65 fields", in: "secrets:\n  - name: k\n    value_object_from_env: {" + manyFields(65) + "}\n", want: "secrets[0].value_object_from_env: an object secret has at most 64 fields"},
		{name: "secret field without a file", in: "secrets:\n  - name: k\n    value_object_from_file:\n      a: f\n      b: \"\"\n", want: "line 5: secrets[0].value_object_from_file.b: a file path is 1–4096 characters, without NUL"},
		{name: "secret field from a number", in: "secrets:\n  - name: k\n    value_object_from_env: {a: 1}\n", want: "secrets[0].value_object_from_env.a: must be a string, not a number (in YAML, quote it"},
		{name: "file path too long", in: "secrets:\n  - {name: k, from_file: " + strings.Repeat("p", 4097) + "}\n", want: "secrets[0].from_file: a file path is 1–4096 characters"},
		{name: "env name with =", in: "secrets:\n  - {name: k, from_env: \"" + cfgCanary + "==\"}\n", want: "line 2: secrets[0].from_env: not an environment variable name"},
		{name: "env name with NUL", in: "secrets:\n  - {name: k, from_env: \"A\\0" + cfgCanary + "\"}\n", want: "secrets[0].from_env: not an environment variable name"},
		{name: "env name too long", in: "secrets:\n  - {name: k, from_env: " + strings.Repeat(cfgCanary, 200) + "}\n", want: "secrets[0].from_env: not an environment variable name"},
		{name: "env field with =", in: "secrets:\n  - name: k\n    value_object_from_env: {user: U, pass: \"" + cfgCanary + "=\"}\n", want: "secrets[0].value_object_from_env.pass: not an environment variable name"},
		{name: "secret is a string", in: "secrets:\n  - " + cfgCanary + "\n", want: "line 2: secrets[0]: must be an object, not a string"},
		{name: "secrets is a map", in: "secrets:\n  k: " + cfgCanary + "\n", want: "line 1: secrets: must be a list, not an object"},

		// A value is never written in the file, in any form.
		{name: "value", in: "secrets:\n  - name: k\n    value: " + cfgCanary + "\n", want: "line 3: secrets[0]: a secret's value is never written in the config; read it with from_env, from_file, value_object_from_env or value_object_from_file", path: "secrets[0].value"},
		{name: "value quoted", in: "secrets:\n  - name: k\n    value: \"" + cfgCanary + "\"\n", want: "line 3: secrets[0]: a secret's value is never written in the config"},
		{name: "value before the name", in: "secrets:\n  - value: '" + cfgCanary + "'\n    name: k\n", want: "line 2: secrets[0]: a secret's value is never written in the config"},
		{name: "value and a source", in: "secrets:\n  - name: k\n    from_env: K\n    value: " + cfgCanary + "\n", want: "line 4: secrets[0]: a secret's value is never written in the config"},
		{name: "value object", in: "secrets:\n  - name: k\n    value: {user: u, password: " + cfgCanary + "}\n", want: "line 3: secrets[0]: a secret's value is never written in the config"},
		{name: "value block object", in: "secrets:\n  - name: k\n    value:\n      password: " + cfgCanary + "\n", want: "line 3: secrets[0]: a secret's value is never written in the config"},
		{name: "value list", in: "secrets:\n  - name: k\n    value: [" + cfgCanary + "]\n", want: "secrets[0]: a secret's value is never written in the config"},
		{name: "value number", in: "secrets:\n  - name: k\n    value: 4111111111111111\n", want: "secrets[0]: a secret's value is never written in the config"},
		{name: "value block scalar", in: "secrets:\n  - name: k\n    value: |\n      " + cfgCanary + "\n", want: "line 3: secrets[0]: a secret's value is never written in the config"},
		{name: "value JSON", in: `{"secrets":[{"name":"k","value":"` + cfgCanary + `"}]}`, want: "secrets[0]: a secret's value is never written in the config", path: "secrets[0].value"},
		{name: "value JSON object", in: `{"secrets":[{"name":"k","value":{"a":"` + cfgCanary + `"}}]}`, want: "secrets[0]: a secret's value is never written in the config"},
		{name: "value with a repeated key", in: "secrets:\n  - name: k\n    value: {a: " + cfgCanary + ", a: " + cfgCanary + "}\n", want: `line 3: secrets[0].value: the key "a" appears twice`},
		{name: "value JSON with a repeated key", in: `{"secrets":[{"name":"k","value":{"a":"` + cfgCanary + `","a":"x"}}]}`, want: "secrets[0]: a secret's value is never written in the config"},
		{name: "value with a tag", in: "secrets:\n  - name: k\n    value: !secret " + cfgCanary + "\n", want: "line 3: secrets[0].value: the tag !secret is not supported"},
		{name: "value with an anchor", in: "secrets:\n  - name: k\n    value: &v " + cfgCanary + "\n", want: "line 3: secrets[0].value: anchors and aliases"},
		{name: "value binary", in: "secrets:\n  - name: k\n    value: !!binary c2stbGl2ZQ==\n", want: "line 3: secrets[0].value: binary values (!!binary) are not supported"},
		{name: "value invalid UTF-8", in: "secrets:\n  - name: k\n    value: " + cfgCanary + "\xff\n", want: "the config is not valid UTF-8"},
		{name: "value fused to its key", in: "secrets:\n- {value:" + cfgCanary + "} ", want: "line 2: secrets[0]: a secret's value is never written in the config"},
		{name: "value fused to its key, JSON", in: `{"secrets":[{"name":"k","value:` + cfgCanary + `":null}]}`, want: "secrets[0]: a secret's value is never written in the config"},
		{name: "a value as a key", in: "secrets:\n  - {name: k, " + cfgCanary + "/x=}\n", want: "line 2: secrets[0]: unknown field (not repeated here, as it may hold a value); a secret has a name and one of from_env, from_file, value_object_from_env and value_object_from_file"},
		{name: "a plain unknown key is named", in: "secrets:\n  - {name: k, from_env: K, zzz: 1}\n", want: `line 2: unknown field "zzz" in secrets[0]`},
		{name: "Value", in: "secrets:\n  - name: k\n    Value: " + cfgCanary + "\n", want: `line 3: unknown field "Value" in secrets[0]`},
		{name: "values", in: "secrets:\n  - name: k\n    values: " + cfgCanary + "\n", want: `unknown field "values" in secrets[0]`},
		{name: "value in a second secret", in: "secrets:\n  - {name: a, from_env: A}\n  - {name: b, value: " + cfgCanary + "}\n", want: "line 3: secrets[1]: a secret's value is never written in the config"},
		{name: "value and an unknown field", in: "secrets:\n  - name: k\n    value: " + cfgCanary + "\n    zzz: 1\n", want: "secrets[0]: a secret's value is never written in the config"},

		// Unknown fields, with a suggestion when one is close.
		{name: "unknown top-level", in: "proxy: []\n", want: `line 1: unknown field "proxy" in the config (did you mean "proxies"?)`, path: "proxy"},
		{name: "unknown top-level, no suggestion", in: "version: 1\n", want: `line 1: unknown field "version" in the config`},
		{name: "prune is not a config field", in: "prune: true\n", want: `unknown field "prune" in the config`},
		{name: "unknown in an agent", in: "agents:\n  - name: a\n    lables: {}\n", want: `line 3: unknown field "lables" in agents[0] (did you mean "labels"?)`, path: "agents[0].lables"},
		{name: "unknown with a block value: the key's line", in: "agents:\n  - name: a\n    lables:\n      team: x\n", want: `line 3: unknown field "lables" in agents[0] (did you mean "labels"?)`},
		{name: "unknown in a secret", in: "secrets:\n  - name: k\n    from-env: K\n", want: `line 3: unknown field "from-env" in secrets[0] (did you mean "from_env"?)`},
		{name: "camelCase in a secret", in: "secrets:\n  - name: k\n    fromFile: k.txt\n", want: `unknown field "fromFile" in secrets[0] (did you mean "from_file"?)`},
		{name: "unknown in a proxy", in: "proxies:\n" + minProxyYAML("p") + "    upstrem: https://x.example\n", want: `line 5: unknown field "upstrem" in proxies[0] (did you mean "upstream"?)`},
		{name: "unknown in auth", in: "proxies:\n  - name: p\n    upstream: https://api.example.com\n    auth: {type: none, Secret: s}\n", want: `line 4: unknown field "Secret" in proxies[0].auth (did you mean "secret"?)`},

		// Proxies, rules and agents are validated, at the right line.
		{name: "rule effect not a string", in: deepRuleYAML("5"), want: fmt.Sprintf("line %d: proxies[1].rules[0].effect: must be a string, not a number (in YAML, quote it to make it a string)", lineOfEffect), path: "proxies[1].rules[0].effect"},
		{name: "rule effect a list", in: deepRuleYAML("[allow]"), want: fmt.Sprintf("line %d: proxies[1].rules[0].effect: must be a string, not a list", lineOfEffect)},
		{name: "rule effect unknown field", in: strings.Replace(deepRuleYAML("allow"), "effect:", "efect:", 1), want: fmt.Sprintf(`line %d: unknown field "efect" in proxies[1].rules[0] (did you mean "effect"?)`, lineOfEffect), path: "proxies[1].rules[0].efect"},
		{name: "rule effect invalid", in: deepRuleYAML("permit"), want: fmt.Sprintf(`line %d: proxies[1].rules[0]: rule r: effect must be allow or deny, not "permit"`, lineOfEffect-2), path: "proxies[1].rules[0]"},
		{name: "rule without paths", in: "proxies:\n" + minProxyYAML("p") + "    rules:\n      - {name: r, effect: allow}\n", want: `line 6: proxies[0].rules[0]: rule r: paths is required (use "/**" for every path)`},
		{name: "rule name traversal", in: "proxies:\n" + minProxyYAML("p") + "    rules:\n      - {name: ../r, effect: allow, paths: [/]}\n", want: `line 6: proxies[0].rules[0]: rule name "../r" is invalid`},
		{name: "rules named twice", in: "proxies:\n" + minProxyYAML("p") + "    rules:\n      - {name: r, effect: allow, paths: [/]}\n      - {name: r, effect: deny, paths: [/]}\n", want: `line 2: proxies[0]: two rules are named "r"`},
		{name: "proxy name traversal", in: "proxies:\n" + minProxyYAML("../etc"), want: `line 2: proxies[0]: proxy name "../etc" is invalid`},
		{name: "proxy listed twice", in: "proxies:\n" + minProxyYAML("p") + minProxyYAML("p"), want: "line 5: proxies[1].name: proxy p is listed twice (also proxies[0])", path: "proxies[1].name"},
		{name: "proxy upstream", in: "proxies:\n  - name: p\n    upstream: ftp://x\n    auth: {type: none}\n", want: "line 2: proxies[0]: upstream must start with https:// or http://"},
		{name: "proxy static header template", in: "proxies:\n" + minProxyYAML("p") + "    static_headers: {X-Key: \"{{secret}}\"}\n", want: "proxies[0]: static_headers are not templates"},
		{name: "proxy not a mapping", in: "proxies:\n  - stripe\n", want: "line 2: proxies[0]: must be an object, not a string"},
		{name: "agent name traversal", in: "agents:\n  - name: ../x\n", want: `line 2: agents[0].name: agent name "../x" is invalid: 1–63 characters a-z, 0-9 and -, starting with a letter or digit`},
		{name: "agent name upper case", in: "agents:\n  - name: Bot\n", want: `agent name "Bot" is invalid`},
		{name: "agent listed twice", in: "agents:\n  - name: a\n  - name: b\n  - name: a\n", want: "line 4: agents[2].name: agent a is listed twice (also agents[0])"},
		{name: "agent with an empty label key", in: "agents:\n  - name: a\n    labels: {\"\": x}\n", want: "line 3: agents[0].labels: label keys are 1–63 characters"},
		{name: "agent with 65 labels", in: "agents:\n  - name: a\n    labels: {" + manyFields(65) + "}\n", want: "line 3: agents[0].labels: an agent has at most 64 labels"},
	}
}

func deepBlock(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	b.WriteString(strings.Repeat(" ", n) + "x\n")
	return b.String()
}

// deepKeys nests n mappings whose keys are 40 bytes of control
// characters: every step of the path is long once quoted.
func deepKeys(n int) string {
	key := `"` + strings.Repeat(`\x01`, 40) + `"`
	return "x: " + strings.Repeat("{"+key+": ", n) + "1" + strings.Repeat("}", n) + "\n"
}

func manyFields(n int) string {
	f := make([]string, n)
	for i := range f {
		f[i] = fmt.Sprintf("f%d: V%d", i, i)
	}
	return strings.Join(f, ", ")
}

func TestParseConfigHostile(t *testing.T) {
	seen := map[string]bool{}
	for _, tt := range parseConfigHostile() {
		if seen[tt.name] {
			t.Fatalf("two rows are named %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			var c *Config
			var err error
			timed(t, func() { c, err = ParseConfig([]byte(tt.in)) })
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if c != nil {
				t.Errorf("a config with the error: %+v", c)
			}
			checkCfgError(t, err, tt.in, tt.want)
			if tt.path != "" {
				if p := err.(*Error).Path; p != tt.path {
					t.Errorf("Path = %q, want %q", p, tt.path)
				}
			}
		})
	}
}

// TestParseConfigLines: the line an error names is the line of the value
// at fault, at any depth, however the YAML is laid out.
func TestParseConfigLines(t *testing.T) {
	const cfg = `secrets:
  - name: a
    from_env: A
proxies:
  - name: p
    upstream: https://api.example.com
    auth: {type: none}
    rules:
      - {name: r, effect: allow, paths: ["/"]}
  - name: q
    upstream: https://api.example.com
    auth: {type: none}
    rules:
      - name: r0
        paths: ["/"]

        # a comment, a blank line
        effect: EFFECT
      - name: r1
        effect: allow
        paths: ["/"]
agents:
  - name: a
`
	effectLine := lineContaining(t, cfg, "effect: EFFECT")
	for _, tc := range []struct {
		name, effect string
		line         int
		path         string
	}{
		{"kind", "5", effectLine, "proxies[1].rules[0].effect"},
		{"kind in flow", "{a: b}", effectLine, "proxies[1].rules[0].effect"},
		{"on the next line: the key's line", "\n          [allow]", effectLine, "proxies[1].rules[0].effect"},
		{"a block value: the key's line", "\n          - allow", effectLine, "proxies[1].rules[0].effect"},
		{"validation: the rule's line", "permit", lineContaining(t, cfg, "- name: r0"), "proxies[1].rules[0]"},
		{"tag", "!x allow", effectLine, "proxies[1].rules[0].effect"},
		{"anchor", "&x allow", effectLine, "proxies[1].rules[0].effect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(cfg, "EFFECT", tc.effect, 1)
			_, err := ParseConfig([]byte(in))
			if err == nil {
				t.Fatal("accepted")
			}
			e := err.(*Error)
			if want := fmt.Sprintf("line %d: ", tc.line); !strings.HasPrefix(e.Msg, want) {
				t.Errorf("error %q does not start with %q", e.Msg, want)
			}
			if e.Path != tc.path {
				t.Errorf("Path = %q, want %q", e.Path, tc.path)
			}
		})
	}
	// The same with CRLF line endings, and in flow style on one line.
	crlf := strings.ReplaceAll(strings.Replace(cfg, "EFFECT", "5", 1), "\n", "\r\n")
	if _, err := ParseConfig([]byte(crlf)); err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: proxies[1].rules[0].effect", effectLine)) {
		t.Errorf("CRLF: %v", err)
	}
	flow := "proxies: [{name: p, upstream: \"https://a.example\", auth: {type: none}},\n  {name: q, upstream: \"https://a.example\", auth: {type: none}, rules: [{name: r, paths: [/],\n    effect: 5}]}]\n"
	if _, err := ParseConfig([]byte(flow)); err == nil || !strings.HasPrefix(err.Error(), "line 3: proxies[1].rules[0].effect: must be a string") {
		t.Errorf("flow: %v", err)
	}
}

// checkConfigRoundTrip: an accepted config means the same once written
// as JSON again, and the apply body the CLI builds from it (ProxiesJSON,
// agents, secrets' values) is one DecodeApply accepts as the same proxies
// and agents.
func checkConfigRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	doc := map[string]any{"secrets": c.Secrets}
	body := map[string]any{"prune": true}
	var secrets []SecretValue
	for _, s := range c.Secrets {
		v := json.RawMessage(`"a-value-long-enough-0123456789"`)
		if m := s.ValueObjectFromEnv; m != nil || s.ValueObjectFromFile != nil {
			if m == nil {
				m = s.ValueObjectFromFile
			}
			obj := map[string]string{}
			for k := range m {
				obj[k] = "field-value"
			}
			v, _ = json.Marshal(obj)
		}
		secrets = append(secrets, SecretValue{Name: s.Name, Value: v})
	}
	body["secrets"] = secrets
	if c.HasProxies {
		doc["proxies"] = append([]json.RawMessage{}, c.ProxiesJSON...)
		body["proxies"] = doc["proxies"]
	}
	if c.HasAgents {
		doc["agents"] = append([]Agent{}, c.Agents...)
		body["agents"] = doc["agents"]
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	c2, err := ParseConfig(js)
	if err != nil {
		t.Fatalf("the config written as JSON is refused: %v\n%s", err, js)
	}
	if diff := cmp.Diff(c, c2, configCmp...); diff != "" {
		t.Fatalf("the config written as JSON differs (-first +second):\n%s", diff)
	}
	for i := range c.ProxiesJSON {
		if !jsonEqual(t, c.ProxiesJSON[i], c2.ProxiesJSON[i]) {
			t.Fatalf("ProxiesJSON[%d]: %s, then %s", i, c.ProxiesJSON[i], c2.ProxiesJSON[i])
		}
	}
	js, err = json.Marshal(body)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if len(js) > MaxConfigBytes {
		return
	}
	req, err := DecodeApply(js)
	if err != nil {
		t.Fatalf("DecodeApply refuses the body built from an accepted config: %v", err)
	}
	if diff := cmp.Diff(c.Proxies, req.Proxies, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("proxies differ (-config +apply):\n%s", diff)
	}
	if diff := cmp.Diff(c.Agents, req.Agents, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("agents differ (-config +apply):\n%s", diff)
	}
	if req.HasProxies != c.HasProxies || req.HasAgents != c.HasAgents || !req.Prune || req.DryRun || len(req.Secrets) != len(c.Secrets) {
		t.Fatalf("apply %+v from config %+v", req, c)
	}
	// The decoded proxies, encoded again, decode to themselves (the node
	// stores what it decoded).
	js, _ = json.Marshal(map[string]any{"proxies": req.Proxies})
	req2, err := DecodeApply(js)
	if err != nil {
		t.Fatalf("decoded proxies, encoded, are refused: %v", err)
	}
	if diff := cmp.Diff(req.Proxies, req2.Proxies); diff != "" {
		t.Fatalf("proxies are not stable (-first +second):\n%s", diff)
	}
}

func TestDecodeApplyValid(t *testing.T) {
	body := `{
	  "secrets": [
	    {"name": "stripe-key", "value": "` + cfgCanary + `"},
	    {"name": "jira", "value": {"username": "svc", "password": "` + cfgCanary + `"}}
	  ],
	  "proxies": [` + minProxyJSON("p") + `],
	  "agents": [{"name": "a", "labels": {"team": "x"}}, {"name": "b"}],
	  "prune": true,
	  "dry_run": true
	}`
	req, err := DecodeApply([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := &ApplyRequest{
		Secrets: []SecretValue{{Name: "stripe-key", Value: json.RawMessage(`"` + cfgCanary + `"`)},
			{Name: "jira", Value: json.RawMessage(`{"username": "svc", "password": "` + cfgCanary + `"}`)}},
		Proxies: []Proxy{NewProxy()},
		Agents:  []Agent{{Name: "a", Labels: map[string]string{"team": "x"}}, {Name: "b", Labels: map[string]string{}}},
		Prune:   true, DryRun: true, HasProxies: true, HasAgents: true,
	}
	want.Proxies[0].Name, want.Proxies[0].Upstream, want.Proxies[0].Auth.Type = "p", "https://api.example.com", "none"
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A SecretValue printed shows its name only.
	if s := fmt.Sprintf("%v %+v %s %#v", req.Secrets[0], req.Secrets, req.Secrets[1], req.Secrets[1]); strings.Contains(s, cfgCanary) {
		t.Errorf("a printed SecretValue shows the value: %s", s)
	}

	for _, tc := range []struct {
		body                  string
		hasProxies, hasAgents bool
	}{
		{`{}`, false, false},
		{`{"proxies":null,"agents":null}`, false, false},
		{`{"proxies":[],"agents":[]}`, true, true},
		{`{"agents":[]}`, false, true},
		{`{"secrets":null,"prune":null,"dry_run":null}`, false, false},
		{" \r\n\t{}\n", false, false},
	} {
		req, err := DecodeApply([]byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if req.HasProxies != tc.hasProxies || req.HasAgents != tc.hasAgents || req.Prune || req.DryRun {
			t.Errorf("%s: %+v", tc.body, req)
		}
	}
}

// TestDecodeApplyValueShapes: DecodeApply checks that a secret has a
// value; whether it is a string or an object of string fields (and long
// enough) is checked by the node's catalog.EncodeValue, before anything
// is changed, with a message that names the secret and never quotes the
// value (internal/admin's TestApplyStrictDecoding). These pass here.
func TestDecodeApplyValueShapes(t *testing.T) {
	for _, v := range []string{`"` + cfgCanary + `"`, `""`, `{}`, `{"a":"` + cfgCanary + `"}`, `{"a":1}`, `12345`, `true`, `["` + cfgCanary + `"]`, `{"a":{"b":"` + cfgCanary + `"}}`} {
		req, err := DecodeApply([]byte(`{"secrets":[{"name":"k","value":` + v + `}]}`))
		if err != nil {
			t.Errorf("value %s: %v", v, err)
			continue
		}
		if string(req.Secrets[0].Value) != v {
			t.Errorf("value %s came out as %s", v, req.Secrets[0].Value)
		}
	}
}

// decodeApplyHostile are bodies DecodeApply refuses. Every one with a
// secret's value uses cfgCanary, which no message may hold.
func decodeApplyHostile() []hostileConfig {
	sv := func(v string) string { return `{"name":"k","value":"` + v + `"}` }
	canary := sv(cfgCanary)
	many := strings.TrimSuffix(strings.Repeat(`{"name":"k","value":"`+cfgCanary+`"},`, MaxApplyItems+1), ",")
	return []hostileConfig{
		{name: "empty", in: "", want: "the body is empty; send a JSON object"},
		{name: "blank", in: " \r\n\t", want: "the body is empty; send a JSON object"},
		{name: "null", in: "null", want: "the document must be an object, not null"},
		{name: "list", in: `[{"secrets":[` + canary + `]}]`, want: "the document must be an object, not a list"},
		{name: "string", in: `"` + cfgCanary + `"`, want: "the document must be an object, not a string"},
		{name: "number", in: `42`, want: "the document must be an object, not a number"},
		{name: "YAML", in: "secrets:\n  - name: k\n    value: " + cfgCanary + "\n", want: "the body is not valid JSON (at byte 1)"},
		{name: "YAML flow", in: "{secrets: [{name: k, value: " + cfgCanary + "}]}", want: "the body is not valid JSON (at byte 2)"},
		{name: "byte order mark", in: "\ufeff{\"secrets\":[" + canary + "]}", want: "the body is not valid JSON (at byte 1)"},
		{name: "NUL after", in: `{"secrets":[` + canary + "]}\x00", want: "the body holds more than one JSON value"},
		{name: "NUL in a value", in: `{"secrets":[` + sv(cfgCanary+"\x00") + `]}`, want: "the body is not valid JSON (at byte"},
		{name: "invalid UTF-8 in a value", in: `{"secrets":[` + sv(cfgCanary+"\xff") + `]}`, want: "the body is not valid UTF-8"},
		{name: "lone surrogate in a value", in: `{"secrets":[` + sv(cfgCanary+`\ud800`) + `]}`, want: "the body holds a lone surrogate escape"},
		{name: "control character in a value", in: `{"secrets":[` + sv(cfgCanary+"\n") + `]}`, want: "the body is not valid JSON (at byte"},
		{name: "bad escape in a value", in: `{"secrets":[` + sv(cfgCanary+`\q`) + `]}`, want: "the body is not valid JSON (at byte"},
		{name: "truncated in a value", in: `{"secrets":[{"name":"k","value":"` + cfgCanary, want: "the body is not valid JSON"},
		{name: "truncated after a value", in: `{"secrets":[` + canary, want: "the body is not valid JSON"},
		{name: "trailing comma", in: `{"secrets":[` + canary + `,]}`, want: "the body is not valid JSON (at byte"},
		{name: "comment", in: `{"secrets":[` + canary + `] /* x */}`, want: "the body is not valid JSON (at byte"},
		{name: "single quotes", in: `{"secrets":[{"name":"k","value":'` + cfgCanary + `'}]}`, want: "the body is not valid JSON (at byte"},
		{name: "trailing data", in: `{"secrets":[` + canary + `]} {"x":1}`, want: "the body holds more than one JSON value"},
		{name: "trailing bracket", in: `{"secrets":[` + canary + `]}]`, want: "the body holds data after its JSON value"},
		{name: "two values, the second with a value", in: `{} {"secrets":[` + canary + `]}`, want: "the body holds more than one JSON value"},

		{name: "duplicate top-level", in: `{"prune":false,"secrets":[` + canary + `],"prune":true}`, want: `the body repeats the key "prune" in the request; a key may appear once per object`},
		{name: "duplicate value", in: `{"secrets":[{"name":"k","value":"` + cfgCanary + `","value":"` + cfgCanary + `x"}]}`, want: `the body repeats the key "value" in secrets[0]`, path: "secrets[0]"},
		{name: "duplicate name", in: `{"secrets":[{"name":"k","name":"j","value":"` + cfgCanary + `"}]}`, want: `repeats the key "name" in secrets[0]`},
		{name: "duplicate field in a value", in: `{"secrets":[{"name":"k","value":{"password":"` + cfgCanary + `","password":"x"}}]}`, want: `the body repeats the key "password" in secrets[0].value`, path: "secrets[0].value"},
		{name: "duplicate field by escape", in: `{"secrets":[{"name":"k","value":{"a":"` + cfgCanary + `","\u0061":"x"}}]}`, want: `repeats the key "a" in secrets[0].value`},
		{name: "duplicate in a label", in: `{"secrets":[` + canary + `],"agents":[{"name":"a","labels":{"x":"1","x":"2"}}]}`, want: `repeats the key "x" in agents[0].labels`},
		{name: "duplicate in a rule", in: `{"secrets":[` + canary + `],"proxies":[{"name":"p","upstream":"https://a.example","auth":{"type":"none"},"rules":[{"name":"r","effect":"allow","effect":"deny","paths":["/"]}]}]}`, want: `repeats the key "effect" in proxies[0].rules[0]`},

		{name: "unknown top-level", in: `{"proxy":[],"secrets":[` + canary + `]}`, want: `unknown field "proxy" in the request (did you mean "proxies"?)`, path: "proxy"},
		{name: "case variant", in: `{"Secrets":[` + canary + `]}`, want: `unknown field "Secrets" in the request (did you mean "secrets"?)`},
		{name: "DryRun", in: `{"dryRun":true,"secrets":[` + canary + `]}`, want: `unknown field "dryRun" in the request (did you mean "dry_run"?)`},
		{name: "from_env in a body", in: `{"secrets":[{"name":"k","value":"` + cfgCanary + `","from_env":"X"}]}`, want: `unknown field "from_env" in secrets[0]`},
		{name: "Value", in: `{"secrets":[{"name":"k","Value":"` + cfgCanary + `"}]}`, want: `unknown field "Value" in secrets[0] (did you mean "value"?)`},
		{name: "unknown beside a value", in: `{"secrets":[{"name":"k","value":"` + cfgCanary + `","version":2}]}`, want: `unknown field "version" in secrets[0]`},

		{name: "secret without a value", in: `{"secrets":[{"name":"k"}]}`, want: "secrets[0].value: secret k: value is required: a string, or an object of string fields", path: "secrets[0].value"},
		{name: "secret value null", in: `{"secrets":[{"name":"k","value":null}]}`, want: "secrets[0].value: secret k: value is required"},
		{name: "second secret without a value", in: `{"secrets":[` + canary + `,{"name":"j"}]}`, want: "secrets[1].value: secret j: value is required"},
		{name: "secret without a name", in: `{"secrets":[{"value":"` + cfgCanary + `"}]}`, want: `secrets[0].name: secret name "" is invalid`, path: "secrets[0].name"},
		{name: "secret name traversal", in: `{"secrets":[{"name":"../../etc/passwd","value":"` + cfgCanary + `"}]}`, want: `secrets[0].name: secret name "../../etc/passwd" is invalid`},
		{name: "secret name a number", in: `{"secrets":[{"name":7,"value":"` + cfgCanary + `"}]}`, want: "secrets[0].name: must be a string, not a number"},
		{name: "secret listed twice", in: `{"secrets":[` + canary + `,` + canary + `]}`, want: "secrets[1].name: secret k is listed twice (also secrets[0])"},
		{name: "secret is a string", in: `{"secrets":["` + cfgCanary + `"]}`, want: "secrets[0]: must be an object, not a string"},
		{name: "secrets is an object", in: `{"secrets":{"k":"` + cfgCanary + `"}}`, want: "secrets: must be a list, not an object"},
		{name: "too many secrets", in: `{"secrets":[` + many + `]}`, want: "secrets: secrets lists 1001 entries; at most 1000 are taken in one apply"},
		{name: "larger than MaxConfigBytes", in: `{"secrets":[{"name":"k","value":"` + strings.Repeat(cfgCanary, MaxConfigBytes/len(cfgCanary)+1) + `"}]}`, want: "the body is larger than 4194304 bytes"},
		{name: "deep value", in: `{"secrets":[{"name":"k","value":{"a":` + strings.Repeat("[", 10000) + `"` + cfgCanary + `"` + strings.Repeat("]", 10000) + `}}]}`, want: "the body nests deeper than 64 levels"},
		{name: "huge number in a value", in: `{"secrets":[{"name":"k","value":{"a":"` + cfgCanary + `","b":1e999}}]}`, want: "the body holds a number out of range"},
		{name: "long line", in: `{"secrets":[` + canary + `],"agents":[` + strings.TrimSuffix(strings.Repeat(`{"name":"a"},`, 100000), ",") + `]}`, want: "agents: agents lists 100000 entries"},

		{name: "prune a string", in: `{"prune":"true","secrets":[` + canary + `]}`, want: "prune: must be true or false, not a string", path: "prune"},
		{name: "dry_run a number", in: `{"dry_run":1,"secrets":[` + canary + `]}`, want: "dry_run: must be true or false, not a number"},
		{name: "agents a map", in: `{"agents":{"a":{}},"secrets":[` + canary + `]}`, want: "agents: must be a list, not an object"},
		{name: "agent name traversal", in: `{"agents":[{"name":"../a"}],"secrets":[` + canary + `]}`, want: `agents[0].name: agent name "../a" is invalid`},
		{name: "agent label a number", in: `{"agents":[{"name":"a","labels":{"team":7}}],"secrets":[` + canary + `]}`, want: "agents[0].labels.team: must be a string, not a number"},
		{name: "agent listed twice", in: `{"agents":[{"name":"a"},{"name":"a"}],"secrets":[` + canary + `]}`, want: "agents[1].name: agent a is listed twice (also agents[0])"},
		{name: "proxy invalid", in: `{"secrets":[` + canary + `],"proxies":[{"name":"p","upstream":"ftp://x","auth":{"type":"none"}}]}`, want: "proxies[0]: upstream must start with https:// or http://"},
		{name: "proxy rule effect", in: `{"secrets":[` + canary + `],"proxies":[` + minProxyJSON("p") + `,{"name":"q","upstream":"https://a.example","auth":{"type":"none"},"rules":[{"name":"r","effect":5,"paths":["/"]}]}]}`, want: "proxies[1].rules[0].effect: must be a string, not a number", path: "proxies[1].rules[0].effect"},
		{name: "proxy rule invalid", in: `{"secrets":[` + canary + `],"proxies":[{"name":"p","upstream":"https://a.example","auth":{"type":"none"},"rules":[{"name":"r","effect":"maybe","paths":["/"]}]}]}`, want: `proxies[0].rules[0]: rule r: effect must be allow or deny, not "maybe"`},
		{name: "proxy unknown field", in: `{"secrets":[` + canary + `],"proxies":[{"name":"p","upstream":"https://a.example","auth":{"type":"bearer","secret":"k","value":"` + cfgCanary + `"}}]}`, want: `unknown field "value" in proxies[0].auth`},
		{name: "proxy listed twice", in: `{"secrets":[` + canary + `],"proxies":[` + minProxyJSON("p") + `,` + minProxyJSON("p") + `]}`, want: "proxies[1].name: proxy p is listed twice (also proxies[0])"},
		{name: "proxy duration", in: `{"secrets":[` + canary + `],"proxies":[{"name":"p","upstream":"https://a.example","auth":{"type":"none"},"timeouts":{"total":"forever"}}]}`, want: `proxies[0].timeouts.total: invalid duration "forever"`},
	}
}

func TestDecodeApplyHostile(t *testing.T) {
	seen := map[string]bool{}
	for _, tt := range decodeApplyHostile() {
		if seen[tt.name] {
			t.Fatalf("two rows are named %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			var req *ApplyRequest
			var err error
			timed(t, func() { req, err = DecodeApply([]byte(tt.in)) })
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			if req != nil {
				t.Errorf("a request with the error: %+v", req)
			}
			checkCfgError(t, err, tt.in, tt.want)
			if tt.path != "" {
				if p := err.(*Error).Path; p != tt.path {
					t.Errorf("Path = %q, want %q", p, tt.path)
				}
			}
		})
	}
}

// valuePosition matches the text before a secret's value: "value":" in
// JSON, "value: " (or from_env, from_file, where a value is often pasted
// by mistake) in YAML, or a field of an object value. In YAML the colon
// must be followed by a blank: {value:x} is a key, "value:x". The fuzz targets only
// hold an error to the canary rule when every occurrence of the canary in
// their input is in such a position, inside the secrets section: a name
// or a key is quoted back on purpose, whatever it holds.
var valuePosition = regexp.MustCompile(`(?:"value"\s*:\s*(?:\{[^{}\[\]]*?:\s*)?"|(?:^|[\s{,])(?:value|from_env|from_file|value_object_from_env|value_object_from_file)\s*:\s+(?:\{[^{}\[\]\n]*?:\s+)?["']?)$`)

func canaryOnlyAsValue(in string) bool {
	rest, n := in, 0
	for {
		i := strings.Index(rest, cfgCanary)
		if i < 0 {
			return n > 0
		}
		n++
		before := in[:len(in)-len(rest)+i]
		sec := strings.LastIndex(before, "secrets")
		if sec < 0 || strings.Contains(before[sec:], "proxies") || strings.Contains(before[sec:], "agents") {
			return false
		}
		line := before[strings.LastIndexAny(before, "\r\n")+1:]
		if !valuePosition.MatchString(line) {
			return false
		}
		after := rest[i+len(cfgCanary):]
		if after != "" && !strings.ContainsRune("\"'}], \r\n\t", rune(after[0])) {
			return false
		}
		rest = after
	}
}

func TestCanaryOnlyAsValue(t *testing.T) {
	c := cfgCanary
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"secrets":[{"name":"k","value":"` + c + `"}]}`, true},
		{`{"secrets":[{"name":"k","value":{"a":"x","b":"` + c + `"}}]}`, true},
		{"secrets:\n  - name: k\n    value: " + c + "\n", true},
		{"secrets:\n  - name: k\n    from_env: '" + c + "'\n", true},
		{"secrets:\n  - {name: k, value_object_from_env: {a: " + c + "}}\n", true},
		{"secrets:\n  - name: " + c + "\n", false},
		{"secrets:\n  - {value:" + c + "}\n", false},
		{`{"secrets":[{"name":"` + c + `","value":"` + c + `"}]}`, false},
		{`{"secrets":[{"name":"k","value":"x` + c + `"}]}`, false},
		{`{"secrets":[{"name":"k","value":"` + c + `x"}]}`, false},
		{`{"proxies":[{"value":"` + c + `"}]}`, false},
		{`{"secrets":[],"agents":[{"value":"` + c + `"}]}`, false},
		{"nothing", false},
	} {
		if got := canaryOnlyAsValue(tc.in); got != tc.want {
			t.Errorf("canaryOnlyAsValue(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// fuzzSeedMax bounds the seeds taken from the tables: the engine mutates
// small inputs best.
const fuzzSeedMax = 16 << 10

// checkFuzzError is what every refusal of a fuzzed input must be.
func checkFuzzError(t *testing.T, err error, in []byte, took time.Duration) {
	t.Helper()
	if took > parseBudget {
		t.Fatalf("took %v", took)
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %T (%v) is not a *spec.Error", err, err)
	}
	msg := e.Msg
	if len(msg) > 512 || strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("message (%d bytes) %.600q", len(msg), msg)
	}
	if utf8.Valid(in) && !utf8.ValidString(msg) {
		t.Fatalf("message is not UTF-8: %q", msg)
	}
	if strings.Contains(msg, cfgCanary) && canaryOnlyAsValue(string(in)) {
		t.Fatalf("the message quotes a secret's value: %q", msg)
	}
}

// FuzzParseConfig: ParseConfig never panics and returns in bounded time;
// every refusal is a short *Error that quotes no secret's value; an
// accepted config means the same written again as JSON, and the apply
// body built from it is accepted as the same proxies and agents.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(fullYAML))
	f.Add([]byte(fullJSON))
	for _, tt := range parseConfigValid {
		if len(tt.in) <= fuzzSeedMax {
			f.Add([]byte(tt.in))
		}
	}
	for _, tt := range parseConfigHostile() {
		if len(tt.in) <= fuzzSeedMax {
			f.Add([]byte(tt.in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		start := time.Now()
		c, err := ParseConfig(in)
		took := time.Since(start)
		if err != nil {
			if c != nil {
				t.Fatalf("a config with the error %v", err)
			}
			checkFuzzError(t, err, in, took)
			return
		}
		if took > parseBudget {
			t.Fatalf("took %v", took)
		}
		if len(c.Secrets) > MaxApplyItems || len(c.Proxies) > MaxApplyItems || len(c.Agents) > MaxApplyItems {
			t.Fatalf("%d secrets, %d proxies, %d agents", len(c.Secrets), len(c.Proxies), len(c.Agents))
		}
		if len(c.Proxies) != len(c.ProxiesJSON) || !c.HasProxies && len(c.Proxies) > 0 || !c.HasAgents && len(c.Agents) > 0 {
			t.Fatalf("%d proxies, %d ProxiesJSON, HasProxies %v, %d agents, HasAgents %v", len(c.Proxies), len(c.ProxiesJSON), c.HasProxies, len(c.Agents), c.HasAgents)
		}
		for _, s := range c.Secrets {
			if !ValidSecretName(s.Name) {
				t.Fatalf("secret name %q", s.Name)
			}
		}
		for _, a := range c.Agents {
			if !ValidName(a.Name) || a.Labels == nil {
				t.Fatalf("agent %+v", a)
			}
		}
		for _, p := range c.Proxies {
			if err := p.Validate(); err != nil {
				t.Fatalf("an accepted proxy does not validate: %v", err)
			}
		}
		checkConfigRoundTrip(t, c)
	})
}

// FuzzDecodeApply: DecodeApply never panics and returns in bounded time;
// every refusal is a short *Error that quotes no secret's value; an
// accepted body's proxies, encoded again, decode to themselves.
func FuzzDecodeApply(f *testing.F) {
	f.Add([]byte(`{"secrets":[{"name":"stripe-key","value":"` + cfgCanary + `"},{"name":"jira","value":{"username":"svc","password":"` + cfgCanary + `"}}],` +
		`"proxies":[` + minProxyJSON("p") + `],"agents":[{"name":"a","labels":{"team":"x"}}],"prune":true,"dry_run":true}`))
	if j, err := ParseConfig([]byte(fullJSON)); err == nil {
		b, _ := json.Marshal(map[string]any{"secrets": []SecretValue{{Name: "k", Value: json.RawMessage(`"` + cfgCanary + `"`)}},
			"proxies": j.ProxiesJSON, "agents": j.Agents, "prune": true})
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	for _, tt := range decodeApplyHostile() {
		if len(tt.in) <= fuzzSeedMax {
			f.Add([]byte(tt.in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		start := time.Now()
		req, err := DecodeApply(in)
		took := time.Since(start)
		if err != nil {
			if req != nil {
				t.Fatalf("a request with the error %v", err)
			}
			checkFuzzError(t, err, in, took)
			return
		}
		if took > parseBudget {
			t.Fatalf("took %v", took)
		}
		if len(req.Secrets) > MaxApplyItems || len(req.Proxies) > MaxApplyItems || len(req.Agents) > MaxApplyItems {
			t.Fatalf("%d secrets, %d proxies, %d agents", len(req.Secrets), len(req.Proxies), len(req.Agents))
		}
		names := map[string]bool{}
		for _, s := range req.Secrets {
			if !ValidSecretName(s.Name) || names[s.Name] {
				t.Fatalf("secret name %q", s.Name)
			}
			names[s.Name] = true
			if v := bytes.TrimSpace(s.Value); len(v) == 0 || string(v) == "null" || !json.Valid(v) {
				t.Fatalf("secret %s: value %q", s.Name, v)
			}
			if p := fmt.Sprint(s); strings.Contains(p, cfgCanary) {
				t.Fatalf("a printed SecretValue shows its value: %s", p)
			}
		}
		for _, a := range req.Agents {
			if !ValidName(a.Name) || a.Labels == nil {
				t.Fatalf("agent %+v", a)
			}
		}
		js, err := json.Marshal(map[string]any{"secrets": req.Secrets, "proxies": append([]Proxy{}, req.Proxies...),
			"agents": append([]Agent{}, req.Agents...), "prune": req.Prune, "dry_run": req.DryRun})
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if len(js) > MaxConfigBytes {
			return
		}
		req2, err := DecodeApply(js)
		if err != nil {
			t.Fatalf("an accepted request, encoded again, is refused: %v\n%s", err, js)
		}
		if diff := cmp.Diff(req.Proxies, req2.Proxies, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("proxies are not stable (-first +second):\n%s", diff)
		}
		if diff := cmp.Diff(req.Agents, req2.Agents, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("agents are not stable (-first +second):\n%s", diff)
		}
		for i := range req.Secrets {
			if !jsonEqual(t, req.Secrets[i].Value, req2.Secrets[i].Value) || req.Secrets[i].Name != req2.Secrets[i].Name {
				t.Fatalf("secret %d changed", i)
			}
		}
		if req2.Prune != req.Prune || req2.DryRun != req.DryRun || !req2.HasProxies || !req2.HasAgents {
			t.Fatalf("%+v then %+v", req, req2)
		}
	})
}
