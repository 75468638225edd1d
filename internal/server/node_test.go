package server

// The in-process node harness: every test in this package starts a real
// keyhole node with Run (SQLite store in a temporary folder, the httpfront
// guard listener, the gateway, the admin API and the audit writer exactly as
// `keyhole serve` wires them), talks to it over TCP as agents and admins do,
// and stops it at cleanup. KEYHOLE_MASTER_KEY and KEYHOLE_ADMIN_TOKEN are set
// with t.Setenv, so these tests do not run in parallel.
//
// Every node also keeps what it was told to watch for: canary secrets (with
// their derived forms), issued tokens, every response keyhole sent back. At
// cleanup it checks that no canary appears in any response or in the node's
// output, that no token appears anywhere but the response that issued it,
// and that no token reached an upstream.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that the node's goroutines may write while a
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testNode is one running node and what the test has planted in it.
type testNode struct {
	t          *testing.T
	dir        string // data folder: keyhole.db and friends
	gw, adm    string // host:port of the gateway and the admin listener
	adminToken string // KEYHOLE_ADMIN_TOKEN
	stdout     syncBuffer
	stderr     syncBuffer
	cancel     context.CancelFunc
	done       chan error
	stopped    bool
	checked    bool
	runErr     error

	mu      sync.Mutex
	secrets []string // canaries and their derived forms: never returned by keyhole
	tokens  []string // issued kh_/kha_ tokens: shown once, never upstream
	seen    []seen   // everything keyhole answered
	ups     []*upstream
}

type seen struct {
	where string
	text  string
	issue bool // the response that issued a token may hold it
}

// agentClient is the agent's HTTP client: no transparent decompression
// (the test sees exactly the bytes keyhole sends) and no redirects followed.
var agentClient = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

// canary is an upstream secret value that holds characters which URL
// escaping changes, so its escaped forms differ from the raw value.
func canary() string { return "sk_canary_" + randString(16) + "+/=&" + randString(6) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startNode runs a node until the test ends. mods adjust the Config.
func startNode(t *testing.T, mods ...func(*Config)) *testNode {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	n := &testNode{t: t, dir: t.TempDir(), adminToken: "bootstrap-" + randString(40)}
	t.Setenv("KEYHOLE_MASTER_KEY", base64.StdEncoding.EncodeToString(key))
	t.Setenv("KEYHOLE_ADMIN_TOKEN", n.adminToken)
	for attempt := 0; ; attempt++ {
		err := n.start(mods)
		if err == nil {
			break
		}
		if attempt < 2 && strings.Contains(err.Error(), "address already in use") {
			continue // a port picked by freeAddr was taken meanwhile
		}
		t.Fatalf("the node did not start: %v\nstdout:\n%s\nstderr:\n%s", err, n.stdout.String(), n.stderr.String())
	}
	t.Cleanup(func() {
		n.stop()
		n.mu.Lock()
		ups := append([]*upstream(nil), n.ups...)
		n.mu.Unlock()
		for _, u := range ups {
			u.Close()
		}
		n.checkLeaks()
		if t.Failed() {
			t.Logf("node stdout:\n%s\nnode stderr (last 16 KiB):\n%s", n.stdout.String(), tail(n.stderr.String(), 16<<10))
		}
	})
	return n
}

func (n *testNode) start(mods []func(*Config)) error {
	n.gw, n.adm = freeAddr(n.t), freeAddr(n.t)
	cfg := Config{
		Listen:          n.gw,
		AdminListen:     n.adm,
		Store:           "sqlite://" + filepath.Join(n.dir, "keyhole.db"),
		AllowCIDRs:      []string{"127.0.0.0/8"},
		AuditDurability: "sync",
		AuditFailure:    "closed",
		LogLevel:        "debug",
		LogFormat:       "text",
		SQLiteSync:      "NORMAL",
		ShutdownTimeout: 5 * time.Second,
	}
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, &n.stdout, &n.stderr) }()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			cancel()
			if err == nil {
				err = errors.New("Run returned nil before serving")
			}
			return err
		default:
		}
		if r, err := c.Get("http://" + n.gw + "/-/health"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				n.cancel, n.done = cancel, done
				return nil
			}
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			return errors.New("GET /-/health did not answer 200 within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart stops the node and starts it again on the same data folder,
// master key and admin token, with mods applied to the fresh Config.
func (n *testNode) restart(mods ...func(*Config)) {
	n.t.Helper()
	n.stop()
	n.stopped = false
	if err := n.start(mods); err != nil {
		n.t.Fatalf("the node did not restart: %v\nstderr:\n%s", err, tail(n.stderr.String(), 8<<10))
	}
}

// stop cancels Run's context and waits for it to return; Run must return
// nil (a graceful shutdown).
func (n *testNode) stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	n.cancel()
	select {
	case n.runErr = <-n.done:
		if n.runErr != nil {
			n.t.Errorf("Run returned %v after its context was cancelled; want nil (graceful shutdown)", n.runErr)
		}
	case <-time.After(30 * time.Second):
		n.t.Errorf("Run did not return within 30 s of its context being cancelled (shutdown timeout is 5 s)")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// plant registers a secret value (string, or object fields) and every form
// derived from it that must never come back from keyhole.
func (n *testNode) plant(value any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch v := value.(type) {
	case string:
		n.secrets = append(n.secrets, forms(v)...)
	case map[string]string:
		for k, f := range v {
			if k == "username" && !strings.HasPrefix(f, "sk_canary_") {
				continue // a username is not secret on its own
			}
			n.secrets = append(n.secrets, forms(f)...)
		}
		if u, p := v["username"], v["password"]; u != "" && p != "" {
			n.secrets = append(n.secrets, b64forms(u+":"+p)...) // what Basic auth sends
		}
	}
}

// forms are a value and what an upstream or a log might turn it into: URL
// query and path escaping, JSON string escaping (with and without HTML
// escaping), and base64 in its four alphabets.
func forms(v string) []string {
	out := []string{v, url.QueryEscape(v), url.PathEscape(v)}
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(v)
	out = append(out, strings.Trim(strings.TrimSpace(b.String()), `"`))
	b.Reset()
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	out = append(out, strings.Trim(strings.TrimSpace(b.String()), `"`))
	return append(out, b64forms(v)...)
}

// b64forms are v in the four base64 alphabets, each also URL-escaped.
func b64forms(v string) []string {
	var out []string
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		s := e.EncodeToString([]byte(v))
		out = append(out, s, url.QueryEscape(s))
	}
	return out
}

func (n *testNode) plantToken(tok string) {
	n.mu.Lock()
	n.tokens = append(n.tokens, tok)
	n.mu.Unlock()
}

func (n *testNode) see(where, text string, issue bool) {
	n.mu.Lock()
	n.seen = append(n.seen, seen{where, text, issue})
	n.mu.Unlock()
}

// checkLeaks runs at cleanup, after the node stopped.
func (n *testNode) checkLeaks() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.checked {
		return
	}
	n.checked = true
	t := n.t
	leaks := 0
	report := func(format string, a ...any) {
		if leaks++; leaks <= 10 {
			t.Errorf(format, a...)
		}
	}
	for _, s := range n.seen {
		for _, sec := range n.secrets {
			if strings.Contains(s.text, sec) {
				report("LEAK: canary secret %q in %s: …%s…", head(sec), s.where, excerpt(s.text, sec))
			}
		}
		for _, tok := range n.tokens {
			if !s.issue && strings.Contains(s.text, tok) {
				report("LEAK: token %s… in %s (only the response that issued it may hold it): …%s…", head(tok), s.where, excerpt(s.text, tok))
			}
		}
		if strings.Contains(s.text, n.adminToken) {
			report("LEAK: KEYHOLE_ADMIN_TOKEN in %s", s.where)
		}
	}
	all := append(append([]string{}, n.tokens...), n.adminToken)
	for _, u := range n.ups {
		for _, r := range u.requests() {
			var hb bytes.Buffer
			r.Header.Write(&hb)
			text := r.RequestURI + "\n" + hb.String() + "\n" + string(r.Body)
			for _, tok := range all {
				if strings.Contains(text, tok) {
					report("LEAK: token %s… reached the upstream in %s %s: …%s…", head(tok), r.Method, r.RequestURI, excerpt(text, tok))
				}
			}
		}
	}
	out := n.stdout.String() + "\n" + n.stderr.String()
	for _, v := range append(append([]string{}, n.secrets...), all...) {
		if strings.Contains(out, v) {
			report("LEAK: %s… in the node's stdout/stderr: …%s…", head(v), excerpt(out, v))
		}
	}
	if leaks > 10 {
		t.Errorf("… and %d more leaks", leaks-10)
	}
}

func head(s string) string { return s[:min(14, len(s))] }

func excerpt(text, needle string) string {
	i := strings.Index(text, needle)
	if i < 0 {
		return ""
	}
	lo, hi := max(0, i-80), min(len(text), i+len(needle)+80)
	return strings.ReplaceAll(text[lo:hi], "\n", "⏎")
}

// resp is a response read to its end.
type resp struct {
	status  int
	proto   string
	hdr     http.Header
	body    []byte
	trailer http.Header
}

func (r *resp) rid() string { return r.hdr.Get("X-Keyhole-Request-Id") }

func (r *resp) obj() map[string]any {
	var m map[string]any
	json.Unmarshal(r.body, &m)
	return m
}

func (r *resp) errCode() string { return str(r.obj(), "error", "code") }

func (r *resp) dump() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d %s\n", r.proto, r.status, http.StatusText(r.status))
	r.hdr.Write(&b)
	b.WriteString("\n")
	b.Write(r.body)
	if len(r.trailer) > 0 {
		b.WriteString("\n")
		r.trailer.Write(&b)
	}
	return b.String()
}

func (r *resp) String() string { return clip(r.dump()) }

func clip(s string) string {
	if len(s) > 800 {
		return s[:800] + "…"
	}
	return s
}

func readResp(res *http.Response) (*resp, error) {
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return &resp{status: res.StatusCode, proto: res.Proto, hdr: res.Header, body: b, trailer: res.Trailer}, err
}

// call sends an agent request through the gateway. tok, when set, goes in
// Authorization: Bearer; hdr are extra name, value pairs.
func (n *testNode) call(method, path, tok, body string, hdr ...string) *resp {
	n.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+n.gw+path, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return n.do(req, "agent "+method+" "+path, method == http.MethodPost && strings.HasPrefix(path, "/-/tokens"))
}

func (n *testNode) do(req *http.Request, where string, issue bool) *resp {
	n.t.Helper()
	res, err := agentClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s: no complete HTTP response: %v", where, err)
	}
	r, err := readResp(res)
	if err != nil {
		n.t.Fatalf("%s: reading the body: %v", where, err)
	}
	n.see(where, r.dump(), issue)
	return r
}

// rawReq builds an HTTP/1.1 request byte for byte: Host, Connection: close,
// the token as Authorization: Bearer (when set), Content-Length when there
// is a body, then the extra name, value pairs.
func rawReq(method, target, tok, body string, hdr ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: keyhole.test\r\nConnection: close\r\n", method, target)
	if tok != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", tok)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	return b.String() + "\r\n" + body
}

// raw writes request to the gateway on a fresh TCP connection and reads one
// response (status 0 if none came). With checkClose it also reports whether
// keyhole closed the connection after answering.
func (n *testNode) raw(request string, checkClose bool) (r *resp, closed bool) {
	n.t.Helper()
	c, err := net.DialTimeout("tcp", n.gw, 5*time.Second)
	if err != nil {
		n.t.Fatalf("dial the gateway: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go io.WriteString(c, request) // keyhole may answer before it has read everything
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	line, _, _ := strings.Cut(request, "\r\n")
	if err != nil {
		return &resp{hdr: http.Header{}, body: []byte("(no HTTP response: " + err.Error() + ")")}, true
	}
	r, _ = readResp(res)
	n.see("agent raw "+clip(line), r.dump(), false)
	if checkClose {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := br.ReadByte()
		var ne net.Error
		closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	return r, closed
}

func (n *testNode) rawResp(request string) *resp {
	n.t.Helper()
	r, _ := n.raw(request, false)
	return r
}

// admin calls /api/v1+path on the admin listener with the bootstrap token.
func (n *testNode) admin(method, path string, body any) *resp {
	n.t.Helper()
	return n.adminAs(n.adminToken, method, path, body)
}

func (n *testNode) adminAs(tok, method, path string, body any) *resp {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			n.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, "http://"+n.adm+"/api/v1"+path, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	issues := method == http.MethodPost && (strings.HasSuffix(path, "/tokens") || path == "/admin-tokens")
	return n.do(req, "admin "+method+" /api/v1"+path, issues)
}

// must calls the admin API and fails the test unless the status is want.
func (n *testNode) must(want int, method, path string, body any) map[string]any {
	n.t.Helper()
	r := n.admin(method, path, body)
	if r.status != want {
		n.t.Fatalf("admin %s /api/v1%s → want %d, got %s", method, path, want, r)
	}
	return r.obj()
}

// secret creates a secret and plants its value.
func (n *testNode) secret(name string, value any) {
	n.t.Helper()
	n.plant(value)
	n.must(http.StatusCreated, "POST", "/secrets", map[string]any{"name": name, "value": value})
}

// proxy creates a proxy from a spec (upstream and name filled in).
func (n *testNode) proxy(name string, up *upstream, spec map[string]any) {
	n.t.Helper()
	n.proxyAt(name, up.URL, spec)
}

// proxyAt creates a proxy whose upstream is the URL u.
func (n *testNode) proxyAt(name, u string, spec map[string]any) {
	n.t.Helper()
	s := map[string]any{"name": name, "upstream": u}
	for k, v := range spec {
		s[k] = v
	}
	if s["rules"] == nil {
		s["rules"] = []any{}
	}
	n.must(http.StatusCreated, "POST", "/proxies", s)
}

func (n *testNode) agent(name string) {
	n.t.Helper()
	n.must(http.StatusCreated, "POST", "/agents", map[string]any{"name": name, "labels": map[string]string{}})
}

// token issues an agent token and plants it.
func (n *testNode) token(agent, ttl string, proxies ...string) (tok, id string) {
	n.t.Helper()
	m := n.must(http.StatusCreated, "POST", "/agents/"+agent+"/tokens", map[string]any{"proxies": proxies, "ttl": ttl, "name": "test"})
	tok, id = str(m, "token"), str(m, "id")
	if !strings.HasPrefix(tok, "kh_") || id == "" {
		n.t.Fatalf("token issue answered %v", m)
	}
	n.plantToken(tok)
	return tok, id
}

// mint mints a child of parent through POST /-/tokens and plants it.
func (n *testNode) mint(parent string, body map[string]any) (tok, id string) {
	n.t.Helper()
	js, _ := json.Marshal(body)
	r := n.call("POST", "/-/tokens", parent, string(js), "Content-Type", "application/json")
	if r.status != http.StatusCreated {
		n.t.Fatalf("POST /-/tokens → want 201, got %s", r)
	}
	tok, id = str(r.obj(), "token"), str(r.obj(), "id")
	n.plantToken(tok)
	return tok, id
}

// fixture: a recording upstream, a string canary secret, a bearer proxy in
// front of the upstream with the given rules, an agent and a token scoped
// to the proxy.
type fixture struct {
	up                   *upstream
	proxy, tok, tokID, s string
}

func (n *testNode) fx(name string, extra map[string]any, rules ...map[string]any) fixture {
	n.t.Helper()
	f := fixture{up: n.upstream(), proxy: name, s: canary()}
	n.secret(name+"-key", f.s)
	spec := map[string]any{"auth": map[string]any{"type": "bearer", "secret": name + "-key"}, "rules": rules}
	if rules == nil {
		spec["rules"] = []any{}
	}
	for k, v := range extra {
		spec[k] = v
	}
	n.proxy(name, f.up, spec)
	n.agent(name + "-bot")
	f.tok, f.tokID = n.token(name+"-bot", "1h", name)
	return f
}

// rule builds a SPEC §5 rule from "METHODS PATHS" ("*" for every method).
func rule(name, effect, shorthand string) map[string]any {
	m := map[string]any{"name": name, "effect": effect}
	methods, paths, _ := strings.Cut(shorthand, " ")
	if methods != "*" {
		m["methods"] = strings.Split(methods, ",")
	}
	m["paths"] = strings.Split(paths, ",")
	return m
}

var allowAll = rule("all", "allow", "* /**")

// record reads GET /api/v1/logs/{id}, failing unless 200.
func (n *testNode) record(id string) map[string]any {
	n.t.Helper()
	if id == "" {
		n.t.Fatalf("a response without X-Keyhole-Request-Id")
	}
	r := n.admin("GET", "/logs/"+url.PathEscape(id), nil)
	if r.status != http.StatusOK {
		n.t.Fatalf("GET /api/v1/logs/%s → want 200, got %s", id, r)
	}
	return r.obj()
}

// logs lists every record matching query, following next_cursor.
func (n *testNode) logs(query string) []map[string]any {
	n.t.Helper()
	var all []map[string]any
	q := query
	for page := 0; page < 100; page++ {
		r := n.admin("GET", "/logs?"+q, nil)
		var l struct {
			Records    []map[string]any `json:"records"`
			NextCursor string           `json:"next_cursor"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &l) != nil {
			n.t.Fatalf("GET /api/v1/logs?%s → %s", q, r)
		}
		all = append(all, l.Records...)
		if l.NextCursor == "" || len(l.Records) == 0 {
			break
		}
		q = query + "&cursor=" + url.QueryEscape(l.NextCursor)
	}
	return all
}

func str(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		o, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = o[k]
	}
	s, _ := v.(string)
	if f, ok := v.(float64); ok {
		s = fmt.Sprint(f)
	}
	return s
}

// wantErr checks the SPEC §3.3 error envelope: status, application/json,
// {"error":{"code","message","request_id"}} with request_id equal to the
// X-Keyhole-Request-Id header, and the code when code != "".
func wantErr(t *testing.T, what string, r *resp, status int, code string) bool {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: want status %d, got %s", what, status, r)
		return false
	}
	e, _ := r.obj()["error"].(map[string]any)
	switch {
	case !strings.HasPrefix(r.hdr.Get("Content-Type"), "application/json"):
		t.Errorf("%s: keyhole's errors are application/json; got %q", what, r.hdr.Get("Content-Type"))
	case e == nil || str(e, "code") == "" || str(e, "message") == "":
		t.Errorf("%s: want {\"error\":{\"code\",\"message\",\"request_id\"}}, got %s", what, clip(string(r.body)))
	case r.rid() == "" || str(e, "request_id") != r.rid():
		t.Errorf("%s: error.request_id %q must equal X-Keyhole-Request-Id %q", what, str(e, "request_id"), r.rid())
	case code != "" && str(e, "code") != code:
		t.Errorf("%s: want code %q, got %q (%s)", what, code, str(e, "code"), str(e, "message"))
	default:
		return true
	}
	return false
}
