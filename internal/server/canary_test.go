package server

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/token"
)

// TestCanarySecretsNeverLeave is the issue's requirement: "A canary upstream
// secret is absent from the DB file, every admin response, every agent
// response and the process output". It plants canary secrets of every
// shape, puts a proxy of every static auth type in front of upstreams that
// echo every request header and the query back (in headers and body), that
// split the secret across flushed chunks and an SSE stream, gzip it, put it
// in a redirect's Location and an error body; it drives allowed, denied,
// malformed, unknown, expired and revoked calls, rotates secrets, mints a
// child token, reads every admin list and every audit record. Then it stops
// the node and checks, beyond the harness's own checks of every response,
// the output and the upstreams: the raw bytes of keyhole.db, -wal and -shm.
//
// The attack it pins: any path by which a credential keyhole holds (or a
// token it issued) could come back to an agent, an admin, a log file or
// the disk in the clear.
func TestCanarySecretsNeverLeave(t *testing.T) {
	n := startNode(t)

	s1, s2 := canary(), canary()
	basic := map[string]string{"username": "svc-user", "password": canary()}
	hdr := map[string]string{"app_id": canary(), "app_key": canary()}
	hdr2 := map[string]string{"app_id": canary(), "app_key": canary()}
	n.secret("str-key", s1)
	n.secret("basic-key", basic)
	n.secret("hdr-key", hdr)
	// A refused secret must not be echoed in the error either.
	bad := canary()
	n.plant(bad)
	if r := n.admin("POST", "/secrets", map[string]any{"name": "Bad Name!", "value": bad}); r.status != http.StatusBadRequest {
		t.Errorf("POST /secrets with an invalid name → want 400, got %s", r)
	}
	if r := n.admin("POST", "/secrets", map[string]any{"name": "obj-bad", "value": map[string]any{"bad field!": bad}}); r.status != http.StatusBadRequest {
		t.Errorf("POST /secrets with an invalid field name → want 400, got %s", r)
	}

	rules := []any{rule("read", "allow", "GET,POST,HEAD /**"), rule("no-admin", "deny", "* /v1/admin/**")}
	type px struct {
		name   string
		auth   map[string]any
		secret string // a value to plant in the upstream's responses
	}
	proxies := []px{
		{"c-bearer", map[string]any{"type": "bearer", "secret": "str-key"}, s1},
		{"c-query", map[string]any{"type": "query", "secret": "str-key", "params": map[string]string{"api_key": "{{secret}}"}}, s1},
		{"c-header", map[string]any{"type": "header", "secret": "hdr-key",
			"headers": map[string]string{"X-App-Id": "{{secret.app_id}}", "X-App-Key": "Key {{secret.app_key}}"}}, hdr["app_key"]},
		{"c-basic", map[string]any{"type": "basic", "secret": "basic-key"}, basic["password"]},
		{"c-none", map[string]any{"type": "none"}, ""},
	}
	ups := map[string]*upstream{}
	var names []string
	for _, p := range proxies {
		up := n.upstream()
		ups[p.name] = up
		names = append(names, p.name)
		up.on("/", echoAll)
		if s := p.secret; s != "" {
			k := len(s) / 3
			up.on("/v1/split", gated("text/plain", nil, "before-"+s[:k], s[k:]+"-after"))
			up.on("/v1/sse", gated("text/event-stream", nil, "data: one\n\ndata: key="+s[:k+3], s[k+3:]+"\n\ndata: two\n\n"))
			up.on("/v1/gzip", gzipped("application/json", `{"key":"`+s+`","n":1}`, "X-Key", s))
			up.on("/v1/redirect", reply(http.StatusFound, "", "Location", "https://elsewhere.example/cb?k="+url.QueryEscape(s)))
			up.on("/v1/trailer", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Sig")
				w.Write([]byte("ok"))
				w.Header().Set("X-Sig", s)
				w.Header().Set(http.TrailerPrefix+"X-Echo-Auth", r.Header.Get("Authorization"))
			})
			up.on("/v1/fail", reply(http.StatusInternalServerError, "internal error, key "+s+" rejected", "Content-Type", "text/plain"))
		}
		n.proxy(p.name, up, map[string]any{"auth": p.auth, "rules": rules, "agent_token_header": "x-api-key",
			"capture": map[string]any{"request_body": true, "response_body": true, "redact_headers": []string{"X-Session"}}})
	}
	n.agent("canary-bot")
	tok, tokID := n.token("canary-bot", "1h", names...)
	expired, _ := n.token("canary-bot", "1ns", names...)
	revoked, revokedID := n.token("canary-bot", "1h", names...)
	n.must(http.StatusOK, "DELETE", "/tokens/"+revokedID, nil)
	unknown, err := token.Generate(token.Agent)
	if err != nil {
		t.Fatal(err)
	}
	n.plantToken(unknown)
	admTok := str(n.must(http.StatusCreated, "POST", "/admin-tokens", map[string]any{"name": "reader", "role": "auditor", "ttl": "1h"}), "token")
	if !strings.HasPrefix(admTok, "kha_") {
		t.Fatalf("POST /admin-tokens issued %q, want kha_…", head(admTok))
	}
	n.plantToken(admTok)

	// Every proxy, every upstream behaviour, the token in every location.
	for _, p := range proxies {
		base := "/" + p.name
		r := n.call("GET", base+"/v1/echo?limit=3&q=a%20b+c", tok, "")
		if r.status != http.StatusOK {
			t.Fatalf("GET %s/v1/echo → want 200, got %s", base, r)
		}
		n.call("POST", base+"/v1/echo", "", `{"hello":"world"}`, "X-Keyhole-Token", tok, "Content-Type", "application/json", "X-Session", "sess-123")
		n.call("GET", base+"/v1/echo", "", "", "X-Api-Key", tok, "X-Copy-Of-Token", "copy "+tok)
		n.call("GET", base+"/v1/echo", "", "", "X-Api-Key", "Bearer "+tok, "Authorization", "Bearer sk-sdk-own-key")
		n.call("HEAD", base+"/v1/echo", tok, "")
		if p.secret == "" {
			continue
		}
		for _, path := range []string{"/v1/split", "/v1/sse", "/v1/gzip", "/v1/redirect", "/v1/fail", "/v1/trailer"} {
			n.call("GET", base+path, tok, "")
		}
		n.call("GET", base+"/v1/gzip", tok, "", "Accept-Encoding", "gzip")
	}
	// The credential each auth type injected really reached the upstream,
	// and came back redacted: the test is not vacuous.
	checkEcho := func(name, header, wantUp, wantAgent string) {
		t.Helper()
		r := n.call("GET", "/"+name+"/v1/echo", tok, "")
		got := ups[name].last()
		if v := got.Header.Get(header); v != wantUp {
			t.Errorf("%s: the upstream got %s %q, want the injected credential", name, header, head(v))
		}
		if v := r.hdr.Get("X-Echo-" + header); v != wantAgent {
			t.Errorf("%s: the echoed %s reached the agent as %q, want %q", name, header, v, wantAgent)
		}
	}
	checkEcho("c-bearer", "Authorization", "Bearer "+s1, "Bearer [REDACTED]")
	checkEcho("c-basic", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic["username"]+":"+basic["password"])), "Basic [REDACTED]")
	checkEcho("c-header", "X-App-Id", hdr["app_id"], "[REDACTED]")
	checkEcho("c-header", "X-App-Key", "Key "+hdr["app_key"], "Key [REDACTED]")
	r := n.call("GET", "/c-query/v1/echo?limit=3", tok, "")
	if q := ups["c-query"].last().RawQuery; q != "limit=3&api_key="+url.QueryEscape(s1) {
		t.Errorf("c-query: the upstream got query %q, want limit=3 then the injected api_key", strings.ReplaceAll(q, url.QueryEscape(s1), "<SECRET>"))
	}
	if q := r.hdr.Get("X-Echo-Query"); q != "limit=3&api_key=[REDACTED]" {
		t.Errorf("c-query: the echoed query reached the agent as %q, want limit=3&api_key=[REDACTED]", q)
	}
	if r := n.call("GET", "/c-bearer/v1/split", tok, ""); string(r.body) != "before-[REDACTED]-after" {
		t.Errorf("c-bearer: a secret split across two chunks → want before-[REDACTED]-after, got %q", r.body)
	}

	// Refusals of every kind, with tokens and secrets about.
	for _, c := range []struct {
		name, method, path, tok string
		hdr                     []string
		want                    int
	}{
		{"deny rule", "GET", "/c-bearer/v1/admin/users", tok, nil, 403},
		{"bad path", "GET", "/c-bearer/v1/%2e%2e/admin", tok, nil, 400},
		{"unknown token", "GET", "/c-bearer/v1/echo", unknown, nil, 401},
		{"malformed token", "GET", "/c-bearer/v1/echo", "kh_short", nil, 401},
		{"expired token", "GET", "/c-bearer/v1/echo", expired, nil, 401},
		{"revoked token", "GET", "/c-bearer/v1/echo", revoked, nil, 401},
		{"admin token at the gateway", "GET", "/c-bearer/v1/echo", admTok, nil, 401},
		{"bootstrap admin token at the gateway", "GET", "/c-bearer/v1/echo", n.adminToken, nil, 401},
		{"injected query parameter", "GET", "/c-query/v1/echo?api_key=mine", tok, nil, 400},
		{"unknown proxy", "GET", "/nope/v1/echo", tok, []string{"X-Debug", "token " + tok}, 404},
		{"no token, kha_ in a header", "GET", "/c-bearer/v1/echo", "", []string{"X-Debug", admTok}, 401},
	} {
		if r := n.call(c.method, c.path, c.tok, "", c.hdr...); r.status != c.want {
			t.Errorf("%s: %s %s → want %d, got %s", c.name, c.method, c.path, c.want, r)
		}
	}
	if r := n.rawResp(rawReq("GET", "/c-bearer/v1/../x", tok, "")); r.status != http.StatusBadRequest {
		t.Errorf("raw dot-dot path → want 400, got %s", r)
	}
	// The agent token at the admin API.
	if r := n.adminAs(tok, "GET", "/secrets", nil); r.status != http.StatusUnauthorized {
		t.Errorf("an agent token at the admin API → want 401, got %s", r)
	}

	// Rotation: the new values are canaries too, and in use at once.
	n.plant(s2)
	n.must(http.StatusOK, "PUT", "/secrets/str-key", map[string]any{"value": s2})
	n.plant(hdr2)
	n.must(http.StatusOK, "PUT", "/secrets/hdr-key", map[string]any{"value": hdr2})
	checkEcho("c-bearer", "Authorization", "Bearer "+s2, "Bearer [REDACTED]")
	checkEcho("c-header", "X-App-Key", "Key "+hdr2["app_key"], "Key [REDACTED]")
	n.call("GET", "/c-query/v1/echo?x=1", tok, "")

	// keyhole's own endpoints.
	if r := n.call("GET", "/-/whoami", tok, ""); r.status != http.StatusOK || str(r.obj(), "token_id") != tokID {
		t.Errorf("GET /-/whoami → want 200 with token_id %s, got %s", tokID, r)
	}
	child, _ := n.mint(tok, map[string]any{"proxies": []string{"c-bearer"}, "ttl": "10m", "name": "child"})
	n.call("GET", "/c-bearer/v1/echo", child, "")
	n.call("GET", "/-/whoami", "", "", "X-Keyhole-Token", child)

	// Every admin read, as the bootstrap admin and as the auditor.
	for _, as := range []string{n.adminToken, admTok} {
		for _, p := range []string{"/secrets", "/secrets/str-key", "/secrets/basic-key", "/secrets/hdr-key", "/proxies",
			"/agents", "/agents/canary-bot", "/agents/canary-bot/tokens", "/admin-tokens"} {
			if r := n.adminAs(as, "GET", p, nil); r.status != http.StatusOK {
				t.Errorf("admin GET %s → want 200, got %s", p, r)
			}
		}
		for _, p := range names {
			n.adminAs(as, "GET", "/proxies/"+p, nil)
		}
	}
	n.must(http.StatusOK, "POST", "/audit/verify", nil)
	metrics := n.do(mustReq(t, "GET", "http://"+n.adm+"/metrics", n.adminToken), "admin GET /metrics", false)
	if metrics.status != http.StatusOK {
		t.Errorf("GET /metrics → %d", metrics.status)
	}
	recs := n.logs("limit=1000")
	if len(recs) < 50 {
		t.Errorf("the audit log lists %d records, want every request's (more than 50)", len(recs))
	}
	for _, rec := range recs {
		n.record(str(rec, "id"))
	}

	// The disk, while the node runs and after it stopped.
	before := readDB(t, n.dir)
	n.stop()
	after := readDB(t, n.dir)
	n.mu.Lock()
	secrets := append([]string{}, n.secrets...)
	tokens := append(append([]string{}, n.tokens...), n.adminToken)
	n.mu.Unlock()
	for _, snap := range []struct {
		when  string
		files map[string][]byte
	}{{"while running", before}, {"after stop", after}} {
		for file, b := range snap.files {
			for _, s := range secrets {
				if strings.Contains(string(b), s) {
					t.Errorf("LEAK: canary %s… in %s (%s)", head(s), file, snap.when)
				}
			}
			for _, tk := range tokens {
				if strings.Contains(string(b), tk) {
					t.Errorf("LEAK: token %s… in %s (%s): the store keeps hashes only", head(tk), file, snap.when)
				}
			}
		}
	}
	// What was read is the store: the audit log's redacted captures are in it.
	all := string(before["keyhole.db"]) + string(before["keyhole.db-wal"]) + string(after["keyhole.db"]) + string(after["keyhole.db-wal"])
	for _, want := range []string{"c-bearer", "[REDACTED]", "denied_by_rule"} {
		if !strings.Contains(all, want) {
			t.Errorf("the store files do not hold %q: did the test read the right files?", want)
		}
	}
	// Every response, the node's output, every upstream request.
	n.checkLeaks()
}

func mustReq(t *testing.T, method, u, tok string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// readDB reads keyhole.db and its -wal and -shm files, when they exist.
func readDB(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range []string{"keyhole.db", "keyhole.db-wal", "keyhole.db-shm"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err == nil {
			out[f] = b
		} else if !os.IsNotExist(err) {
			t.Errorf("read %s: %v", f, err)
		}
	}
	if len(out["keyhole.db"]) == 0 {
		t.Errorf("keyhole.db is missing or empty in %s", dir)
	}
	return out
}
