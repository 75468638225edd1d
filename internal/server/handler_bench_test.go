package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/admin"
	"github.com/keyhole-gw/keyhole/internal/gateway"
)

// benchNode is a node's handlers without listeners: the gateway and the
// admin API called in-process, so a benchmark measures keyhole's own work
// (and the upstream round trip), not a client's.
type benchNode struct {
	n   *Node
	gw  *gateway.Gateway
	api http.Handler
	tok string
}

func newBenchNode(b *testing.B, durability string, capture bool) *benchNode {
	b.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	b.Setenv("KEYHOLE_MASTER_KEY", base64.StdEncoding.EncodeToString(key))
	b.Setenv("KEYHOLE_ADMIN_TOKEN", "bench-admin-"+randString(40))
	dir := b.TempDir()
	cfg := Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:1", Store: "sqlite://" + filepath.Join(dir, "k.db"),
		AllowCIDRs: []string{"127.0.0.0/8"}, AuditDurability: durability, AuditFailure: "closed", LogLevel: "error",
		LogFormat: "text", SQLiteSync: "NORMAL", ShutdownTimeout: time.Second}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	n := &Node{cfg: cfg, out: io.Discard, log: newLogger(cfg, io.Discard)}
	if err := n.open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(n.close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"cus_123","object":"customer","email":"ann@example.com","balance":0,"currency":"usd"}`))
	}))
	b.Cleanup(up.Close)
	bn := &benchNode{n: n}
	bn.gw = gateway.New(gateway.Options{Catalog: n.cat, Audit: n.aw, Store: n.st, Node: n.nodeID, Logger: n.log, Metrics: n.m, Quotas: n.quotas})
	bn.api = admin.New(admin.Options{Store: n.st, Catalog: n.cat, Audit: n.aw, Master: n.master, Node: n.nodeID, Logger: n.log, Metrics: n.m})
	adm := func(method, path string, body any) map[string]any {
		js, _ := json.Marshal(body)
		req := httptest.NewRequest(method, "/api/v1"+path, bytes.NewReader(js))
		req.Header.Set("Authorization", "Bearer "+getenvTest("KEYHOLE_ADMIN_TOKEN"))
		w := httptest.NewRecorder()
		bn.api.ServeHTTP(w, req)
		if w.Code/100 != 2 {
			b.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		}
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return m
	}
	adm("POST", "/secrets", map[string]any{"name": "k", "value": "sk_bench_upstream_key_0123456789"})
	adm("POST", "/proxies", map[string]any{"name": "bench", "upstream": up.URL, "auth": map[string]any{"type": "bearer", "secret": "k"},
		"capture": map[string]any{"request_body": capture, "response_body": capture},
		"rules":   []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}}}})
	adm("POST", "/agents", map[string]any{"name": "bot"})
	bn.tok = adm("POST", "/agents/bot/tokens", map[string]any{"proxies": []string{"bench"}})["token"].(string)
	return bn
}

func getenvTest(k string) string { return lookupEnv(k) }

// benchWriter is a minimal ResponseWriter that keeps nothing.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) Flush()                      {}

// BenchmarkHandler is one agent request through the gateway handler: token
// check, rules, audit (start and end committed in sync mode), credential
// injection, the upstream round trip on loopback, scrubbing. Run with
// -benchmem; the allocations per request are what the performance work
// tracks (docs/performance.md).
func BenchmarkHandler(b *testing.B) {
	for _, c := range []struct {
		name       string
		durability string
		capture    bool
	}{{"sync", "sync", true}, {"async", "async", true}, {"sync-nocapture", "sync", false}} {
		b.Run(c.name, func(b *testing.B) {
			bn := newBenchNode(b, c.durability, c.capture)
			b.ReportAllocs()
			b.SetParallelism(16) // many requests in flight, as under load: group commit works
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest("GET", "/bench/v1/customers/cus_123?expand=x", nil)
					r.RequestURI = "/bench/v1/customers/cus_123?expand=x"
					r.Header.Set("Authorization", "Bearer "+bn.tok)
					r.Header.Set("Accept", "application/json")
					r.Header.Set("User-Agent", "bench/1.0")
					w := &benchWriter{h: http.Header{}}
					bn.gw.ServeHTTP(w, r)
					if w.code != 200 {
						b.Fatalf("status %d", w.code)
					}
				}
			})
		})
	}
}

var lookupEnv = os.Getenv

// BenchmarkBaselineHandler is the comparison: a bare httputil.ReverseProxy
// doing the same token check and header swap (what SPEC §11 measures
// keyhole against), called the same way.
func BenchmarkBaselineHandler(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"cus_123","object":"customer","email":"ann@example.com","balance":0,"currency":"usd"}`))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	rp := &httputil.ReverseProxy{Transport: tr, FlushInterval: -1, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Header.Set("Authorization", "Bearer sk_bench_upstream_key_0123456789")
	}}
	const tok = "kh_benchtoken"
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")), []byte(tok)) != 1 {
			w.WriteHeader(401)
			return
		}
		rp.ServeHTTP(w, r)
	})
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest("GET", "/bench/v1/customers/cus_123?expand=x", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Set("Accept", "application/json")
			r.Header.Set("User-Agent", "bench/1.0")
			w := &benchWriter{h: http.Header{}}
			h.ServeHTTP(w, r)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})
}
