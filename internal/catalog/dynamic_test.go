package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/netguard"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// env is a catalog over a real SQLite store with a vault key.
type env struct {
	t   *testing.T
	st  *sqlite.Store
	mk  *vault.MasterKey
	cat *Catalog
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, _, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	wk, err := mk.NewDataKey(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddKey(ctx, store.Key{ID: wk.ID, Wrapped: wk.Wrapped, CreatedAt: time.Now(), Active: true}); err != nil {
		t.Fatal(err)
	}
	g, _ := netguard.New([]string{"127.0.0.0/8"})
	cat, err := New(ctx, Options{Store: st, Master: mk, Guard: g, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OAuth: inject.OAuthOptions{Backoff: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, mk: mk, cat: cat}
}

func valueOf(fields map[string]string) []byte {
	if v, ok := fields[""]; ok {
		return mustJSON(v) // a string secret
	}
	return mustJSON(fields)
}

func (e *env) seal(name string, v int, fields map[string]string) []byte {
	raw := valueOf(fields)
	pt, _, _, err := EncodeValue(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	keys, _ := e.st.Keys(context.Background())
	kr, err := Keyring(e.mk, keys)
	if err != nil {
		e.t.Fatal(err)
	}
	ct, err := kr.Seal(vault.SecretAAD(name, v), pt)
	if err != nil {
		e.t.Fatal(err)
	}
	return ct
}

func (e *env) secret(name string, fields map[string]string) {
	e.t.Helper()
	_, kind, names, _ := EncodeValue(valueOf(fields))
	at := time.Now().UTC()
	if err := e.st.CreateSecret(context.Background(), store.Secret{Name: name, Version: 1, Kind: kind, Fields: names, CreatedAt: at},
		store.SecretVersion{Name: name, Version: 1, Ciphertext: e.seal(name, 1, fields), CreatedAt: at}); err != nil {
		e.t.Fatal(err)
	}
	e.reload()
}

func (e *env) rotate(name string, fields map[string]string) {
	e.t.Helper()
	_, kind, names, _ := EncodeValue(valueOf(fields))
	if _, err := e.st.RotateSecret(context.Background(), name, time.Now().UTC(), func(v int) ([]byte, string, []string, error) {
		return e.seal(name, v, fields), kind, names, nil
	}); err != nil {
		e.t.Fatal(err)
	}
	e.reload()
}

func (e *env) proxy(p spec.Proxy) {
	e.t.Helper()
	p.Normalize()
	js, _ := json.Marshal(p)
	if err := e.st.PutProxy(context.Background(), store.Proxy{Name: p.Name, Secret: p.Auth.Secret, Spec: js, CreatedAt: time.Now(), UpdatedAt: time.Now()}, true); err != nil {
		e.t.Fatal(err)
	}
	e.reload()
}

func (e *env) reload() {
	e.t.Helper()
	if err := e.cat.Reload(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// provider is a token endpoint that counts requests and can rotate the
// refresh token on each use.
type provider struct {
	*httptest.Server
	mu      sync.Mutex
	n       int
	rotate  bool
	lastRT  string
	tokenOf func(n int) string
}

func newProvider(t *testing.T) *provider {
	p := &provider{tokenOf: func(n int) string { return fmt.Sprintf("access-token-%03d", n) }}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.n++
		p.lastRT = r.PostForm.Get("refresh_token")
		m := map[string]any{"access_token": p.tokenOf(p.n), "token_type": "bearer", "expires_in": 3600}
		if p.rotate {
			m["refresh_token"] = fmt.Sprintf("refresh-token-%03d", p.n+1)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *provider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func oauthProxy(name, secret, tokenURL, typ string) spec.Proxy {
	p := spec.NewProxy()
	p.Name, p.Upstream = name, "http://127.0.0.1:9"
	p.Auth = spec.Auth{Type: typ, Secret: secret, TokenURL: tokenURL}
	return p
}

func apply(t *testing.T, p *Proxy) *http.Request {
	t.Helper()
	if p.Err != nil {
		t.Fatalf("proxy %s: %v", p.Name, p.Err)
	}
	r, _ := http.NewRequest("GET", "http://x/", nil)
	if err := p.Inject.Apply(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTokenOutlivesSnapshots: the access token survives rebuilds (no new
// fetch after unrelated changes), two proxies with the same secret and
// settings share it, and a proxy whose settings differ has its own.
func TestTokenOutlivesSnapshots(t *testing.T) {
	e := newEnv(t)
	p := newProvider(t)
	e.secret("client", map[string]string{"client_id": "id-1", "client_secret": "client-secret-1"})
	e.proxy(oauthProxy("a", "client", p.URL, "oauth2_client_credentials"))
	e.proxy(oauthProxy("b", "client", p.URL, "oauth2_client_credentials"))
	scoped := oauthProxy("c", "client", p.URL, "oauth2_client_credentials")
	scoped.Auth.Scopes = []string{"other"}
	e.proxy(scoped)

	apply(t, e.cat.Load().Proxy("a"))
	e.secret("unrelated", map[string]string{"x": "unrelated-value"}) // a rebuild
	apply(t, e.cat.Load().Proxy("a"))
	apply(t, e.cat.Load().Proxy("b"))
	if p.count() != 1 {
		t.Errorf("%d token requests for one secret and settings across rebuilds, want 1", p.count())
	}
	apply(t, e.cat.Load().Proxy("c"))
	if p.count() != 2 {
		t.Errorf("other scopes share the token: %d requests", p.count())
	}
	// A rotation of the client drops the token (it belongs to the old one).
	e.rotate("client", map[string]string{"client_id": "id-1", "client_secret": "client-secret-2"})
	apply(t, e.cat.Load().Proxy("a"))
	if p.count() != 3 {
		t.Errorf("after the client was rotated: %d requests, want 3", p.count())
	}
	// Deleting the proxies drops the sources at the next rebuild.
	for _, n := range []string{"a", "b", "c"} {
		e.st.DeleteProxy(context.Background(), n)
	}
	e.reload()
	e.cat.dyn.mu.Lock()
	left := len(e.cat.dyn.sources)
	e.cat.dyn.mu.Unlock()
	if left != 0 {
		t.Errorf("%d sources kept for deleted proxies", left)
	}
}

// TestForRequestScrubsNewToken: a token fetched after the snapshot was
// built is scrubbed through the per-token view; the snapshot's own proxy
// does not know it.
func TestForRequestScrubsNewToken(t *testing.T) {
	e := newEnv(t)
	p := newProvider(t)
	e.secret("client", map[string]string{"client_id": "id-1", "client_secret": "client-secret-1"})
	e.proxy(oauthProxy("a", "client", p.URL, "oauth2_client_credentials"))
	px := e.cat.Load().Proxy("a")
	r := apply(t, px)
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if px.Scrub.Contains([]byte(tok)) {
		t.Fatal("the snapshot compiled before the fetch already knows the token?")
	}
	v := px.ForRequest(r)
	if v == px || !v.Scrub.Contains([]byte(tok)) || !strings.Contains(v.Scrub.ReplaceString("x "+tok+" y"), "[REDACTED]") {
		t.Fatal("the view does not scrub the access token")
	}
	if got := v.Redact.Headers(http.Header{"X-Echo": {tok}}); got["X-Echo"][0] == tok {
		t.Error("the view's redactor does not redact the token")
	}
	if v2 := px.ForRequest(r); v2 != v {
		t.Error("the view is rebuilt for the same token")
	}
	// A static proxy is its own view.
	e.secret("plain", map[string]string{"": "plain-secret-value"})
	sp := spec.NewProxy()
	sp.Name, sp.Upstream, sp.Auth = "s", "http://127.0.0.1:9", spec.Auth{Type: "bearer", Secret: "plain"}
	e.proxy(sp)
	spx := e.cat.Load().Proxy("s")
	if spx.ForRequest(apply(t, spx)) != spx {
		t.Error("a static proxy got a view")
	}
}

// TestRotationPersistedAndKept: a refresh token the provider rotates is
// stored as the next version (sealed for that version), the rebuilt
// snapshot keeps the access token (no second fetch), and the next refresh
// uses the stored refresh token; a persist against a moved version fails.
func TestRotationPersistedAndKept(t *testing.T) {
	e := newEnv(t)
	p := newProvider(t)
	p.rotate = true
	e.secret("g", map[string]string{"client_id": "id-1", "client_secret": "client-secret-1", "refresh_token": "refresh-token-001"})
	e.proxy(oauthProxy("g", "g", p.URL, "oauth2_refresh_token"))
	apply(t, e.cat.Load().Proxy("g"))
	sec, err := e.st.GetSecret(context.Background(), "g")
	if err != nil || sec.Version != 2 {
		t.Fatalf("secret version %d (%v), want 2", sec.Version, err)
	}
	e.reload() // the rebuild persistRotation also starts
	if m := e.cat.SecretMaterial("g"); m == nil || m.Fields["refresh_token"] != "refresh-token-002" || m.Version != 2 {
		t.Fatalf("stored material %+v", m)
	}
	px := e.cat.Load().Proxy("g")
	apply(t, px)
	if p.count() != 1 {
		t.Errorf("the rebuilt snapshot fetched again: %d requests", p.count())
	}
	if px.Inject.SecretVersion() != 2 {
		t.Errorf("secret version in use %d", px.Inject.SecretVersion())
	}
	if _, err := e.cat.persistRotation(context.Background(), "g", 1, map[string]string{"client_id": "x", "client_secret": "y", "refresh_token": "z"}); err == nil {
		t.Error("a persist against an old version succeeded")
	}
}
