package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
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

// testNode is a real keyhole node (server.Run) on loopback ports with a
// fresh SQLite store, as internal/cli's harness starts one.
type testNode struct {
	t     *testing.T
	admin string // http://host:port of the admin listener
	gw    string // http://host:port of the gateway
	token string // bootstrap admin token
	stop  func() // stops the node (and waits for server.Run to return)
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

// startNode runs a node in-process (it sets environment variables, so
// callers cannot be parallel).
func startNode(t *testing.T, mods ...func(*server.Config)) *testNode {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	n := &testNode{t: t, token: randAlnum(40)}
	t.Setenv("KEYHOLE_MASTER_KEY", base64.StdEncoding.EncodeToString(key))
	t.Setenv("KEYHOLE_ADMIN_TOKEN", n.token)
	gw, adm := freeAddr(t), freeAddr(t)
	n.gw, n.admin = "http://"+gw, "http://"+adm
	cfg := server.Config{
		Listen:          gw,
		AdminListen:     adm,
		Store:           "sqlite://" + t.TempDir() + "/k.db",
		AllowCIDRs:      []string{"127.0.0.0/8"},
		AuditDurability: "sync",
		AuditFailure:    "closed",
		LogLevel:        "error",
		LogFormat:       "text",
		SQLiteSync:      "NORMAL",
		ShutdownTimeout: 5 * time.Second,
	}
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, io.Discard, io.Discard) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
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
	}
	t.Cleanup(n.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("the node exited while starting: %v", err)
		default:
		}
		resp, err := http.Get(n.gw + "/-/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not answer /-/health within 20 s (last error %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// api calls the admin API as tok and decodes the JSON answer.
func (n *testNode) api(tok, method, path string, body any) (int, map[string]any) {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.admin+"/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// must calls the admin API as the bootstrap admin and wants status.
func (n *testNode) must(status int, method, path string, body any) map[string]any {
	n.t.Helper()
	got, m := n.api(n.token, method, path, body)
	if got != status {
		n.t.Fatalf("%s %s → %d %v, want %d", method, path, got, m, status)
	}
	return m
}

// setup creates a secret, a proxy "stripe" in front of a recording
// upstream (capture as given), an agent and a token; it returns the token.
func (n *testNode) setup(proxy string, capture map[string]any) string {
	n.t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/fail") {
			w.WriteHeader(502)
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	n.t.Cleanup(up.Close)
	n.must(201, "POST", "/secrets", map[string]any{"name": proxy + "-key", "value": "sk_test_" + randAlnum(32)})
	p := map[string]any{"name": proxy, "upstream": up.URL, "auth": map[string]any{"type": "bearer", "secret": proxy + "-key"},
		"rules": []any{map[string]any{"name": "all", "effect": "allow", "methods": []string{"GET", "POST"}, "paths": []string{"/v1/**"}}}}
	if capture != nil {
		p["capture"] = capture
	}
	n.must(201, "POST", "/proxies", p)
	if code, _ := n.api(n.token, "GET", "/agents/bot", nil); code == 404 {
		n.must(201, "POST", "/agents", map[string]any{"name": "bot"})
	}
	tok, _ := n.must(201, "POST", "/agents/bot/tokens", map[string]any{"proxies": []string{proxy}, "ttl": "1h"})["token"].(string)
	return tok
}

// viewer issues an admin token with the role.
func (n *testNode) adminToken(role string) string {
	n.t.Helper()
	tok, _ := n.must(201, "POST", "/admin-tokens", map[string]any{"name": role + "-" + randAlnum(6), "role": role, "ttl": "1h"})["token"].(string)
	return tok
}

// call makes an agent request; it returns the status and the request id.
func (n *testNode) call(method, path, tok string, hdr http.Header, body string) (int, string) {
	req, err := http.NewRequest(method, n.gw+path, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Keyhole-Request-Id")
}

// sseEvent is one server-sent event; an id-only block (the stream's start
// position, a heartbeat's) has empty data.
type sseEvent struct {
	kind, id, data string
	rec            map[string]any
}

// seq is the chain position of the event: the last link of the record
// it carries.
func (e sseEvent) seq() int64 {
	links, _ := e.rec["chain"].([]any)
	if len(links) == 0 {
		return -1
	}
	l, _ := links[len(links)-1].(map[string]any)
	f, _ := l["seq"].(float64)
	return int64(f)
}

func (e sseEvent) str(k string) string { s, _ := e.rec[k].(string); return s }

// sseConn is a connected GET /logs/stream.
type sseConn struct {
	resp   *http.Response
	cancel context.CancelFunc
	mu     sync.Mutex
	events []sseEvent
	err    error
	done   chan struct{}
}

func (n *testNode) stream(tok, query, lastID string) (*sseConn, int) {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", n.admin+"/api/v1/logs/stream?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		n.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		n.t.Errorf("Content-Type %q", ct)
	}
	s := &sseConn{resp: resp, cancel: cancel, done: make(chan struct{})}
	n.t.Cleanup(s.close)
	go s.read()
	return s, 200
}

func (s *sseConn) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

func (s *sseConn) read() {
	defer close(s.done)
	br := bufio.NewReaderSize(s.resp.Body, 1<<20)
	var ev sseEvent
	seen := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if seen {
				if ev.data != "" {
					if err := json.Unmarshal([]byte(ev.data), &ev.rec); err != nil {
						s.mu.Lock()
						s.err = errors.New("an event's data is not JSON: " + ev.data)
						s.mu.Unlock()
						return
					}
				}
				s.mu.Lock()
				s.events = append(s.events, ev)
				s.mu.Unlock()
			}
			ev, seen = sseEvent{}, false
		case strings.HasPrefix(line, ":"):
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			seen = true
			switch k {
			case "event":
				ev.kind = v
			case "id":
				ev.id = v
			case "data":
				ev.data += v
			}
		}
	}
}

// records returns the events that carry a record so far.
func (s *sseConn) records() []sseEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sseEvent
	for _, e := range s.events {
		if e.data != "" {
			out = append(out, e)
		}
	}
	return out
}

// first is the first block: the start position.
func (s *sseConn) first(t *testing.T) sseEvent {
	t.Helper()
	if !eventually(func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.events) > 0 }) {
		t.Fatal("the stream sent no start position")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[0]
}

// waitFor waits until the record events satisfy f.
func (s *sseConn) waitFor(t *testing.T, what string, f func([]sseEvent) bool) []sseEvent {
	t.Helper()
	var got []sseEvent
	if !eventually(func() bool { got = s.records(); return f(got) }) {
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		t.Fatalf("the stream did not deliver %s: %d record events (read error %v)", what, len(got), err)
	}
	return got
}

// eventually polls f for up to 30 s (a deadline for a hang, not a timing
// assertion).
func eventually(f func() bool) bool {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
