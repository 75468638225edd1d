package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/admin"
	"github.com/keyhole-gw/keyhole/internal/admin/oauthtest"
)

// fakeProvider is the provider's token endpoint (oauthtest).
type fakeProvider = oauthtest.Provider

const provClientID, provClientSecret = oauthtest.ClientID, oauthtest.ClientSecret

func newFakeProvider(t *testing.T) *fakeProvider { return oauthtest.New(t) }

// browse GETs a URL as a browser would (no admin token).
func browse(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (n *testNode) start(tok, secret string, body map[string]any) (int, map[string]any) {
	n.t.Helper()
	return n.api(tok, "POST", "/secrets/"+secret+"/oauth/start", body)
}

func startBody(p *fakeProvider) map[string]any {
	return map[string]any{"authorize_url": p.URL + "/authorize", "token_url": p.URL + "/token", "client_id": provClientID,
		"client_secret": provClientSecret, "scopes": []string{"read:all", "offline_access"}, "params": map[string]string{"access_type": "offline"}}
}

func secretVersion(n *testNode, name string) int {
	code, m := n.api(n.token, "GET", "/secrets/"+name, nil)
	if code != 200 {
		return 0
	}
	v, _ := m["version"].(float64)
	return int(v)
}

// TestOAuthConnect: the authorization-code connect flow end to end.
func TestOAuthConnect(t *testing.T) {
	n := startNode(t)
	p := newFakeProvider(t)

	code, m := n.start(n.token, "conn", startBody(p))
	if code != 200 {
		t.Fatalf("start → %d %v", code, m)
	}
	consentURL, _ := m["url"].(string)
	u, _ := url.Parse(consentURL)
	q := u.Query()
	wantRedirect := n.admin + admin.CallbackPath
	for k, want := range map[string]string{"response_type": "code", "client_id": provClientID, "redirect_uri": wantRedirect,
		"scope": "read:all offline_access", "code_challenge_method": "S256", "access_type": "offline"} {
		if q.Get(k) != want {
			t.Errorf("consent URL %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if !strings.HasPrefix(consentURL, p.URL+"/authorize?") || len(q.Get("state")) < 43 || len(q.Get("code_challenge")) != 43 {
		t.Errorf("consent URL %s", consentURL)
	}
	if strings.Contains(consentURL, provClientSecret) {
		t.Error("the consent URL holds the client secret")
	}
	if m["redirect_uri"] != wantRedirect || m["expires_at"] == nil {
		t.Errorf("start answered %v", m)
	}

	cb := p.Consent(t, consentURL, "code-one")
	status, page := browse(t, cb)
	if status != 200 || !strings.Contains(page, "connected") {
		t.Fatalf("callback → %d %s", status, page)
	}
	for _, leak := range []string{provClientSecret, "conn_rt_", "conn_at_", "code-one"} {
		if strings.Contains(page, leak) {
			t.Errorf("the callback page holds %q", leak)
		}
	}
	sm := n.must(200, "GET", "/secrets/conn", nil)
	if sm["version"].(float64) != 1 || fmt.Sprint(sm["fields"]) != "[client_id client_secret refresh_token]" {
		t.Errorf("secret after connect: %v", sm)
	}

	// Single use: the same callback again stores nothing.
	if status, _ := browse(t, cb); status != 400 {
		t.Errorf("replayed callback → %d, want 400", status)
	}
	// A forged state.
	if status, _ := browse(t, wantRedirect+"?code=x&state=forged"); status != 400 {
		t.Errorf("forged state → %d, want 400", status)
	}

	// The stored refresh token works through a proxy.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Authorization")[:15])
	}))
	defer up.Close()
	n.must(201, "POST", "/proxies", map[string]any{"name": "conn", "upstream": up.URL,
		"auth":  map[string]any{"type": "oauth2_refresh_token", "secret": "conn", "token_url": p.URL + "/token"},
		"rules": []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}}}})
	n.must(201, "POST", "/agents", map[string]any{"name": "conn-bot"})
	tok, _ := n.must(201, "POST", "/agents/conn-bot/tokens", map[string]any{"proxies": []string{"conn"}, "ttl": "1h"})["token"].(string)
	if st, _ := n.call("GET", "/conn/x", tok, nil, ""); st != 200 {
		t.Fatalf("a call with the connected secret → %d", st)
	}
	p.Mu.Lock()
	if p.Last.Get("grant_type") != "refresh_token" || !strings.HasPrefix(p.Last.Get("refresh_token"), "conn_rt_") {
		t.Errorf("the proxy's token request was %v", p.Last)
	}
	p.Mu.Unlock()

	// Connect again, with the client read from the secret: a new version,
	// other fields kept.
	n.must(200, "PUT", "/secrets/conn", map[string]any{"value": map[string]string{"client_id": provClientID, "client_secret": provClientSecret,
		"refresh_token": "old_rt_value", "tenant": "acme"}})
	code, m = n.start(n.token, "conn", map[string]any{"authorize_url": p.URL + "/authorize", "token_url": p.URL + "/token", "auth_style": "body"})
	if code != 200 {
		t.Fatalf("start reading the client from the secret → %d %v", code, m)
	}
	if status, page := browse(t, p.Consent(t, m["url"].(string), "code-two")); status != 200 {
		t.Fatalf("second callback → %d %s", status, page)
	}
	sm = n.must(200, "GET", "/secrets/conn", nil)
	if sm["version"].(float64) != 3 || !slices.Contains(strs(sm["fields"]), "tenant") {
		t.Errorf("after the second connect: %v", sm)
	}

	// Audit: both halves recorded, by the admin who started, without the
	// code, the tokens or the client secret.
	_, logs := n.api(n.token, "GET", "/logs?proxy=-admin&limit=200", nil)
	raw, _ := json.Marshal(logs)
	var starts, callbacks int
	for _, r := range logs["records"].([]any) {
		rec := r.(map[string]any)
		switch rec["reason"] {
		case "secret.oauth_start":
			starts++
		case "secret.oauth_connect":
			callbacks++
			if rec["agent"] == "" || rec["path"] != admin.CallbackPath || rec["status"].(float64) != 200 {
				t.Errorf("callback record %v", rec)
			}
		}
	}
	if starts != 2 || callbacks != 2 {
		t.Errorf("%d start and %d callback records, want 2 and 2", starts, callbacks)
	}
	for _, leak := range []string{provClientSecret, "conn_rt_", "code-one", "code-two"} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("the audit log holds %q", leak)
		}
	}
}

// TestOAuthConnectRefusals: what the flow refuses, and that a refused or
// failed callback stores nothing.
func TestOAuthConnectRefusals(t *testing.T) {
	n := startNode(t)
	p := newFakeProvider(t)

	t.Run("bad requests", func(t *testing.T) {
		for name, mod := range map[string]func(m map[string]any){
			"no token_url":           func(m map[string]any) { delete(m, "token_url") },
			"ftp authorize_url":      func(m map[string]any) { m["authorize_url"] = "ftp://x/y" },
			"a scope with a space":   func(m map[string]any) { m["scopes"] = []string{"a b"} },
			"params replacing state": func(m map[string]any) { m["params"] = map[string]string{"state": "mine"} },
			"client_id only":         func(m map[string]any) { delete(m, "client_secret") },
			"no client anywhere":     func(m map[string]any) { delete(m, "client_secret"); delete(m, "client_id") },
			"token_url on metadata":  func(m map[string]any) { m["token_url"] = "http://169.254.169.254/token" },
			"unknown field":          func(m map[string]any) { m["grant"] = "x" },
			"bad auth_style":         func(m map[string]any) { m["auth_style"] = "basic" },
		} {
			b := startBody(p)
			mod(b)
			if code, m := n.start(n.token, "x", b); code != 400 {
				t.Errorf("%s → %d %v, want 400", name, code, m)
			}
		}
		if code, _ := n.start(n.token, "Bad Name!", startBody(p)); code != 400 {
			t.Errorf("invalid secret name → %d", code)
		}
		viewer := n.adminToken("viewer")
		if code, _ := n.start(viewer, "x", startBody(p)); code != 403 {
			t.Errorf("a viewer starting a flow → %d, want 403", code)
		}
	})

	t.Run("expired", func(t *testing.T) {
		_, m := n.start(n.token, "late", startBody(p))
		cb := p.Consent(t, m["url"].(string), "code-late")
		restore := admin.SetOAuthClock(func() time.Time { return time.Now().Add(admin.FlowTTL + time.Second) })
		defer restore()
		if status, _ := browse(t, cb); status != 400 {
			t.Errorf("callback after 10 minutes → %d, want 400", status)
		}
		if secretVersion(n, "late") != 0 {
			t.Error("an expired flow stored the secret")
		}
	})

	t.Run("the admin token was revoked meanwhile", func(t *testing.T) {
		_, m := n.api(n.token, "POST", "/admin-tokens", map[string]any{"name": "temp", "role": "admin", "ttl": "1h"})
		tok, id := m["token"].(string), m["id"].(string)
		_, sm := n.start(tok, "revoked", startBody(p))
		cb := p.Consent(t, sm["url"].(string), "code-rev")
		n.must(200, "DELETE", "/admin-tokens/"+id, nil)
		if status, _ := browse(t, cb); status != 403 {
			t.Errorf("callback of a revoked admin's flow → %d, want 403", status)
		}
		if secretVersion(n, "revoked") != 0 {
			t.Error("stored")
		}
	})

	t.Run("the user refused", func(t *testing.T) {
		_, m := n.start(n.token, "denied", startBody(p))
		q, _ := url.Parse(m["url"].(string))
		status, page := browse(t, q.Query().Get("redirect_uri")+"?error=access_denied&state="+url.QueryEscape(q.Query().Get("state")))
		if status != 400 || !strings.Contains(page, "access_denied") || secretVersion(n, "denied") != 0 {
			t.Errorf("→ %d %s", status, page)
		}
	})

	t.Run("no refresh token", func(t *testing.T) {
		p.Mu.Lock()
		p.NoRT = true
		p.Mu.Unlock()
		defer func() { p.Mu.Lock(); p.NoRT = false; p.Mu.Unlock() }()
		_, m := n.start(n.token, "nort", startBody(p))
		status, page := browse(t, p.Consent(t, m["url"].(string), "code-nort"))
		if status != 502 || !strings.Contains(page, "no refresh token") || secretVersion(n, "nort") != 0 {
			t.Errorf("→ %d %s", status, page)
		}
	})

	t.Run("the exchange fails", func(t *testing.T) {
		_, m := n.start(n.token, "bad-code", startBody(p))
		u, _ := url.Parse(m["url"].(string))
		// A code the provider never issued.
		status, page := browse(t, u.Query().Get("redirect_uri")+"?code=forged-code&state="+url.QueryEscape(u.Query().Get("state")))
		if status != 502 || !strings.Contains(page, "invalid_grant") || strings.Contains(page, provClientSecret) || secretVersion(n, "bad-code") != 0 {
			t.Errorf("→ %d %s", status, page)
		}
	})

	t.Run("a wrong PKCE verifier", func(t *testing.T) {
		_, m := n.start(n.token, "pkce", startBody(p))
		cb := p.Consent(t, m["url"].(string), "code-pkce")
		p.Mu.Lock()
		g := p.Codes["code-pkce"]
		g.Challenge = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		p.Codes["code-pkce"] = g
		p.Mu.Unlock()
		if status, _ := browse(t, cb); status != 502 || secretVersion(n, "pkce") != 0 {
			t.Errorf("a code redeemed with another verifier → %d", status)
		}
	})

	t.Run("templates", func(t *testing.T) {
		viewer := n.adminToken("viewer")
		code, m := n.api(viewer, "GET", "/templates", nil)
		if code != 200 || len(m["templates"].([]any)) < 17 {
			t.Fatalf("GET /templates as a viewer → %d", code)
		}
		code, m = n.api(viewer, "GET", "/templates/anthropic", nil)
		if code != 200 || m["agent_token_header"] != "x-api-key" {
			t.Errorf("GET /templates/anthropic → %d %v", code, m)
		}
		if code, _ := n.api(viewer, "GET", "/templates/nope", nil); code != 404 {
			t.Errorf("unknown template → %d", code)
		}
		// The API takes full specs: "template" is not a proxy field.
		if code, _ := n.api(n.token, "POST", "/proxies", map[string]any{"name": "t", "template": "openai"}); code != 400 {
			t.Errorf("POST /proxies with a template field → %d, want 400", code)
		}
	})
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
