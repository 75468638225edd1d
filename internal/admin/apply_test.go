package admin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// applyNode is a node with a recording upstream, and every admin API
// answer of the test kept so that none may hold a canary.
type applyNode struct {
	*testNode
	up       *httptest.Server
	mu       sync.Mutex
	auths    []string // Authorization headers the upstream received
	answers  []string
	canaries []string
}

func startApplyNode(t *testing.T) *applyNode {
	n := &applyNode{testNode: startNode(t)}
	n.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.auths = append(n.auths, r.Header.Get("Authorization"))
		n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(n.up.Close)
	t.Cleanup(n.checkCanaries)
	return n
}

func canary() string { return "sk_canary_" + randAlnum(24) }

// raw sends body as is and returns the status and the answer.
func (n *applyNode) raw(tok, method, path, body string) (int, []byte) {
	n.t.Helper()
	req, _ := http.NewRequest(method, n.admin+"/api/v1"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n.mu.Lock()
	n.answers = append(n.answers, string(b))
	n.mu.Unlock()
	return resp.StatusCode, b
}

func (n *applyNode) call(method, path string, body any) (int, map[string]any) {
	n.t.Helper()
	js, _ := json.Marshal(body)
	if body == nil {
		js = nil
	}
	code, b := n.raw(n.token, method, path, string(js))
	var m map[string]any
	json.Unmarshal(b, &m)
	return code, m
}

// apply posts an apply body and wants status.
func (n *applyNode) apply(status int, body any) map[string]any {
	n.t.Helper()
	code, m := n.call("POST", "/apply", body)
	if code != status {
		n.t.Fatalf("POST /apply → %d %v, want %d", code, m, status)
	}
	return m
}

func (n *applyNode) checkCanaries() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range n.answers {
		for _, c := range n.canaries {
			if strings.Contains(a, c) {
				n.t.Errorf("a secret value appears in an admin API answer: %.300s", a)
			}
		}
	}
}

func (n *applyNode) lastAuth() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.auths) == 0 {
		return ""
	}
	return n.auths[len(n.auths)-1]
}

// summary flattens an apply answer to "secrets.created=a,b" lines for
// comparison.
func summary(m map[string]any) []string {
	var out []string
	for _, kind := range []string{"secrets", "proxies", "agents"} {
		sec, _ := m[kind].(map[string]any)
		for what, v := range sec {
			list, _ := v.([]any)
			if len(list) == 0 {
				continue
			}
			names := make([]string, len(list))
			for i, x := range list {
				names[i], _ = x.(string)
			}
			out = append(out, kind+"."+what+"="+strings.Join(names, ","))
		}
	}
	slices.Sort(out)
	return out
}

func wantSummary(t *testing.T, what string, m map[string]any, changed bool, want ...string) {
	t.Helper()
	if got, _ := m["changed"].(bool); got != changed {
		t.Errorf("%s: changed = %v, want %v (%v)", what, got, changed, m)
	}
	slices.Sort(want)
	if d := cmp.Diff(want, summary(m)); d != "" {
		t.Errorf("%s: answer (-want +got):\n%s", what, d)
	}
}

// config is an apply body: a bearer secret (the canary), an object
// secret, a proxy using each and two agents.
func (n *applyNode) config(stripeKey string) map[string]any {
	return map[string]any{
		"secrets": []any{
			map[string]any{"name": "stripe-key", "value": stripeKey},
			map[string]any{"name": "jira", "value": map[string]string{"username": "svc", "password": "jira-password-1"}},
		},
		"proxies": []any{
			map[string]any{"name": "stripe", "upstream": n.up.URL, "auth": map[string]any{"type": "bearer", "secret": "stripe-key"},
				"rules": []any{map[string]any{"name": "read", "effect": "allow", "methods": []string{"GET"}, "paths": []string{"/v1/**"}}}},
			map[string]any{"name": "jira", "upstream": n.up.URL + "/rest", "auth": map[string]any{"type": "basic", "secret": "jira"},
				"rules": []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"},
					"when": "request.method == 'GET'"}}},
		},
		"agents": []any{
			map[string]any{"name": "billing-bot", "labels": map[string]string{"team": "billing"}},
			map[string]any{"name": "ops-bot"},
		},
	}
}

func (n *applyNode) secretVersion(name string) int {
	n.t.Helper()
	code, m := n.call("GET", "/secrets/"+name, nil)
	if code != 200 {
		n.t.Fatalf("GET /secrets/%s → %d %v", name, code, m)
	}
	v, _ := m["version"].(float64)
	return int(v)
}

// gatewayGET calls the gateway as the agent with tok.
func (n *applyNode) gatewayGET(path, tok string) int {
	req, _ := http.NewRequest("GET", n.gw+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestApplyIdempotentAndRotatesOnlyOnChange: a config applied twice
// changes nothing the second time (no secret version bump); a changed
// value rotates that secret only, and the proxy sends it from then on.
func TestApplyIdempotentAndRotatesOnlyOnChange(t *testing.T) {
	n := startApplyNode(t)
	key1, key2 := canary(), canary()
	n.canaries = append(n.canaries, key1, key2, "jira-password-1")

	m := n.apply(200, n.config(key1))
	wantSummary(t, "first apply", m, true,
		"secrets.created=stripe-key,jira", "proxies.created=stripe,jira", "agents.created=billing-bot,ops-bot")
	if d, _ := m["dry_run"].(bool); d {
		t.Error("dry_run = true in a real apply's answer")
	}
	// In effect when the call returns: a token for the applied agent
	// reaches the applied proxy with the applied secret.
	tok, _ := n.testNode.must(201, "POST", "/agents/billing-bot/tokens", map[string]any{"proxies": []string{"stripe"}})["token"].(string)
	if code := n.gatewayGET("/stripe/v1/customers", tok); code != 200 {
		t.Fatalf("GET through the applied proxy → %d", code)
	}
	if got := n.lastAuth(); got != "Bearer "+key1 {
		t.Errorf("the upstream got Authorization %q, want the applied key", got)
	}

	m = n.apply(200, n.config(key1))
	wantSummary(t, "second apply", m, false,
		"secrets.unchanged=stripe-key,jira", "proxies.unchanged=stripe,jira", "agents.unchanged=billing-bot,ops-bot")
	if v := n.secretVersion("stripe-key"); v != 1 {
		t.Errorf("stripe-key is at version %d after applying the same value twice, want 1", v)
	}

	m = n.apply(200, n.config(key2))
	wantSummary(t, "apply with a new key", m, true,
		"secrets.rotated=stripe-key", "secrets.unchanged=jira", "proxies.unchanged=stripe,jira", "agents.unchanged=billing-bot,ops-bot")
	if v, w := n.secretVersion("stripe-key"), n.secretVersion("jira"); v != 2 || w != 1 {
		t.Errorf("versions after one rotation: stripe-key %d (want 2), jira %d (want 1)", v, w)
	}
	if code := n.gatewayGET("/stripe/v1/customers", tok); code != 200 || n.lastAuth() != "Bearer "+key2 {
		t.Errorf("after the rotation: status %d, the upstream got the new key: %v", code, n.lastAuth() == "Bearer "+key2)
	}
	m = n.apply(200, n.config(key2))
	wantSummary(t, "the new key again", m, false,
		"secrets.unchanged=stripe-key,jira", "proxies.unchanged=stripe,jira", "agents.unchanged=billing-bot,ops-bot")
	if v := n.secretVersion("stripe-key"); v != 2 {
		t.Errorf("stripe-key is at version %d, want 2", v)
	}

	// A changed proxy is replaced, a changed label updated.
	cfg := n.config(key2)
	cfg["proxies"].([]any)[0].(map[string]any)["description"] = "Stripe for billing"
	cfg["agents"].([]any)[1].(map[string]any)["labels"] = map[string]string{"team": "ops"}
	m = n.apply(200, cfg)
	wantSummary(t, "changed proxy and labels", m, true, "secrets.unchanged=stripe-key,jira",
		"proxies.replaced=stripe", "proxies.unchanged=jira", "agents.updated=ops-bot", "agents.unchanged=billing-bot")
	_, ag := n.call("GET", "/agents/ops-bot", nil)
	if l, _ := ag["labels"].(map[string]any); l["team"] != "ops" {
		t.Errorf("ops-bot's labels = %v, want team=ops", ag["labels"])
	}
}

// TestApplyPrune: with prune, proxies and agents the body does not list
// are deleted (an agent's tokens revoked, as DELETE does); secrets never
// are; a section the body leaves out is left alone.
func TestApplyPrune(t *testing.T) {
	n := startApplyNode(t)
	key := canary()
	n.canaries = append(n.canaries, key)
	n.apply(200, n.config(key))
	tok, _ := n.testNode.must(201, "POST", "/agents/ops-bot/tokens", map[string]any{"proxies": []string{"stripe"}})["token"].(string)
	if code := n.gatewayGET("/stripe/v1/x", tok); code != 200 {
		t.Fatalf("ops-bot's token → %d before prune", code)
	}

	// prune without an agents section: agents stay.
	cfg := n.config(key)
	cfg["proxies"] = cfg["proxies"].([]any)[:1]
	delete(cfg, "agents")
	cfg["prune"] = true
	m := n.apply(200, cfg)
	wantSummary(t, "prune proxies", m, true, "secrets.unchanged=stripe-key,jira", "proxies.unchanged=stripe", "proxies.deleted=jira")

	// An empty agents list prunes every agent but the listed ones.
	cfg["agents"] = []any{map[string]any{"name": "billing-bot", "labels": map[string]string{"team": "billing"}}}
	m = n.apply(200, cfg)
	wantSummary(t, "prune agents", m, true, "secrets.unchanged=stripe-key,jira", "proxies.unchanged=stripe",
		"agents.unchanged=billing-bot", "agents.deleted=ops-bot")
	if code := n.gatewayGET("/stripe/v1/x", tok); code != 401 {
		t.Errorf("the pruned agent's token → %d, want 401 (revoked)", code)
	}
	_, toks := n.call("GET", "/agents/ops-bot/tokens", nil)
	list, _ := toks["tokens"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["state"] != "revoked" {
		t.Errorf("the pruned agent's tokens: %v, want one, revoked", toks)
	}
	// Secrets are never pruned, even unused ones.
	_, secs := n.call("GET", "/secrets", nil)
	if l, _ := secs["secrets"].([]any); len(l) != 2 {
		t.Errorf("secrets after prune: %v, want both", secs)
	}
}

// TestApplyDryRun: the answer says what would change; nothing does.
func TestApplyDryRun(t *testing.T) {
	n := startApplyNode(t)
	key1, key2 := canary(), canary()
	n.canaries = append(n.canaries, key1, key2)
	n.apply(200, n.config(key1))

	cfg := n.config(key2)
	cfg["proxies"] = cfg["proxies"].([]any)[:1]
	cfg["agents"] = []any{map[string]any{"name": "new-bot"}}
	cfg["prune"], cfg["dry_run"] = true, true
	m := n.apply(200, cfg)
	wantSummary(t, "dry run", m, true, "secrets.rotated=stripe-key", "secrets.unchanged=jira",
		"proxies.unchanged=stripe", "proxies.deleted=jira", "agents.created=new-bot", "agents.deleted=billing-bot,ops-bot")
	if d, _ := m["dry_run"].(bool); !d {
		t.Error("dry_run = false in a dry run's answer")
	}
	if v := n.secretVersion("stripe-key"); v != 1 {
		t.Errorf("a dry run rotated stripe-key to version %d", v)
	}
	for _, path := range []string{"/proxies/jira", "/agents/billing-bot", "/agents/ops-bot"} {
		if code, _ := n.call("GET", path, nil); code != 200 {
			t.Errorf("GET %s → %d after a dry run, want 200", path, code)
		}
	}
	if code, _ := n.call("GET", "/agents/new-bot", nil); code != 404 {
		t.Errorf("a dry run created new-bot (%d)", code)
	}
	// The same, for real.
	delete(cfg, "dry_run")
	m = n.apply(200, cfg)
	wantSummary(t, "the apply after its dry run", m, true, "secrets.rotated=stripe-key", "secrets.unchanged=jira",
		"proxies.unchanged=stripe", "proxies.deleted=jira", "agents.created=new-bot", "agents.deleted=billing-bot,ops-bot")
}

// TestApplyIsAtomic: one invalid proxy among valid ones (or a secret that
// no longer fits a proxy left in place) → 400 naming it, and nothing at
// all is written.
func TestApplyIsAtomic(t *testing.T) {
	n := startApplyNode(t)
	key := canary()
	n.canaries = append(n.canaries, key)
	good := func(name string) map[string]any {
		return map[string]any{"name": name, "upstream": n.up.URL, "auth": map[string]any{"type": "bearer", "secret": "stripe-key"},
			"rules": []any{map[string]any{"name": "r", "effect": "allow", "paths": []string{"/**"}}}}
	}
	state := func() string {
		var b strings.Builder
		for _, p := range []string{"/secrets", "/proxies", "/agents"} {
			_, m := n.call("GET", p, nil)
			js, _ := json.Marshal(m)
			b.Write(js)
		}
		return b.String()
	}
	tests := []struct {
		name    string
		bad     map[string]any // the third proxy
		wantMsg string
	}{
		{"SSRF guard", map[string]any{"name": "meta", "upstream": "http://169.254.169.254", "auth": map[string]any{"type": "none"}},
			"proxies[2] (meta): upstream address 169.254.169.254"},
		{"CEL that does not compile", map[string]any{"name": "cel", "upstream": n.up.URL, "auth": map[string]any{"type": "none"},
			"rules": []any{map[string]any{"name": "r", "effect": "allow", "paths": []string{"/**"}, "when": "request.nope ==="}}},
			"proxies[2] (cel): rule r"},
		{"secret that exists nowhere", map[string]any{"name": "gh", "upstream": n.up.URL, "auth": map[string]any{"type": "bearer", "secret": "gh-token"}},
			`proxies[2] (gh): secret "gh-token" does not exist`},
		{"secret of the wrong shape", map[string]any{"name": "jira", "upstream": n.up.URL, "auth": map[string]any{"type": "basic", "secret": "stripe-key"}},
			"proxies[2] (jira): "},
		{"invalid rule", map[string]any{"name": "x", "upstream": n.up.URL, "auth": map[string]any{"type": "none"},
			"rules": []any{map[string]any{"name": "r", "effect": "permit", "paths": []string{"/**"}}}},
			"proxies[2].rules[0]: rule r: effect must be allow or deny"},
	}
	before := state()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{
				"secrets": []any{map[string]any{"name": "stripe-key", "value": key}},
				"proxies": []any{good("a"), good("b"), tc.bad},
				"agents":  []any{map[string]any{"name": "bot"}},
			}
			code, m := n.call("POST", "/apply", body)
			msg, _ := m["error"].(map[string]any)["message"].(string)
			if code != 400 || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("→ %d %q, want 400 with %q", code, msg, tc.wantMsg)
			}
			if after := state(); after != before {
				t.Errorf("a refused apply changed the configuration:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// A rotation that breaks a proxy the apply does not list.
	n.apply(200, map[string]any{
		"secrets": []any{map[string]any{"name": "stripe-key", "value": key}},
		"proxies": []any{good("a")},
	})
	before = state()
	code, m := n.call("POST", "/apply", map[string]any{
		"secrets": []any{map[string]any{"name": "stripe-key", "value": map[string]string{"user": "x", "password": key}}},
		"agents":  []any{map[string]any{"name": "bot"}},
	})
	msg, _ := m["error"].(map[string]any)["message"].(string)
	if code != 400 || !strings.Contains(msg, "secrets[0] (stripe-key): the new value does not fit proxy a") {
		t.Errorf("a rotation that breaks an unlisted proxy → %d %q", code, msg)
	}
	if after := state(); after != before {
		t.Errorf("the refused rotation changed the configuration")
	}
	// The same, with that proxy pruned, is fine.
	n.apply(200, map[string]any{
		"secrets": []any{map[string]any{"name": "stripe-key", "value": map[string]string{"user": "x", "password": key}}},
		"proxies": []any{}, "prune": true,
	})
}

// TestApplyStrictDecoding: the body is read as strictly as any admin API
// body, and every message names the path of the value at fault.
func TestApplyStrictDecoding(t *testing.T) {
	n := startApplyNode(t)
	key := canary()
	n.canaries = append(n.canaries, key)
	p := func(extra string) string {
		return `{"name":"p","upstream":"` + n.up.URL + `","auth":{"type":"none"}` + extra + `}`
	}
	tests := []struct {
		name, body, wantMsg string
	}{
		{"empty body", ``, "the body is empty"},
		{"not an object", `[]`, "must be an object"},
		{"unknown top-level field", `{"proxy":[]}`, `unknown field "proxy" in the request (did you mean "proxies"?)`},
		{"case variant", `{"Proxies":[]}`, `unknown field "Proxies" in the request (did you mean "proxies"?)`},
		{"repeated key", `{"prune":false,"prune":true}`, `repeats the key "prune"`},
		{"repeated key deep", `{"proxies":[` + p(`,"rules":[{"name":"r","effect":"allow","effect":"deny","paths":["/"]}]`) + `]}`,
			`repeats the key "effect" in proxies[0].rules[0]`},
		{"unknown rule field", `{"proxies":[` + p("") + `,` + p(`,"rules":[{"name":"r","efect":"allow","paths":["/"]}]`) + `]}`,
			`unknown field "efect" in proxies[1].rules[0] (did you mean "effect"?)`},
		{"wrong type deep", `{"proxies":[` + p(`,"capture":{"max_bytes":"10"}`) + `]}`, `proxies[0].capture.max_bytes: must be a whole number, not a string`},
		{"rule effect", `{"proxies":[` + p(`,"rules":[{"name":"r","effect":1,"paths":["/"]}]`) + `]}`, `proxies[0].rules[0].effect: must be a string, not a number`},
		{"bad duration", `{"proxies":[` + p(`,"timeouts":{"total":"forever"}`) + `]}`, `proxies[0].timeouts.total: invalid duration "forever"`},
		{"proxy listed twice", `{"proxies":[` + p("") + `,` + p("") + `]}`, `proxies[1].name: proxy p is listed twice (also proxies[0])`},
		{"secret without value", `{"secrets":[{"name":"s"}]}`, `secrets[0].value: secret s: value is required`},
		{"secret value null", `{"secrets":[{"name":"s","value":null}]}`, `secrets[0].value: secret s: value is required`},
		{"secret value of numbers", `{"secrets":[{"name":"s","value":{"a":1}}]}`, `secrets[0] (s): value must be a string or an object`},
		{"secret value too short", `{"secrets":[{"name":"s","value":"short"}]}`, `secrets[0] (s): the value is shorter than`},
		{"secret value with a repeated key", `{"secrets":[{"name":"s","value":{"a":"` + key + `","a":"x"}}]}`, `repeats the key "a" in secrets[0].value`},
		{"secret name", `{"secrets":[{"name":"../x","value":"` + key + `"}]}`, `secrets[0].name: secret name "../x" is invalid`},
		{"unknown secret field", `{"secrets":[{"name":"s","value":"` + key + `","from_env":"X"}]}`, `unknown field "from_env" in secrets[0]`},
		{"agent name", `{"agents":[{"name":"Bot"}]}`, `agents[0].name: agent name "Bot" is invalid`},
		{"agent labels", `{"agents":[{"name":"bot","labels":{"team":7}}]}`, `agents[0].labels.team: must be a string, not a number`},
		{"prune not a bool", `{"prune":"yes"}`, `prune: must be true or false, not a string`},
		{"invalid UTF-8", "{\"agents\":[{\"name\":\"b\xffot\"}]}", "not valid UTF-8"},
		{"trailing data", `{} {}`, "more than one JSON value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := n.raw(n.token, "POST", "/apply", tc.body)
			var m struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(b, &m)
			if code != 400 || m.Error.Code != "invalid_request" || !strings.Contains(m.Error.Message, tc.wantMsg) {
				t.Errorf("→ %d %s, want 400 invalid_request with %q", code, b, tc.wantMsg)
			}
		})
	}
	_, m := n.call("GET", "/proxies", nil)
	if l, _ := m["proxies"].([]any); len(l) != 0 {
		t.Errorf("refused applies created proxies: %v", m)
	}
}

// TestApplyAuditAndRoles: an apply is one audit record (proxy -admin,
// reason apply) whose body is the answer (names only): no secret value is
// in any record; a dry run is recorded as apply.dry_run; only the admin
// role may apply.
func TestApplyAuditAndRoles(t *testing.T) {
	n := startApplyNode(t)
	key := canary()
	n.canaries = append(n.canaries, key, "jira-password-1")
	viewer, auditor := n.adminToken("viewer"), n.adminToken("auditor")
	for _, tok := range []string{viewer, auditor} {
		if code, _ := n.raw(tok, "POST", "/apply", `{}`); code != 403 {
			t.Errorf("a non-admin apply → %d, want 403", code)
		}
	}
	n.apply(200, n.config(key))
	dry := n.config(key)
	dry["dry_run"] = true
	n.apply(200, dry)
	n.call("POST", "/apply", map[string]any{"secrets": []any{map[string]any{"name": "s", "value": key + " "}}}) // refused: whitespace

	_, logs := n.call("GET", "/logs?proxy=-admin&limit=1000", nil)
	recs, _ := logs["records"].([]any)
	var applies []map[string]any
	for _, r := range recs {
		rec := r.(map[string]any)
		if p, _ := rec["path"].(string); p == "/api/v1/apply" {
			applies = append(applies, rec)
		}
	}
	// Newest first: refused, dry run, apply; the two 403s.
	var reasons []string
	for _, r := range applies {
		reasons = append(reasons, fmt.Sprintf("%v %v", r["reason"], r["status"]))
	}
	want := []string{"apply 400", "apply.dry_run 200", "apply 200", "forbidden 403", "forbidden 403"}
	if d := cmp.Diff(want, reasons); d != "" {
		t.Errorf("-admin records of /api/v1/apply (-want +got):\n%s", d)
	}
	if len(applies) >= 3 {
		id, _ := applies[2]["id"].(string)
		_, rec := n.call("GET", "/logs/"+id, nil)
		body, _ := rec["response_body"].(string)
		var sum map[string]any
		if err := json.Unmarshal([]byte(body), &sum); err != nil {
			t.Fatalf("the apply's record has no JSON summary as its response body: %q", body)
		}
		wantSummary(t, "the audit record's summary", sum, true,
			"secrets.created=stripe-key,jira", "proxies.created=stripe,jira", "agents.created=billing-bot,ops-bot")
	}
	// No value anywhere in the audit log: every record, bodies included.
	for _, r := range recs {
		id, _ := r.(map[string]any)["id"].(string)
		code, b := n.raw(n.token, "GET", "/logs/"+id, "")
		if code != 200 {
			t.Errorf("GET /logs/%s → %d", id, code)
		}
		if bytes.Contains(b, []byte(key)) || bytes.Contains(b, []byte("jira-password-1")) {
			t.Errorf("an audit record holds a secret value: %.300s", b)
		}
	}
}
