package server

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/token"
)

// TestDecisionOrder pins SPEC §3.3 row by row: which refusal wins when a
// request has several faults, what the agent sees (status, code, the error
// envelope) and what the audit record says, and that nothing refused
// reaches the upstream. The attacks it pins: proxy-name probing without a
// token, learning about a proxy outside the token's scope from its path
// checks, and a bad path dodging a deny rule.
func TestDecisionOrder(t *testing.T) {
	n := startNode(t)
	up := n.upstream()
	n.secret("dec-key", canary())
	auth := map[string]any{"type": "bearer", "secret": "dec-key"}
	n.proxy("alpha", up, map[string]any{"auth": auth, "rules": []any{allowAll, rule("no-admin", "deny", "* /v1/admin/**")}})
	n.proxy("beta", up, map[string]any{"auth": auth, "rules": []any{allowAll}})
	n.proxy("bare", up, map[string]any{"auth": auth}) // no rules: allows nothing
	n.agent("bot")
	tok, _ := n.token("bot", "1h", "alpha", "bare")
	expired, _ := n.token("bot", "1ns", "alpha")
	revoked, revokedID := n.token("bot", "1h", "alpha")
	parent, parentID := n.token("bot", "1h", "alpha")
	child, _ := n.mint(parent, map[string]any{"proxies": []string{"alpha"}, "ttl": "10m"})
	grandchild, _ := n.mint(child, map[string]any{"ttl": "5m"})
	if r := n.call("GET", "/alpha/v1/ok", grandchild, ""); r.status != http.StatusOK {
		t.Fatalf("control: a grandchild token before its ancestor is revoked → want 200, got %s", r)
	}
	n.must(http.StatusOK, "DELETE", "/tokens/"+revokedID, nil)
	n.must(http.StatusOK, "DELETE", "/tokens/"+parentID, nil)
	unknown, _ := token.Generate(token.Agent)
	n.plantToken(unknown)
	badSum := tok[:len(tok)-1] + "A" // the checksum's last character changed
	if strings.HasSuffix(tok, "A") {
		badSum = tok[:len(tok)-1] + "B"
	}

	tests := []struct {
		name       string
		target     string
		hdr        []string // header name, value pairs
		wantStatus int
		wantCode   string
		wantReason string // the audit record's reason; "" = wantCode
		wantRule   string
	}{
		{name: "unknown /-/ path without a token", target: "/-/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "unknown /-/ path with a token", target: "/-/nope", hdr: bearer(tok), wantStatus: 404, wantCode: "not_found"},
		{name: "unknown proxy without a token", target: "/nope/v1/x", wantStatus: 401, wantCode: "no_token"},
		{name: "invalid proxy name without a token", target: "/NOPE_/v1/x", wantStatus: 401, wantCode: "no_token"},
		{name: "unknown proxy with an unknown token", target: "/nope/v1/x", hdr: bearer(unknown), wantStatus: 401, wantCode: "bad_token"},
		{name: "unknown proxy with an expired token", target: "/nope/v1/x", hdr: bearer(expired), wantStatus: 401, wantCode: "token_expired"},
		{name: "unknown proxy with a valid token", target: "/nope/v1/x", hdr: bearer(tok), wantStatus: 404, wantCode: "unknown_proxy"},
		{name: "known proxy without a token", target: "/alpha/v1/x", wantStatus: 401, wantCode: "no_token"},
		{name: "a Bearer that is not a keyhole token", target: "/alpha/v1/x", hdr: bearer("sk-not-keyhole"), wantStatus: 401, wantCode: "bad_token"},
		{name: "X-Keyhole-Token that is not a keyhole token", target: "/alpha/v1/x", hdr: []string{"X-Keyhole-Token", "nope"}, wantStatus: 401, wantCode: "bad_token"},
		{name: "Basic credentials only", target: "/alpha/v1/x", hdr: []string{"Authorization", "Basic a2g6eA=="}, wantStatus: 401, wantCode: "no_token"},
		{name: "malformed kh_ token", target: "/alpha/v1/x", hdr: bearer("kh_short"), wantStatus: 401, wantCode: "bad_token"},
		{name: "kh_ token with a wrong checksum", target: "/alpha/v1/x", hdr: bearer(badSum), wantStatus: 401, wantCode: "bad_token"},
		{name: "well-formed unknown token", target: "/alpha/v1/x", hdr: bearer(unknown), wantStatus: 401, wantCode: "bad_token"},
		{name: "admin token at the gateway", target: "/alpha/v1/x", hdr: bearer(n.adminToken), wantStatus: 401, wantCode: "bad_token"},
		{name: "expired token", target: "/alpha/v1/x", hdr: bearer(expired), wantStatus: 401, wantCode: "token_expired"},
		{name: "revoked token", target: "/alpha/v1/x", hdr: bearer(revoked), wantStatus: 401, wantCode: "token_revoked"},
		{name: "child of a revoked parent", target: "/alpha/v1/x", hdr: bearer(child), wantStatus: 401, wantCode: "token_revoked"},
		{name: "grandchild of a revoked token", target: "/alpha/v1/x", hdr: bearer(grandchild), wantStatus: 401, wantCode: "token_revoked"},
		{name: "bad path without a token", target: "/alpha/v1/../x", wantStatus: 401, wantCode: "no_token"},
		{name: "bad path with an expired token", target: "/alpha/v1/%2e%2e/x", hdr: bearer(expired), wantStatus: 401, wantCode: "token_expired"},
		{name: "proxy out of scope", target: "/beta/v1/x", hdr: bearer(tok), wantStatus: 403, wantCode: "not_in_scope"},
		{name: "bad path on a proxy out of scope", target: "/beta/v1/../x", hdr: bearer(tok), wantStatus: 403, wantCode: "not_in_scope"},
		{name: "bad path in scope", target: "/alpha/v1/%2e%2e/x", hdr: bearer(tok), wantStatus: 400, wantCode: "bad_path"},
		{name: "bad path under a deny rule", target: "/alpha/v1/admin/../x", hdr: bearer(tok), wantStatus: 400, wantCode: "bad_path"},
		{name: "proxy without rules", target: "/bare/v1/x", hdr: bearer(tok), wantStatus: 403, wantCode: "no_rule_allows"},
		{name: "deny wins over allow", target: "/alpha/v1/admin/users", hdr: bearer(tok), wantStatus: 403, wantCode: "denied_by_rule",
			wantReason: "denied_by_rule:no-admin", wantRule: "no-admin"},
		{name: "deny rule, token in X-Keyhole-Token", target: "/alpha/v1/admin", hdr: []string{"X-Keyhole-Token", tok}, wantStatus: 403,
			wantCode: "denied_by_rule", wantReason: "denied_by_rule:no-admin", wantRule: "no-admin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			r := n.rawResp(rawReq("GET", tc.target, "", "", tc.hdr...))
			if !wantErr(t, "GET "+tc.target, r, tc.wantStatus, tc.wantCode) {
				return
			}
			if got := up.count() - before; got != 0 {
				t.Errorf("a refused request reached the upstream (%d requests)", got)
			}
			if tc.wantStatus == http.StatusUnauthorized && !strings.HasPrefix(r.hdr.Get("Www-Authenticate"), "Bearer") {
				t.Errorf("a 401 carries WWW-Authenticate: Bearer … (RFC 9110 §15.5.2); got %q", r.hdr.Get("Www-Authenticate"))
			}
			if tc.wantRule != "" && !strings.Contains(str(r.obj(), "error", "message"), tc.wantRule) {
				t.Errorf("the message must name the deny rule %q; got %q", tc.wantRule, str(r.obj(), "error", "message"))
			}
			rec := n.record(r.rid())
			wantReason := tc.wantReason
			if wantReason == "" {
				wantReason = tc.wantCode
			}
			if got := str(rec, "reason"); got != wantReason {
				t.Errorf("audit reason = %q, want %q", got, wantReason)
			}
			if got := str(rec, "rule"); got != tc.wantRule {
				t.Errorf("audit rule = %q, want %q", got, tc.wantRule)
			}
			if got := str(rec, "status"); got != itoa(tc.wantStatus) {
				t.Errorf("audit status = %s, want %d", got, tc.wantStatus)
			}
			if got := str(rec, "decision"); got != "deny" {
				t.Errorf("audit decision = %q, want deny", got)
			}
		})
	}
	// The control: the same token and proxy, a clean request, is forwarded.
	if r := n.call("GET", "/alpha/v1/items", tok, ""); r.status != http.StatusOK || up.last().RequestURI != "/v1/items" {
		t.Errorf("control: GET /alpha/v1/items → want 200 forwarded as /v1/items, got %s (upstream saw %q)", r, up.last().RequestURI)
	}
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func itoa(i int) string { return strconv.Itoa(i) }

// TestTokenLocations pins SPEC §3.2: the three places an agent may present
// its token, which one wins, and that every header that carried the token —
// also one the agent copied it into — is removed before forwarding. The
// attack it pins: a keyhole token reaching a third-party API (which could
// log it or use it), and an SDK's own Authorization header shadowing the
// keyhole token in agent_token_header.
func TestTokenLocations(t *testing.T) {
	n := startNode(t)
	s := canary()
	n.secret("loc-key", s)
	up := n.upstream()
	auth := map[string]any{"type": "bearer", "secret": "loc-key"}
	n.proxy("loc", up, map[string]any{"auth": auth, "agent_token_header": "x-api-key", "rules": []any{allowAll}})
	n.proxy("plain", up, map[string]any{"auth": auth, "rules": []any{allowAll}})
	n.agent("bot")
	tok, _ := n.token("bot", "1h", "loc", "plain")
	tok2, _ := n.token("bot", "1h", "loc")
	admTok := str(n.must(http.StatusCreated, "POST", "/admin-tokens", map[string]any{"name": "a", "role": "viewer", "ttl": "1h"}), "token")
	n.plantToken(admTok)

	tests := []struct {
		name       string
		proxy      string
		hdr        []string
		wantStatus int
		wantCode   string
		wantGone   []string // headers the upstream must not receive
		wantKept   map[string]string
	}{
		{name: "Authorization: Bearer", proxy: "loc", hdr: []string{"Authorization", "Bearer " + tok}, wantStatus: 200},
		{name: "lower-case bearer scheme", proxy: "loc", hdr: []string{"Authorization", "bearer " + tok}, wantStatus: 200},
		{name: "X-Keyhole-Token", proxy: "loc", hdr: []string{"X-Keyhole-Token", tok}, wantStatus: 200, wantGone: []string{"X-Keyhole-Token"}},
		{name: "agent_token_header", proxy: "loc", hdr: []string{"X-Api-Key", tok}, wantStatus: 200, wantGone: []string{"X-Api-Key"}},
		{name: "Bearer inside agent_token_header", proxy: "loc", hdr: []string{"X-Api-Key", "Bearer " + tok}, wantStatus: 200, wantGone: []string{"X-Api-Key"}},
		{name: "an SDK's own Bearer beside kh_ in agent_token_header", proxy: "loc",
			hdr: []string{"Authorization", "Bearer sk-sdk-own-key-123", "X-Api-Key", tok}, wantStatus: 200, wantGone: []string{"X-Api-Key"}},
		{name: "kh_ in Authorization wins over garbage in X-Keyhole-Token", proxy: "loc",
			hdr: []string{"Authorization", "Bearer " + tok, "X-Keyhole-Token", "garbage"}, wantStatus: 200, wantGone: []string{"X-Keyhole-Token"}},
		{name: "token copied into an unrelated header", proxy: "loc",
			hdr: []string{"Authorization", "Bearer " + tok, "X-Copy", tok, "X-Note", "mine is " + tok + " ok"}, wantStatus: 200,
			wantGone: []string{"X-Copy", "X-Note"}},
		{name: "token copied into a second agent_token_header value", proxy: "loc",
			hdr: []string{"X-Keyhole-Token", tok, "X-Api-Key", tok}, wantStatus: 200, wantGone: []string{"X-Api-Key", "X-Keyhole-Token"}},
		{name: "a second agent token in agent_token_header", proxy: "loc",
			hdr: []string{"Authorization", "Bearer " + tok, "X-Api-Key", tok2}, wantStatus: 200, wantGone: []string{"X-Api-Key"}},
		{name: "another agent's token in an unrelated header", proxy: "loc",
			hdr: []string{"X-Keyhole-Token", tok, "X-Forward-This", "Bearer " + tok2}, wantStatus: 200, wantGone: []string{"X-Forward-This"}},
		{name: "an admin token in an unrelated header", proxy: "loc",
			hdr: []string{"Authorization", "Bearer " + tok, "X-Admin", admTok}, wantStatus: 200, wantGone: []string{"X-Admin"}},
		{name: "unrelated headers pass", proxy: "loc", hdr: []string{"Authorization", "Bearer " + tok, "X-Stainless-Lang", "go", "Idempotency-Key", "k-1"},
			wantStatus: 200, wantKept: map[string]string{"X-Stainless-Lang": "go", "Idempotency-Key": "k-1"}},
		{name: "agent_token_header on a proxy without one", proxy: "plain", hdr: []string{"X-Api-Key", tok}, wantStatus: 401, wantCode: "no_token"},
		{name: "Bearer that is not kh_ and nothing else", proxy: "loc", hdr: []string{"Authorization", "Bearer sk-sdk-own-key-123"}, wantStatus: 401, wantCode: "bad_token"},
		{name: "agent_token_header without kh_", proxy: "loc", hdr: []string{"X-Api-Key", "sk-sdk-own-key-123"}, wantStatus: 401, wantCode: "no_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			r := n.call("GET", "/"+tc.proxy+"/v1/who", "", "", tc.hdr...)
			if tc.wantStatus != http.StatusOK {
				wantErr(t, "GET /"+tc.proxy+"/v1/who", r, tc.wantStatus, tc.wantCode)
				if up.count() != before {
					t.Errorf("a refused request reached the upstream")
				}
				return
			}
			if r.status != http.StatusOK || up.count() != before+1 {
				t.Fatalf("want 200 and one upstream request, got %s", r)
			}
			got := up.last()
			if v := got.Header.Get("Authorization"); v != "Bearer "+s {
				t.Errorf("upstream Authorization = %q, want the injected credential", head(v))
			}
			for _, h := range tc.wantGone {
				if v, ok := got.Header[h]; ok {
					t.Errorf("the upstream received %s: %q; every header that carried the token is removed", h, v)
				}
			}
			for k, v := range tc.wantKept {
				if g := got.Header.Get(k); g != v {
					t.Errorf("the upstream received %s = %q, want %q", k, g, v)
				}
			}
			for k, vs := range got.Header {
				if v := strings.Join(vs, ","); strings.Contains(v, tok) || strings.Contains(v, tok2) || strings.Contains(v, admTok) {
					t.Errorf("a keyhole token reached the upstream in %s", k)
				}
			}
			rec := n.record(r.rid())
			if str(rec, "decision") != "allow" {
				t.Errorf("audit decision = %q, want allow", str(rec, "decision"))
			}
		})
	}
}

// A child token's own rules follow the proxy's case folding, and their
// rate limits and response filters apply like the proxy's (SPEC §3.5: they
// apply in addition).
func TestChildTokenRulesApplyFully(t *testing.T) {
	n := startNode(t)
	f := n.fx("childci", map[string]any{"case_insensitive_paths": true}, rule("all", "allow", "GET /**"))
	f.up.on("/v1/items/1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":1,"ssn":"123-45-6789"}`)
	})
	limited := rule("one", "allow", "GET /V1/ITEMS/*")
	limited["rate_limit"] = "1/m"
	limited["response_filters"] = map[string]any{"remove": []string{"ssn"}}
	child, _ := n.mint(f.tok, map[string]any{"proxies": []string{"childci"}, "ttl": "5m", "rules": []any{limited}})
	r := n.call("GET", "/childci/v1/items/1", child, "")
	if r.status != 200 {
		t.Fatalf("the child's upper-case pattern matches on a case-insensitive proxy; want 200, got %s", r)
	}
	if strings.Contains(string(r.body), "123-45-6789") {
		t.Errorf("the child rule's response_filters apply; got %s", r.body)
	}
	if r := n.call("GET", "/childci/v1/items/1", child, ""); r.status != 429 || r.errCode() != "rate_limited" {
		t.Errorf("the child rule's rate_limit 1/m applies; second call want 429 rate_limited, got %s", r)
	}
	if r := n.call("GET", "/childci/v1/items/1", f.tok, ""); r.status != 200 {
		t.Errorf("the parent is not limited by its child's rule; got %s", r)
	}
}

// A forwarded request's record says "allow" from its start, so filters on
// decision find it while it is in flight (and after a crash, incomplete).
func TestStartRecordCarriesItsDecision(t *testing.T) {
	n := startNode(t)
	f := n.fx("startdec", nil, rule("all", "allow", "GET /**"))
	release := make(chan struct{})
	f.up.on("/v1/slow", func(w http.ResponseWriter, r *http.Request) { <-release })
	done := make(chan *resp, 1)
	go func() { done <- n.call("GET", "/startdec/v1/slow", f.tok, "") }()
	var recs []map[string]any
	for i := 0; i < 500 && len(recs) == 0; i++ {
		recs = n.logs("proxy=startdec&decision=allow")
		if len(recs) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(release)
	<-done
	if len(recs) != 1 || recs[0]["incomplete"] != true {
		t.Errorf("an in-flight request's record is listed under decision=allow (incomplete); got %v", recs)
	}
}
