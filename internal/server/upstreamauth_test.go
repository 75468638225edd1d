package server

// Upstream auth beyond static keys, end to end through a node: OAuth 2.0
// (client credentials and refresh token) against an RFC 6749 token
// endpoint, and AWS SigV4 against an upstream that verifies signatures
// independently (inject/sigv4verify).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/inject/sigv4verify"
)

// oauthProvider is an RFC 6749 token endpoint: client credentials and
// refresh-token grants, tokens that the test can revoke, refresh tokens
// that rotate on use when rotate is set, and answers the test can replace.
type oauthProvider struct {
	*httptest.Server
	n *testNode

	mu       sync.Mutex
	fetches  int
	issued   []string
	revoked  map[string]bool
	refresh  map[string]bool // valid refresh tokens
	rotate   bool
	override func(w http.ResponseWriter, r *http.Request, form url.Values) bool
	hold     func() // called before answering (the herd test blocks here)
}

func newProvider(t *testing.T, n *testNode) *oauthProvider {
	p := &oauthProvider{n: n, revoked: map[string]bool{}, refresh: map[string]bool{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *oauthProvider) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	p.mu.Lock()
	p.fetches++
	hold, override := p.hold, p.override
	p.mu.Unlock()
	if hold != nil {
		hold()
	}
	if override != nil && override(w, r, form) {
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id != "kh-client" || secret != oauthClientSecret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	extra := map[string]any{}
	switch form.Get("grant_type") {
	case "client_credentials":
	case "refresh_token":
		rt := form.Get("refresh_token")
		if !p.refresh[rt] {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		if p.rotate {
			delete(p.refresh, rt)
			next := "rt_canary_" + randString(20)
			p.refresh[next] = true
			p.n.plant(next)
			extra["refresh_token"] = next
		}
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	tok := "at_canary_" + randString(24)
	p.n.plant(tok)
	p.issued = append(p.issued, tok)
	m := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600}
	for k, v := range extra {
		m[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(m)
}

func oauthErr(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// error_description echoes a secret, as careless providers do: it
	// must go nowhere.
	fmt.Fprintf(w, `{"error":%q,"error_description":"client_secret %s was refused"}`, code, oauthClientSecret)
}

var oauthClientSecret = "cs_canary_" + randString(20)

func (p *oauthProvider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches
}

func (p *oauthProvider) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.issued) == 0 {
		return ""
	}
	return p.issued[len(p.issued)-1]
}

func (p *oauthProvider) isRevoked(tok string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revoked[tok]
}

// bearerUpstream answers 200 and echoes everything (echoAll) to requests
// whose access token the provider has not revoked, 401 otherwise (RFC 6750
// §3.1); /forbidden always answers 403 and /always401 always 401.
func bearerUpstream(n *testNode, p *oauthProvider) *upstream {
	up := n.upstream()
	up.on("/", func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case strings.HasPrefix(r.URL.Path, "/forbidden"):
			w.WriteHeader(http.StatusForbidden)
			return
		case strings.HasPrefix(r.URL.Path, "/always401") || p.isRevoked(tok) || !strings.HasPrefix(tok, "at_canary_"):
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		echoAll(w, r)
	})
	return up
}

// TestOAuthThroughGateway: the client-credentials and refresh-token grants
// through a node — one token fetch for 500 concurrent requests, fail
// closed on endpoint faults, the 401 retry rules, and access tokens
// scrubbed from responses, audit records and the store like secrets.
func TestOAuthThroughGateway(t *testing.T) {
	n := startNode(t)
	p := newProvider(t, n)
	up := bearerUpstream(n, p)
	n.secret("oauth-client", map[string]string{"client_id": "kh-client", "client_secret": oauthClientSecret})
	n.plant(oauthClientSecret)
	for _, px := range []struct{ name, style string }{{"cc", "header"}, {"cc-body", "body"}} {
		n.proxy(px.name, up, map[string]any{
			"auth": map[string]any{"type": "oauth2_client_credentials", "secret": "oauth-client", "token_url": p.URL + "/token",
				"scopes": []string{"read", "write"}, "auth_style": px.style},
			"rules": []any{allowAll}})
	}
	n.agent("bot")
	tok, _ := n.token("bot", "1h", "cc", "cc-body")

	t.Run("500 concurrent requests, one token request", func(t *testing.T) {
		// The token endpoint answers only once all 500 requests have
		// reached the gateway (their start records are committed before
		// anything is forwarded, so the log counts them): none of them can
		// have found a token, and one fetch must serve them all.
		const herd = 500
		before := p.count()
		release := make(chan struct{})
		var once sync.Once
		p.mu.Lock()
		p.hold = func() {
			once.Do(func() {
				waitFor(func() bool { return countLogs(n, "cc") >= herd })
				close(release)
			})
			<-release
		}
		p.mu.Unlock()
		defer func() { p.mu.Lock(); p.hold = nil; p.mu.Unlock() }()
		var wg sync.WaitGroup
		var ok atomic.Int32
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: herd, DisableCompression: true}}
		for i := 0; i < herd; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", "http://"+n.gw+"/cc/v1/items", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := client.Do(req)
				if err != nil {
					return
				}
				r, _ := readResp(res)
				n.see("herd request", r.dump(), false)
				if r.status == 200 {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if got := p.count() - before; got != 1 {
			t.Errorf("%d token requests for %d concurrent requests, want 1", got, herd)
		}
		if ok.Load() != herd {
			t.Errorf("%d of %d requests succeeded", ok.Load(), herd)
		}
	})

	t.Run("wire format", func(t *testing.T) {
		// What reached the upstream is the provider's token, as Bearer.
		r := n.call("GET", "/cc/v1/echo", tok, "")
		if r.status != 200 || up.last().Header.Get("Authorization") != "Bearer "+p.last() {
			t.Fatalf("GET → %s; upstream got %q", r, up.last().Header.Get("Authorization"))
		}
		// The echo of the access token came back scrubbed.
		if strings.Contains(string(r.body), p.last()) || !strings.Contains(string(r.body), "[REDACTED]") {
			t.Errorf("the access token echoed by the upstream was not scrubbed: %s", clip(string(r.body)))
		}
		if r := n.call("GET", "/cc-body/v1/echo", tok, ""); r.status != 200 {
			t.Errorf("auth_style body: %s", r)
		}
	})

	t.Run("401 refreshes once and retries once with the same body", func(t *testing.T) {
		n.call("GET", "/cc/v1/warm", tok, "")
		old := strings.TrimPrefix(up.last().Header.Get("Authorization"), "Bearer ")
		p.mu.Lock()
		p.revoked[old] = true
		p.mu.Unlock()
		fetches, ups := p.count(), up.count()
		body := `{"amount":100,"note":"replayed"}`
		r := n.call("POST", "/cc/v1/charges", tok, body, "Content-Type", "application/json")
		if r.status != 200 {
			t.Fatalf("POST after the token was revoked → %s, want 200 after one refresh", r)
		}
		reqs := up.requests()[ups:]
		if len(reqs) != 2 || string(reqs[0].Body) != body || string(reqs[1].Body) != body {
			t.Fatalf("the upstream saw %d requests (want the 401 and its retry, both with the body)", len(reqs))
		}
		if reqs[0].Header.Get("Authorization") != "Bearer "+old || reqs[1].Header.Get("Authorization") != "Bearer "+p.last() {
			t.Error("the retry does not carry the new token")
		}
		if reqs[0].Header.Get("X-Keyhole-Request-Id") != reqs[1].Header.Get("X-Keyhole-Request-Id") {
			t.Error("the retry has another request id")
		}
		if p.count() != fetches+1 {
			t.Errorf("%d token requests for one 401, want 1", p.count()-fetches)
		}
		rec := n.record(r.rid())
		if str(rec, "status") != "200" || str(rec, "request_body") != body {
			t.Errorf("the record of a retried request: status %s, body %q", str(rec, "status"), str(rec, "request_body"))
		}
	})

	t.Run("403 is never retried", func(t *testing.T) {
		fetches, ups := p.count(), up.count()
		r := n.call("POST", "/cc/forbidden", tok, `{}`, "Content-Type", "application/json")
		if r.status != 403 || up.count() != ups+1 || p.count() != fetches {
			t.Errorf("403 → %d, upstream saw %d, %d token requests; want 403, 1, 0", r.status, up.count()-ups, p.count()-fetches)
		}
	})

	t.Run("a second 401 goes to the agent: never a loop", func(t *testing.T) {
		fetches, ups := p.count(), up.count()
		r := n.call("GET", "/cc/always401", tok, "")
		if r.status != 401 || r.hdr.Get("Www-Authenticate") == "" {
			t.Errorf("→ %s, want the upstream's 401", r)
		}
		if up.count() != ups+2 || p.count() != fetches+1 {
			t.Errorf("upstream saw %d, %d token requests; want 2 and 1", up.count()-ups, p.count()-fetches)
		}
	})

	t.Run("a body that cannot be replayed is not retried", func(t *testing.T) {
		n.call("GET", "/cc/v1/warm", tok, "")
		p.mu.Lock()
		p.revoked[strings.TrimPrefix(up.last().Header.Get("Authorization"), "Bearer ")] = true
		p.mu.Unlock()
		ups := up.count()
		big := strings.Repeat("x", 2<<20) // over the 1 MiB replay bound
		r := n.call("POST", "/cc/v1/upload", tok, big, "Content-Type", "application/octet-stream")
		if r.status != 401 || up.count() != ups+1 {
			t.Errorf("→ %d with %d upstream requests; want the 401 as it came, once", r.status, up.count()-ups)
		}
		if len(up.last().Body) != len(big) {
			t.Errorf("the streamed body arrived with %d bytes", len(up.last().Body))
		}
		// The next request uses a fresh token (the 401 dropped the old one).
		if r := n.call("GET", "/cc/v1/after", tok, ""); r.status != 200 {
			t.Errorf("after: %s", r)
		}
	})

	t.Run("endpoint faults fail closed", func(t *testing.T) {
		n.proxy("cc-bad", up, map[string]any{
			"auth":  map[string]any{"type": "oauth2_client_credentials", "secret": "oauth-client", "token_url": p.URL + "/bad"},
			"rules": []any{allowAll}})
		tok2, _ := n.token("bot", "1h", "cc-bad")
		for _, fault := range []struct {
			name  string
			reply func(w http.ResponseWriter)
		}{
			{"invalid_client", func(w http.ResponseWriter) { oauthErr(w, 401, "invalid_client") }},
			{"5xx", func(w http.ResponseWriter) { w.WriteHeader(503); io.WriteString(w, oauthClientSecret) }},
			{"not JSON", func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/html")
				io.WriteString(w, "<h1>"+oauthClientSecret)
			}},
		} {
			p.mu.Lock()
			p.override = func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
				if r.URL.Path != "/bad" {
					return false
				}
				fault.reply(w)
				return true
			}
			p.mu.Unlock()
			ups := up.count()
			r := n.call("GET", "/cc-bad/v1/items", tok2, "")
			wantErr(t, fault.name, r, http.StatusBadGateway, "upstream_auth_failed")
			if up.count() != ups {
				t.Errorf("%s: the request was forwarded without its credential", fault.name)
			}
			rec := n.record(r.rid())
			if str(rec, "reason") != "upstream_auth_failed" || str(rec, "decision") != "error" {
				t.Errorf("%s: record reason %q decision %q", fault.name, str(rec, "reason"), str(rec, "decision"))
			}
			n.restart() // clears the failure cooldown (and checks a restart keeps working)
		}
		p.mu.Lock()
		p.override = nil
		p.mu.Unlock()
	})

	t.Run("tokens never leave", func(t *testing.T) {
		// Every access token the provider issued is planted: the harness
		// checks every response (echoes included), the audit records read
		// here, and the node's output; then the store's files.
		for _, rec := range n.logs("proxy=cc&limit=50") {
			n.record(str(rec, "id"))
		}
		n.stop()
		db := readDB(t, n.dir)
		p.mu.Lock()
		issued := append([]string(nil), p.issued...)
		p.mu.Unlock()
		for f, b := range db {
			for _, tk := range append(issued, oauthClientSecret) {
				if strings.Contains(string(b), tk) {
					t.Errorf("LEAK: %s… in %s", head(tk), f)
				}
			}
		}
	})
}

// waitFor polls f (up to a minute): a wait, not a timing assertion.
func waitFor(f func() bool) bool {
	deadline := time.Now().Add(time.Minute)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// countLogs counts a proxy's records (from any goroutine: no t).
func countLogs(n *testNode, proxy string) int {
	req, _ := http.NewRequest("GET", "http://"+n.adm+"/api/v1/logs?limit=1000&proxy="+proxy, nil)
	req.Header.Set("Authorization", "Bearer "+n.adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var l struct {
		Records []json.RawMessage `json:"records"`
	}
	json.NewDecoder(res.Body).Decode(&l)
	return len(l.Records)
}

// TestRefreshTokenRotationSurvivesRestart: a provider that rotates refresh
// tokens (and refuses a used one) — the new refresh token is a new version
// of the secret at once, and after a restart the node uses it.
func TestRefreshTokenRotationSurvivesRestart(t *testing.T) {
	n := startNode(t)
	p := newProvider(t, n)
	p.rotate = true
	p.refresh["rt_canary_first"] = true
	up := bearerUpstream(n, p)
	n.secret("google", map[string]string{"client_id": "kh-client", "client_secret": oauthClientSecret, "refresh_token": "rt_canary_first"})
	n.proxy("g", up, map[string]any{
		"auth":  map[string]any{"type": "oauth2_refresh_token", "secret": "google", "token_url": p.URL + "/token", "auth_style": "body"},
		"rules": []any{allowAll}})
	n.agent("bot")
	tok, _ := n.token("bot", "1h", "g")
	if r := n.call("GET", "/g/v1/a", tok, ""); r.status != 200 {
		t.Fatalf("first call: %s", r)
	}
	m := n.must(200, "GET", "/secrets/google", nil)
	if str(m, "version") != "2" {
		t.Fatalf("after the provider rotated the refresh token the secret is at version %s, want 2", str(m, "version"))
	}
	n.restart()
	// The first refresh token is spent: only the stored one works.
	if r := n.call("GET", "/g/v1/b", tok, ""); r.status != 200 {
		t.Fatalf("after a restart: %s (the rotated refresh token was not kept)", r)
	}
	if m := n.must(200, "GET", "/secrets/google", nil); str(m, "version") != "3" {
		t.Errorf("version %s after the second rotation, want 3", str(m, "version"))
	}
	// An admin rotation wins over the cached token: a new grant.
	p.mu.Lock()
	p.refresh["rt_canary_admin"] = true
	p.mu.Unlock()
	n.plant("rt_canary_admin")
	n.must(200, "PUT", "/secrets/google", map[string]any{"value": map[string]string{"client_id": "kh-client", "client_secret": oauthClientSecret, "refresh_token": "rt_canary_admin"}})
	before := p.count()
	if r := n.call("GET", "/g/v1/c", tok, ""); r.status != 200 || p.count() != before+1 {
		t.Errorf("after an admin rotation: %s after %d token requests (want a fresh token from the new grant)", r, p.count()-before)
	}
}

// TestSigV4ThroughGateway: a proxy of type aws_sigv4 in front of an
// upstream that verifies every signature independently; static headers and
// X-Keyhole-Request-Id are set before signing (so they are signed); a body
// over 10 MiB is refused with 413 and nothing is forwarded.
func TestSigV4ThroughGateway(t *testing.T) {
	n := startNode(t)
	creds := map[string]string{"access_key_id": "AKIDKEYHOLEGW", "secret_access_key": "sk_canary_aws/" + randString(30), "session_token": "st_canary_" + randString(40)}
	n.secret("aws", creds)
	v := &sigv4verify.Verifier{Secrets: map[string]string{creds["access_key_id"]: creds["secret_access_key"]}, Region: "eu-west-1", Service: "bedrock",
		Tokens: map[string]string{creds["access_key_id"]: creds["session_token"]}}
	up := n.upstream()
	var mu sync.Mutex
	var signed []string
	up.on("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		res, err := v.Verify(sigv4verify.FromHTTP(r), body)
		if err != nil {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"message":"`+err.Error()+`"}`)
			return
		}
		mu.Lock()
		signed = res.Auth.SignedHeaders
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	n.proxy("bedrock", up, map[string]any{
		"auth":           map[string]any{"type": "aws_sigv4", "secret": "aws", "region": "eu-west-1", "service": "bedrock"},
		"static_headers": map[string]string{"X-Team": "agents"},
		"rules":          []any{allowAll}})
	n.agent("bot")
	tok, _ := n.token("bot", "1h", "bedrock")
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/bedrock/model/anthropic.claude-3-haiku-20240307-v1:0/converse", `{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`},
		{"GET", "/bedrock/foundation-models?byProvider=anthropic&byOutputModality=TEXT", ""},
		{"GET", "/bedrock/a%20b/c?q=x%20y&q=a+b", ""},
	} {
		r := n.call(c.method, c.path, tok, c.body, "Content-Type", "application/json", "X-Amz-Security-Token", "agent-supplied")
		if r.status != 200 {
			t.Fatalf("%s %s → %s", c.method, c.path, r)
		}
	}
	mu.Lock()
	for _, h := range []string{"x-keyhole-request-id", "x-team", "x-amz-security-token", "content-type"} {
		if !strings.Contains(";"+strings.Join(signed, ";")+";", ";"+h+";") {
			t.Errorf("%s is not signed (signed: %v): signing must run last", h, signed)
		}
	}
	mu.Unlock()
	ups := up.count()
	big := strings.Repeat("a", 10<<20+1)
	r := n.call("POST", "/bedrock/model/x/invoke", tok, big, "Content-Type", "application/json")
	wantErr(t, "11 MiB body", r, http.StatusRequestEntityTooLarge, "body_too_large")
	if up.count() != ups {
		t.Error("a body too large to sign was forwarded")
	}
}
