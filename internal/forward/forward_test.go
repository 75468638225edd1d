package forward_test

// End-to-end tests of forward-proxy mode (SPEC §3.7): a whole node
// (server.Run) with --forward-listen, real TLS upstreams, and clients that
// reach them through keyhole as an HTTPS proxy — Go's http.Transport and
// curl — trusting keyhole's CA as exported by the admin API.
//
// The upstreams' certificates come from a test CA that TestMain writes to
// SSL_CERT_FILE before anything loads the system roots, so keyhole's
// upstream transport trusts them as it would a public CA. Upstreams are
// named "localhost" (a DNS name that resolves everywhere) and 127.0.0.1
// (an IP address leaf), since a test cannot make keyhole resolve other names.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/server"
)

// upstreamCert is the TLS certificate of every test upstream (localhost,
// 127.0.0.1), signed by a test CA that SSL_CERT_FILE points at.
var upstreamCert tls.Certificate

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyhole-forward-test")
	if err != nil {
		panic(err)
	}
	caPEM, cert, err := testPKI()
	if err != nil {
		panic(err)
	}
	upstreamCert = cert
	f := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(f, caPEM, 0o644); err != nil {
		panic(err)
	}
	os.Setenv("SSL_CERT_FILE", f)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testPKI makes a CA and a leaf for localhost and 127.0.0.1.
func testPKI() ([]byte, tls.Certificate, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// upstream is a TLS (or plain) test API that records what it receives.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	// release lets /v1/sse send its second event.
	release chan struct{}
}

func newUpstream(t *testing.T, useTLS bool) *upstream {
	u := &upstream{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery, "method": r.Method})
	})
	mux.HandleFunc("/v1/leak", func(w http.ResponseWriter, r *http.Request) {
		// An upstream that echoes the credential it was sent (a debug
		// endpoint, an error page): keyhole must scrub it.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		json.NewEncoder(w).Encode(map[string]string{"authorization": r.Header.Get("Authorization")})
	})
	mux.HandleFunc("/v1/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "data: two\n\n")
	})
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	if useTLS {
		u.TLS = &tls.Config{Certificates: []tls.Certificate{upstreamCert}}
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) port() string {
	_, p, _ := net.SplitHostPort(u.Listener.Addr().String())
	return p
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.seen...)
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	rs := u.requests()
	if len(rs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return rs[len(rs)-1]
}

// node is a running keyhole node with --forward-listen.
type node struct {
	t                 *testing.T
	gw, adm, fwd      string
	adminToken        string
	stderr            bytes.Buffer
	cancel            context.CancelFunc
	done              chan error
	canary            string
	api, other, plain *upstream
	tokA, tokB        string
	caPEM             []byte
	caPool            *x509.CertPool
	stderrLock        sync.Mutex
}

// freeAddrs picks n distinct free loopback ports (all held open while
// picking, so none is picked twice).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

type lockedBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startNode runs a node and configures it: a canary secret, proxies
// "api" (https://localhost:A, no base path), "based" (https://127.0.0.1:A/base),
// "other" (https://127.0.0.1:B) and "plain" (http://127.0.0.1:C); agent
// "bot" with tokA (api, based, plain) and tokB (api only).
func startNode(t *testing.T) *node {
	n := &node{t: t, adminToken: "bootstrap-admin-token-" + strings.Repeat("x", 24)}
	key := make([]byte, 32)
	rand.Read(key)
	t.Setenv("KEYHOLE_MASTER_KEY", base64.StdEncoding.EncodeToString(key))
	t.Setenv("KEYHOLE_ADMIN_TOKEN", n.adminToken)
	addrs := freeAddrs(t, 3)
	n.gw, n.adm, n.fwd = addrs[0], addrs[1], addrs[2]
	dir := t.TempDir()
	cfg := server.Config{Listen: n.gw, AdminListen: n.adm, ForwardListen: n.fwd,
		Store: "sqlite://" + filepath.Join(dir, "keyhole.db"), AllowCIDRs: []string{"127.0.0.0/8"},
		AuditDurability: "sync", AuditFailure: "closed", LogLevel: "debug", LogFormat: "text",
		SQLiteSync: "NORMAL", ShutdownTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	var outMu sync.Mutex
	var stdout bytes.Buffer
	go func() {
		n.done <- server.Run(ctx, cfg, lockedBuf{&outMu, &stdout}, lockedBuf{&n.stderrLock, &n.stderr})
	}()
	t.Cleanup(func() {
		n.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("Run returned %v on shutdown; want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the node did not shut down within 30 s")
		}
		if t.Failed() {
			n.stderrLock.Lock()
			s := n.stderr.String()
			n.stderrLock.Unlock()
			if len(s) > 16<<10 {
				s = s[len(s)-16<<10:]
			}
			t.Logf("node stderr:\n%s", s)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := n.admin("GET", "/api/v1/ca", nil)
		if code == http.StatusOK {
			var v struct {
				Certificate string `json:"certificate"`
			}
			json.Unmarshal(body, &v)
			n.caPEM = []byte(v.Certificate)
			break
		}
		select {
		case err := <-n.done:
			t.Fatalf("the node stopped: %v\n%s", err, n.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/v1/ca did not answer 200 within 20 s (last %d %s)", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.caPool = x509.NewCertPool()
	if !n.caPool.AppendCertsFromPEM(n.caPEM) {
		t.Fatalf("GET /api/v1/ca: the certificate is not PEM: %q", n.caPEM)
	}
	// The summary is printed once every listener serves.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		outMu.Lock()
		out := stdout.String()
		outMu.Unlock()
		if strings.Contains(out, "forward proxy:") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the start-up summary does not mention the forward proxy:\n%s", out)
			break
		}
	}

	n.api, n.other, n.plain = newUpstream(t, true), newUpstream(t, true), newUpstream(t, false)
	n.canary = "sk_canary_" + strings.Repeat("q", 8) + fmt.Sprint(time.Now().UnixNano())
	n.mustAdmin(201, "POST", "/api/v1/secrets", map[string]any{"name": "up-key", "value": n.canary})
	rules := []map[string]any{
		{"name": "no-admin", "effect": "deny", "paths": []string{"/v1/admin/**"}},
		{"name": "read", "effect": "allow", "methods": []string{"GET"}, "paths": []string{"/v1/**"}},
		{"name": "echo", "effect": "allow", "methods": []string{"POST"}, "paths": []string{"/v1/echo"}},
	}
	proxy := func(name, upstream string, rules []map[string]any) {
		n.mustAdmin(201, "POST", "/api/v1/proxies", map[string]any{"name": name, "upstream": upstream,
			"auth": map[string]any{"type": "bearer", "secret": "up-key"}, "rules": rules})
	}
	proxy("api", "https://localhost:"+n.api.port(), rules)
	proxy("based", "https://127.0.0.1:"+n.api.port()+"/base", []map[string]any{{"name": "all", "effect": "allow", "paths": []string{"/**"}}})
	proxy("other", "https://127.0.0.1:"+n.other.port(), []map[string]any{{"name": "all", "effect": "allow", "paths": []string{"/**"}}})
	proxy("plain", "http://127.0.0.1:"+n.plain.port(), []map[string]any{{"name": "all", "effect": "allow", "paths": []string{"/**"}}})
	n.mustAdmin(201, "POST", "/api/v1/agents", map[string]any{"name": "bot"})
	n.tokA = n.issue("api", "based", "plain")
	n.tokB = n.issue("api")
	return n
}

func (n *node) issue(proxies ...string) string {
	var v struct {
		Token string `json:"token"`
	}
	json.Unmarshal(n.mustAdmin(201, "POST", "/api/v1/agents/bot/tokens", map[string]any{"proxies": proxies}), &v)
	return v.Token
}

func (n *node) admin(method, path string, body any) (int, []byte) {
	return n.adminAs(n.adminToken, method, path, body)
}

func (n *node) adminAs(tok, method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+n.adm+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (n *node) mustAdmin(want int, method, path string, body any) []byte {
	n.t.Helper()
	code, b := n.admin(method, path, body)
	if code != want {
		n.t.Fatalf("%s %s: %d %s; want %d", method, path, code, b, want)
	}
	return b
}

// client is a Go HTTP client whose proxy is keyhole's forward listener,
// with the token as the proxy password, trusting keyhole's CA only.
func (n *node) client(tok string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: n.fwd}
	if tok != "" {
		pu.User = url.UserPassword("kh", tok)
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy:             http.ProxyURL(pu),
		TLSClientConfig:   &tls.Config{RootCAs: n.caPool},
		ForceAttemptHTTP2: true,
	}}
}

type logRecord struct {
	ID       string `json:"id"`
	Proxy    string `json:"proxy"`
	Agent    string `json:"agent"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Rule     string `json:"rule"`
	Status   int    `json:"status"`
}

func (n *node) record(id string) logRecord {
	n.t.Helper()
	var r logRecord
	json.Unmarshal(n.mustAdmin(200, "GET", "/api/v1/logs/"+id, nil), &r)
	return r
}

func (n *node) records() []logRecord {
	n.t.Helper()
	var v struct {
		Records []logRecord `json:"records"`
	}
	json.Unmarshal(n.mustAdmin(200, "GET", "/api/v1/logs?limit=1000", nil), &v)
	return v.Records
}

// connect sends a raw CONNECT and returns the response and the connection.
func (n *node) connect(t *testing.T, target, proxyAuth string) (*http.Response, []byte, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", n.fwd, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if proxyAuth != "" {
		req += "Proxy-Authorization: " + proxyAuth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	var body []byte
	if res.StatusCode != http.StatusOK {
		body, _ = io.ReadAll(res.Body)
	}
	return res, body, c
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not keyhole's error envelope: %q", body)
	}
	return e.Error.Code
}

func TestForwardProxy(t *testing.T) {
	n := startNode(t)
	apiURL := "https://localhost:" + n.api.port()

	t.Run("allowed call injects the credential and never forwards the token", func(t *testing.T) {
		res, err := n.client(n.tokA).Get(apiURL + "/v1/customers?limit=3")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d %s; want 200", res.StatusCode, body)
		}
		if res.Proto != "HTTP/1.1" {
			t.Errorf("inside the tunnel the protocol is %s; want HTTP/1.1 (documented)", res.Proto)
		}
		if !bytes.Contains(body, []byte(`"path":"/v1/customers"`)) || !bytes.Contains(body, []byte(`"query":"limit=3"`)) {
			t.Errorf("body %s; want the upstream's echo of /v1/customers?limit=3", body)
		}
		up := n.api.last(t)
		if got := up.Header.Get("Authorization"); got != "Bearer "+n.canary {
			t.Errorf("upstream Authorization %q; want the injected credential", got)
		}
		for k, vs := range up.Header {
			for _, v := range vs {
				if strings.Contains(v, "kh_") {
					t.Errorf("the upstream received the agent token in %s", k)
				}
			}
		}
		if up.Header.Get("Proxy-Authorization") != "" {
			t.Error("the upstream received Proxy-Authorization")
		}
		rid := res.Header.Get("X-Keyhole-Request-Id")
		if rid == "" || up.Header.Get("X-Keyhole-Request-Id") != rid {
			t.Fatalf("X-Keyhole-Request-Id %q to the agent, %q to the upstream; want the same id", rid, up.Header.Get("X-Keyhole-Request-Id"))
		}
		rec := n.record(rid)
		if rec.Proxy != "api" || rec.Path != "/v1/customers" || rec.Decision != "allow" || rec.Status != 200 || rec.Agent != "bot" || rec.Method != "GET" {
			t.Errorf("audit record %+v; want proxy api, GET /v1/customers, allow, 200, agent bot", rec)
		}
	})

	t.Run("the secret never reaches the client", func(t *testing.T) {
		res, err := n.client(n.tokA).Get(apiURL + "/v1/leak")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if bytes.Contains(body, []byte(n.canary)) || strings.Contains(res.Header.Get("X-Echo"), n.canary) {
			t.Fatalf("the canary secret reached the client: %s / %q", body, res.Header.Get("X-Echo"))
		}
		if !bytes.Contains(body, []byte("[REDACTED]")) {
			t.Errorf("body %s; want the echoed credential replaced with [REDACTED]", body)
		}
	})

	t.Run("rules apply inside the tunnel", func(t *testing.T) {
		res, err := n.client(n.tokA).Get(apiURL + "/v1/admin/users")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 403 || errCode(t, body) != "denied_by_rule" {
			t.Errorf("GET /v1/admin/users: %d %s; want 403 denied_by_rule", res.StatusCode, body)
		}
		rec := n.record(res.Header.Get("X-Keyhole-Request-Id"))
		if rec.Proxy != "api" || rec.Reason != "denied_by_rule:no-admin" || rec.Decision != "deny" {
			t.Errorf("audit record %+v; want proxy api, deny, denied_by_rule:no-admin", rec)
		}
		res, err = n.client(n.tokA).Post(apiURL+"/v1/other", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 403 || errCode(t, body) != "no_rule_allows" {
			t.Errorf("POST /v1/other: %d %s; want 403 no_rule_allows", res.StatusCode, body)
		}
		// The canonical-path check runs before the rules (SPEC §3.4).
		req, _ := http.NewRequest("GET", apiURL+"/v1/x/%2e%2e/admin/users", nil)
		req.URL.RawPath = "/v1/x/%2e%2e/admin/users"
		res, err = n.client(n.tokA).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || errCode(t, body) != "bad_path" {
			t.Errorf("an encoded dot segment: %d %s; want 400 bad_path", res.StatusCode, body)
		}
	})

	t.Run("server-sent events stream through", func(t *testing.T) {
		res, err := n.client(n.tokA).Get(apiURL + "/v1/sse")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		br := bufio.NewReader(res.Body)
		got := make(chan string, 1)
		go func() {
			line, _ := br.ReadString('\n')
			got <- line
		}()
		select {
		case line := <-got:
			if line != "data: one\n" {
				t.Fatalf("first line %q; want the first event", line)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the first event did not arrive while the upstream held the stream open")
		}
		close(n.api.release)
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "data: two") {
			t.Errorf("rest of the stream %q; want the second event", rest)
		}
	})

	t.Run("a proxy with a base path gets the paths under it", func(t *testing.T) {
		res, err := n.client(n.tokA).Get("https://127.0.0.1:" + n.api.port() + "/base/v1/items")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n.api.last(t).URL.Path != "/base/v1/items" {
			t.Fatalf("status %d, upstream path %q; want 200 and /base/v1/items", res.StatusCode, n.api.last(t).URL.Path)
		}
		rec := n.record(res.Header.Get("X-Keyhole-Request-Id"))
		if rec.Proxy != "based" || rec.Path != "/v1/items" {
			t.Errorf("audit record %+v; want proxy based with path /v1/items (relative to the base path)", rec)
		}
		res, err = n.client(n.tokA).Get("https://127.0.0.1:" + n.api.port() + "/elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 404 || errCode(t, body) != "unknown_proxy" {
			t.Errorf("a path outside the base path: %d %s; want 404 unknown_proxy", res.StatusCode, body)
		}
	})

	t.Run("a request naming another host inside the tunnel is misdirected", func(t *testing.T) {
		req, _ := http.NewRequest("GET", apiURL+"/v1/x", nil)
		req.Host = "evil.example"
		res, err := n.client(n.tokA).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusMisdirectedRequest || errCode(t, body) != "misdirected_request" {
			t.Errorf("%d %s; want 421 misdirected_request", res.StatusCode, body)
		}
	})

	t.Run("the framing guard runs inside the tunnel", func(t *testing.T) {
		res, body, c := n.connect(t, "localhost:"+n.api.port(), basic("kh", n.tokA))
		if res.StatusCode != 200 {
			t.Fatalf("CONNECT: %d %s", res.StatusCode, body)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: n.caPool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake with keyhole's leaf: %v", err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			t.Errorf("ALPN negotiated %q; want http/1.1", p)
		}
		before := len(n.api.requests())
		io.WriteString(tc, "POST /v1/echo HTTP/1.1\r\nHost: localhost:"+n.api.port()+"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		r, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != 400 || errCode(t, b) != "conflicting_framing" {
			t.Errorf("Content-Length with Transfer-Encoding inside a tunnel: %d %s; want 400 conflicting_framing", r.StatusCode, b)
		}
		if len(n.api.requests()) != before {
			t.Error("the smuggling attempt reached the upstream")
		}
	})

	t.Run("a token inside the tunnel does not change who the agent is", func(t *testing.T) {
		req, _ := http.NewRequest("GET", apiURL+"/v1/who", nil)
		req.Header.Set("Authorization", "Bearer "+n.tokB)
		req.Header.Set("X-Keyhole-Token", n.tokB)
		res, err := n.client(n.tokA).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		up := n.api.last(t)
		if up.Header.Get("Authorization") != "Bearer "+n.canary || up.Header.Get("X-Keyhole-Token") != "" {
			t.Errorf("upstream headers %v; want the injected credential and no keyhole token", up.Header)
		}
		var rec struct {
			TokenID string `json:"token_id"`
		}
		json.Unmarshal(n.mustAdmin(200, "GET", "/api/v1/logs/"+res.Header.Get("X-Keyhole-Request-Id"), nil), &rec)
		var first struct {
			TokenID string `json:"token_id"`
		}
		res2, _ := n.client(n.tokA).Get(apiURL + "/v1/who")
		io.Copy(io.Discard, res2.Body)
		res2.Body.Close()
		json.Unmarshal(n.mustAdmin(200, "GET", "/api/v1/logs/"+res2.Header.Get("X-Keyhole-Request-Id"), nil), &first)
		if rec.TokenID == "" || rec.TokenID != first.TokenID {
			t.Errorf("the record's token is %q; want the tunnel's (%q)", rec.TokenID, first.TokenID)
		}
	})

	t.Run("407 without credentials", func(t *testing.T) {
		for _, tc := range []struct {
			name, auth, code string
		}{
			{"none", "", "no_token"},
			{"bad token", basic("kh", "kh_"+strings.Repeat("A", 46)), "bad_token"},
			{"not a keyhole token", basic("kh", "hunter2"), "bad_token"},
			{"bearer with a bad token", "Bearer kh_nope", "bad_token"},
		} {
			res, body, _ := n.connect(t, "localhost:"+n.api.port(), tc.auth)
			if res.StatusCode != http.StatusProxyAuthRequired {
				t.Errorf("%s: %d %s; want 407", tc.name, res.StatusCode, body)
				continue
			}
			if got := res.Header.Get("Proxy-Authenticate"); got != `Basic realm="keyhole"` {
				t.Errorf("%s: Proxy-Authenticate %q", tc.name, got)
			}
			if errCode(t, body) != tc.code {
				t.Errorf("%s: %s; want code %s", tc.name, body, tc.code)
			}
			if bytes.Contains(body, []byte("hunter2")) {
				t.Errorf("%s: the response repeats the credential", tc.name)
			}
			rec := n.record(res.Header.Get("X-Keyhole-Request-Id"))
			if rec.Status != 407 || rec.Reason != tc.code || rec.Method != "CONNECT" {
				t.Errorf("%s: audit record %+v; want CONNECT 407 %s", tc.name, rec, tc.code)
			}
		}
		// Go's client: the error names the status.
		_, err := n.client("").Get(apiURL + "/v1/x")
		if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Errorf("a client without credentials: %v; want Proxy Authentication Required", err)
		}
	})

	t.Run("the token may be a Bearer value or the Basic user name", func(t *testing.T) {
		for _, auth := range []string{"Bearer " + n.tokA, basic(n.tokA, "")} {
			res, body, _ := n.connect(t, "localhost:"+n.api.port(), auth)
			if res.StatusCode != 200 {
				t.Errorf("%.12s…: %d %s; want 200", auth, res.StatusCode, body)
			}
		}
	})

	t.Run("403 for hosts outside the token's scope: no blind tunnels", func(t *testing.T) {
		// A listener that must never see a connection.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		for _, tc := range []struct {
			name, target, tok, reason, proxy string
		}{
			{"a host no proxy names", l.Addr().String(), n.tokA, "no_proxy_for_host", ""},
			{"a public host", "example.com:443", n.tokA, "no_proxy_for_host", ""},
			{"the right host on another port", "localhost:1", n.tokA, "no_proxy_for_host", ""},
			{"a proxy's host outside the scope", "127.0.0.1:" + n.other.port(), n.tokA, "not_in_scope", "other"},
			{"a host whose proxies are all outside the scope", "127.0.0.1:" + n.api.port(), n.tokB, "not_in_scope", "based"},
		} {
			res, body, _ := n.connect(t, tc.target, basic("kh", tc.tok))
			if res.StatusCode != 403 {
				t.Errorf("%s: %d %s; want 403", tc.name, res.StatusCode, body)
				continue
			}
			rec := n.record(res.Header.Get("X-Keyhole-Request-Id"))
			if rec.Reason != tc.reason || rec.Decision != "deny" || rec.Proxy != tc.proxy || rec.Path != tc.target || rec.Agent != "bot" {
				t.Errorf("%s: audit record %+v; want deny %s, proxy %q, path %s", tc.name, rec, tc.reason, tc.proxy, tc.target)
			}
		}
		select {
		case <-accepted:
			t.Error("keyhole connected to a host that no proxy in scope names")
		case <-time.After(200 * time.Millisecond):
		}
		if rs := n.other.requests(); len(rs) != 0 {
			t.Errorf("the out-of-scope upstream received %d requests", len(rs))
		}
		// The Go client sees the refusal as an error of the CONNECT.
		if _, err := n.client(n.tokB).Get("https://127.0.0.1:" + n.other.port() + "/x"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("Go client to an out-of-scope host: %v; want a 403 Forbidden CONNECT", err)
		}
	})

	t.Run("an allowed CONNECT is recorded", func(t *testing.T) {
		res, body, _ := n.connect(t, "localhost:"+n.api.port(), basic("kh", n.tokB))
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, body)
		}
		rec := n.record(res.Header.Get("X-Keyhole-Request-Id"))
		if rec.Method != "CONNECT" || rec.Decision != "allow" || rec.Reason != "tunnel_opened" || rec.Proxy != "api" || rec.Status != 200 {
			t.Errorf("audit record %+v; want CONNECT allow tunnel_opened proxy api 200", rec)
		}
	})

	t.Run("plain-HTTP forward requests go through the pipeline", func(t *testing.T) {
		plainURL := "http://127.0.0.1:" + n.plain.port()
		res, err := n.client(n.tokA).Get(plainURL + "/v1/thing?a=1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d; want 200", res.StatusCode)
		}
		up := n.plain.last(t)
		if up.Header.Get("Authorization") != "Bearer "+n.canary || up.URL.RawQuery != "a=1" || up.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("upstream saw Authorization %q, query %q, Proxy-Authorization %q", up.Header.Get("Authorization"), up.URL.RawQuery, up.Header.Get("Proxy-Authorization"))
		}
		rec := n.record(res.Header.Get("X-Keyhole-Request-Id"))
		if rec.Proxy != "plain" || rec.Path != "/v1/thing" || rec.Decision != "allow" {
			t.Errorf("audit record %+v", rec)
		}
		res, err = n.client("").Get(plainURL + "/v1/thing")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 407 || res.Header.Get("Proxy-Authenticate") == "" || errCode(t, body) != "no_token" {
			t.Errorf("without credentials: %d %s; want 407 no_token", res.StatusCode, body)
		}
		res, err = n.client(n.tokB).Get(plainURL + "/v1/thing")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 403 || errCode(t, body) != "not_in_scope" {
			t.Errorf("out of scope: %d %s; want 403 not_in_scope", res.StatusCode, body)
		}
		// An origin-form request is not a forward-proxy request.
		res, err = http.Get("http://" + n.fwd + "/api/v1/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || errCode(t, body) != "bad_target" {
			t.Errorf("origin-form on the forward listener: %d %s; want 400 bad_target", res.StatusCode, body)
		}
	})

	t.Run("revocation reaches an open tunnel", func(t *testing.T) {
		tok := n.issue("api")
		c := n.client(tok)
		res, err := c.Get(apiURL + "/v1/a")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		var rec struct {
			TokenID string `json:"token_id"`
		}
		json.Unmarshal(n.mustAdmin(200, "GET", "/api/v1/logs/"+res.Header.Get("X-Keyhole-Request-Id"), nil), &rec)
		if rec.TokenID == "" {
			t.Fatal("the record has no token_id")
		}
		n.mustAdmin(200, "DELETE", "/api/v1/tokens/"+rec.TokenID, nil)
		// Same client, same keep-alive tunnel.
		res, err = c.Get(apiURL + "/v1/b")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 401 || errCode(t, body) != "token_revoked" {
			t.Errorf("after revocation, inside the open tunnel: %d %s; want 401 token_revoked", res.StatusCode, body)
		}
		// And a new tunnel is refused at the CONNECT.
		resp, body, _ := n.connect(t, "localhost:"+n.api.port(), basic("kh", tok))
		if resp.StatusCode != 407 || errCode(t, body) != "token_revoked" {
			t.Errorf("CONNECT with a revoked token: %d %s; want 407 token_revoked", resp.StatusCode, body)
		}
	})

	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl is not installed")
		}
		dir := t.TempDir()
		ca := filepath.Join(dir, "keyhole-ca.pem")
		os.WriteFile(ca, n.caPEM, 0o644)
		run := func(env []string, args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "15", "--cacert", ca}, args...)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		// --proxy with the token as the password.
		out, err := run(nil, "--proxy", "http://kh:"+n.tokA+"@"+n.fwd, apiURL+"/v1/from-curl?x=1")
		if err != nil || !strings.Contains(out, `"path":"/v1/from-curl"`) {
			t.Fatalf("curl --proxy: %v\n%s", err, out)
		}
		if got := n.api.last(t).Header.Get("Authorization"); got != "Bearer "+n.canary {
			t.Errorf("upstream Authorization %q after curl", got)
		}
		// HTTPS_PROXY from the environment: the agent's command is unchanged.
		out, err = run([]string{"HTTPS_PROXY=http://kh:" + n.tokA + "@" + n.fwd}, apiURL+"/v1/leak")
		if err != nil || strings.Contains(out, n.canary) || !strings.Contains(out, "[REDACTED]") {
			t.Fatalf("curl with HTTPS_PROXY: %v\n%s", err, out)
		}
		// Without the token: curl reports the 407 of the CONNECT.
		out, err = run(nil, "--proxy", "http://"+n.fwd, "-o", "/dev/null", "-w", "%{http_connect}", apiURL+"/v1/x")
		if err == nil || !strings.Contains(out, "407") {
			t.Errorf("curl without the token: %v %s; want a failed CONNECT with 407", err, out)
		}
		// Without trusting keyhole's CA, curl refuses the certificate.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-sS", "--max-time", "15", "--proxy", "http://kh:"+n.tokA+"@"+n.fwd, apiURL+"/v1/x")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SSL_CERT_FILE=/dev/null", "CURL_CA_BUNDLE=/dev/null"}
		if b, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("curl trusted keyhole's leaf without its CA: %s", b)
		}
	})

	t.Run("CA rotation reaches new tunnels", func(t *testing.T) {
		old := n.caPool
		if code, b := n.admin("POST", "/api/v1/ca", nil); code != 409 {
			t.Errorf("POST /api/v1/ca with a CA in place: %d %s; want 409", code, b)
		}
		var v struct {
			Certificate string `json:"certificate"`
			Generation  int    `json:"generation"`
		}
		json.Unmarshal(n.mustAdmin(201, "POST", "/api/v1/ca", map[string]any{"rotate": true}), &v)
		if v.Generation != 2 {
			t.Errorf("rotated CA generation %d; want 2", v.Generation)
		}
		newPool := x509.NewCertPool()
		newPool.AppendCertsFromPEM([]byte(v.Certificate))
		n.caPool = newPool
		defer func() { n.caPool = old }()
		deadline := time.Now().Add(5 * time.Second)
		for {
			res, err := n.client(n.tokA).Get(apiURL + "/v1/rotated")
			if err == nil {
				res.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a client trusting the new CA still fails after 5 s: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		n.caPool = old
		if _, err := n.client(n.tokA).Get(apiURL + "/v1/x"); err == nil {
			t.Error("a client trusting only the old CA still connects after the rotation")
		}
		code, pemBody := n.admin("GET", "/api/v1/ca.pem", nil)
		if code != 200 || string(pemBody) != v.Certificate {
			t.Errorf("GET /api/v1/ca.pem: %d; want the new certificate", code)
		}
	})
}

func TestCAAdminRoles(t *testing.T) {
	n := startNode(t)
	var v struct {
		Token string `json:"token"`
	}
	json.Unmarshal(n.mustAdmin(201, "POST", "/api/v1/admin-tokens", map[string]any{"name": "v", "role": "viewer"}), &v)
	if code, b := n.adminAs(v.Token, "GET", "/api/v1/ca", nil); code != 200 || !bytes.Contains(b, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("viewer GET /api/v1/ca: %d %s; want 200 with the certificate", code, b)
	}
	if code, b := n.adminAs(v.Token, "POST", "/api/v1/ca", map[string]any{"rotate": true}); code != 403 {
		t.Errorf("viewer POST /api/v1/ca: %d %s; want 403", code, b)
	}
	if code, b := n.adminAs(v.Token, "GET", "/api/v1/ca", nil); bytes.Contains(b, []byte("PRIVATE KEY")) || code != 200 {
		t.Errorf("the CA's private key is exposed: %s", b)
	}
	// The agent's token is no admin credential.
	if code, _ := n.adminAs(n.tokA, "GET", "/api/v1/ca", nil); code != 401 {
		t.Errorf("agent token on the admin API: %d; want 401", code)
	}
}
