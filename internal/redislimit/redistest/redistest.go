// Package redistest gives tests the Redis named by KEYHOLE_TEST_REDIS, a
// key prefix of their own (their keys are deleted when the test ends), and
// a TCP proxy in front of it that a test can cut to make Redis unreachable.
// Without the variable, the test is skipped with a message saying what to
// set.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Env is the variable naming the test server.
const Env = "KEYHOLE_TEST_REDIS"

// Example is a value of Env for a local server.
const Example = "redis://127.0.0.1:6379/0"

// Base returns the server's URL, or skips t.
func Base(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" {
		t.Skip("Redis test skipped: set " + Env + "=" + Example + " (.ci/run starts Redis and sets it)")
	}
	return u
}

// URL returns the server's URL with a key_prefix of t's own; its keys are
// deleted when t ends.
func URL(t testing.TB) string {
	t.Helper()
	return WithPrefix(t, Base(t))
}

// WithPrefix adds a key_prefix of t's own to base (a URL of the test
// server, or of a Proxy in front of it).
func WithPrefix(t testing.TB, base string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "kh-test-" + hex.EncodeToString(b) + ":"
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	q.Set("key_prefix", prefix)
	u.RawQuery = q.Encode()
	t.Cleanup(func() { Delete(t, prefix) })
	return u.String()
}

// Client is a plain client of the test server.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(Base(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// Delete removes every key that starts with prefix.
func Delete(t testing.TB, prefix string) {
	t.Helper()
	c := Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Errorf("scanning %s*: %v", prefix, err)
		return
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

// Proxy is a TCP proxy in front of the test server that can be cut: while
// cut, it closes every connection and refuses new ones (by closing them at
// once), as a dead Redis or a network partition would.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

// NewProxy starts a proxy; it stops when t ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	u, err := url.Parse(Base(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// URL is the proxy's redis:// URL (same database as the test server's).
func (p *Proxy) URL(t testing.TB) string {
	u, _ := url.Parse(Base(t))
	u.Host = p.ln.Addr().String()
	return u.String()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go pipe(c, up)
		go pipe(up, c)
	}
}

func pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}
