package ui_test

// The harness: a real keyhole node (server.Run, SQLite in a temporary
// folder, the dashboard mounted on the admin listener exactly as `keyhole
// serve` does), an upstream that echoes what it got, and helpers to call
// the admin API and the gateway.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/server"
)

type node struct {
	t     *testing.T
	admin string // http://host:port of the admin listener (and dashboard)
	gw    string
	token string // bootstrap admin token
	up    *upstream
}

func randAlnum(n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		v, _ := rand.Int(rand.Reader, big.NewInt(int64(len(chars))))
		b[i] = chars[v.Int64()]
	}
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// upstream echoes each request as JSON and remembers the Authorization
// headers it received.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func (u *upstream) lastAuth() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.auths) == 0 {
		return ""
	}
	return u.auths[len(u.auths)-1]
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auths = append(u.auths, r.Header.Get("Authorization"))
		u.mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.Query(),
			"body": string(b), "customer": map[string]any{"id": "cus_123", "name": "Ann", "tags": []string{"a", "b"}}})
	}))
	t.Cleanup(u.Close)
	return u
}

// startNode runs a node in-process (it sets environment variables, so
// callers cannot be parallel).
func startNode(t *testing.T) *node {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	n := &node{t: t, token: "bootstrap-" + randAlnum(40)}
	t.Setenv("KEYHOLE_MASTER_KEY", base64.StdEncoding.EncodeToString(key))
	t.Setenv("KEYHOLE_ADMIN_TOKEN", n.token)
	gw, adm := freeAddr(t), freeAddr(t)
	n.gw, n.admin = "http://"+gw, "http://"+adm
	cfg := server.Config{
		Listen: gw, AdminListen: adm, Store: "sqlite://" + t.TempDir() + "/k.db", AllowCIDRs: []string{"127.0.0.0/8"},
		AuditDurability: "sync", AuditFailure: "closed", LogLevel: "error", LogFormat: "text", SQLiteSync: "NORMAL",
		ShutdownTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, io.Discard, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server.Run returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("the node did not stop within 60 s")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("the node exited while starting: %v", err)
		default:
		}
		resp, err := http.Get(n.gw + "/-/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not answer /-/health within 20 s (last error %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.up = newUpstream(t)
	return n
}

// api calls the admin API with a Bearer token and decodes the answer.
func (n *node) api(tok, method, path string, body any) (int, map[string]any) {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, n.admin+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (n *node) mustAPI(tok, method, path string, body any, want int) map[string]any {
	n.t.Helper()
	st, out := n.api(tok, method, path, body)
	if st != want {
		n.t.Fatalf("%s %s = %d %v, want %d", method, path, st, out, want)
	}
	return out
}

// gateway sends an agent's request and returns the status.
func (n *node) gateway(tok, method, path string, hdr http.Header, body string) int {
	n.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.gw+path, rd)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// setup makes a secret, a proxy "echo" to the upstream that allows
// everything but /v1/admin/**, an agent and a token; it returns the token.
func (n *node) setup(secret string) string {
	n.t.Helper()
	n.mustAPI(n.token, "POST", "/api/v1/secrets", map[string]any{"name": "echo-key", "value": secret}, 201)
	n.mustAPI(n.token, "POST", "/api/v1/proxies", map[string]any{"name": "echo", "upstream": n.up.URL,
		"auth": map[string]any{"type": "bearer", "secret": "echo-key"},
		"rules": []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}},
			map[string]any{"name": "no-admin", "effect": "deny", "paths": []string{"/v1/admin/**"}}}}, 201)
	n.mustAPI(n.token, "POST", "/api/v1/agents", map[string]any{"name": "billing-bot"}, 201)
	out := n.mustAPI(n.token, "POST", "/api/v1/agents/billing-bot/tokens", map[string]any{"proxies": []string{"echo"}}, 201)
	return out["token"].(string)
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
