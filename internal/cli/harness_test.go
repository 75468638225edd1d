package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/server"
)

// testNode is a real keyhole node (server.Run) on free loopback ports, with
// a fresh SQLite store, master key and bootstrap admin token. Every CLI
// output produced against it is kept and, at cleanup, searched for the
// canaries planted as secret values: no command may ever print one.
type testNode struct {
	t        *testing.T
	admin    string // http://host:port of the admin listener
	gw       string // http://host:port of the gateway
	token    string // bootstrap admin token (KEYHOLE_ADMIN_TOKEN)
	mu       sync.Mutex
	outputs  []string
	canaries []string
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

func canary() string { return "sk_canary_" + randAlnum(24) }

// freeAddr picks a free loopback port by listening on :0 and closing.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode runs a node in-process. It sets KEYHOLE_MASTER_KEY and
// KEYHOLE_ADMIN_TOKEN with t.Setenv, so callers cannot be parallel.
func startNode(t *testing.T) *testNode {
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
		case <-time.After(15 * time.Second):
			t.Errorf("the node did not stop within 15 s")
		}
		n.checkCanaries()
	})
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

// plant registers a secret value that must never appear in any output.
func (n *testNode) plant(v string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.canaries = append(n.canaries, v)
}

func (n *testNode) checkCanaries() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, out := range n.outputs {
		for _, c := range n.canaries {
			if strings.Contains(out, c) {
				n.t.Errorf("a secret value appears in CLI output:\n%s", out)
			}
		}
		if strings.Contains(out, n.token) {
			n.t.Errorf("the bootstrap admin token appears in CLI output:\n%s", out)
		}
	}
}

func (n *testNode) env() map[string]string {
	return map[string]string{"KEYHOLE_ADDR": n.admin, "KEYHOLE_ADMIN_TOKEN": n.token}
}

// result is one CLI run.
type result struct {
	out, err string
	code     int
}

// runCLI runs the CLI as Main does, with the given environment, stdin and
// captured stdout and stderr.
func runCLI(ctx context.Context, env map[string]string, stdin io.Reader, stdout, stderr io.Writer, args ...string) int {
	root := newRoot(func(k string) string { return env[k] })
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return execute(ctx, root)
}

func (n *testNode) runEnv(env map[string]string, stdin string, args ...string) result {
	var out, errb bytes.Buffer
	code := runCLI(context.Background(), env, strings.NewReader(stdin), &out, &errb, args...)
	n.mu.Lock()
	n.outputs = append(n.outputs, out.String()+errb.String())
	n.mu.Unlock()
	return result{out.String(), errb.String(), code}
}

// run runs the CLI against the node and returns its result.
func (n *testNode) run(stdin string, args ...string) result {
	return n.runEnv(n.env(), stdin, args...)
}

// ok runs the CLI and fails the test unless it exits 0.
func (n *testNode) ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := n.run(stdin, args...)
	if r.code != 0 {
		t.Fatalf("keyhole %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// call makes an agent request through the gateway.
func (n *testNode) call(method, path, token string) (int, string) {
	n.t.Helper()
	req, err := http.NewRequest(method, n.gw+path, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// upstream is a recording httptest server.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	auth []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"path":"`+r.URL.Path+`"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) lastAuth() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.auth) == 0 {
		return ""
	}
	return u.auth[len(u.auth)-1]
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
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

// eventually polls f until it holds or d passes.
func eventually(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// devNull opens /dev/null, a character device like a terminal.
func devNull(t *testing.T) *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Skip("no", os.DevNull)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
