// Package forward is keyhole's forward-proxy listener (SPEC §3.7,
// `--forward-listen`): agents set HTTPS_PROXY=http://kh:TOKEN@host:port,
// trust keyhole's CA (`keyhole ca export`) and call upstream APIs by their
// own URLs, with no code change.
//
// A CONNECT host:port is decided by the gateway (gateway.OpenTunnel: 407
// without a valid token in Proxy-Authorization, 403 when no proxy in the
// token's scope has https://host:port as its upstream — keyhole opens no
// blind tunnels). An allowed tunnel is answered 200; keyhole then
// terminates its TLS with a leaf certificate for that host minted from its
// CA (internal/ca; cached per host, 24 hours, ECDSA P-256) and reads the
// HTTP/1.1 requests inside it. Each goes through the gateway's pipeline
// exactly as a path-routed request to the proxy would (gateway.Tunnel), the
// framing guard of internal/httpfront included. Absolute-form plain-HTTP
// requests (HTTP_PROXY) are served the same way for http:// upstreams.
//
// Only HTTP/1.1 is spoken inside a tunnel (ALPN offers http/1.1 alone): the
// framing guard, which refuses request smuggling before net/http parses a
// request, reads HTTP/1.1. Every HTTP client speaks it.
package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhole-gw/keyhole/internal/ca"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/gateway"
	"github.com/keyhole-gw/keyhole/internal/httpfront"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// Store is what the forward proxy reads: the meta table (where the CA
// lives) and the vault's keys (to open the CA's key).
type Store interface {
	ca.Meta
	Keys(ctx context.Context) ([]store.Key, error)
}

// Options configure a Server.
type Options struct {
	Gateway *gateway.Gateway
	Store   Store
	Master  *vault.MasterKey
	Logger  *slog.Logger
	// MaxHeaderBytes bounds a request's header block (default 64 KiB).
	MaxHeaderBytes int
	// Poll is how often the store is asked for a newer CA generation (a
	// rotation made through another node); default 1 s.
	Poll time.Duration
	// HandshakeTimeout bounds a tunnel's TLS handshake; default 10 s.
	HandshakeTimeout time.Duration
}

// Server is the forward-proxy listener.
type Server struct {
	opt    Options
	leaves ca.Leaves
	cur    atomic.Pointer[ca.Authority]

	outer      *http.Server // CONNECT and plain forward requests
	guard      *httpfront.Listener
	inner      *http.Server // requests inside tunnels
	queue      *queue
	innerGuard *httpfront.Listener

	// Connections between their CONNECT's 200 and the end of their TLS
	// handshake, closed at once on shutdown.
	hsMu       sync.Mutex
	hs         map[net.Conn]struct{}
	handshakes sync.WaitGroup
	stopping   bool

	stopPoll  chan struct{}
	pollDone  chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
}

// New builds a server; Serve starts it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = httpfront.DefaultMaxHeaderBytes
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	s := &Server{opt: o, hs: map[net.Conn]struct{}{}, stopPoll: make(chan struct{}), pollDone: make(chan struct{})}
	s.queue = newQueue()
	s.innerGuard = httpfront.NewListener(s.queue, httpfront.Options{MaxHeaderBytes: o.MaxHeaderBytes}).(*httpfront.Listener)
	errLog := slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)
	// DisableGeneralOptionsHandler: "OPTIONS *" is the pipeline's to
	// refuse (SPEC §3.4), not net/http's to answer.
	s.outer = &http.Server{Handler: http.HandlerFunc(s.serveOuter), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: o.MaxHeaderBytes, ErrorLog: errLog, DisableGeneralOptionsHandler: true}
	s.inner = &http.Server{Handler: http.HandlerFunc(serveInner), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: o.MaxHeaderBytes, ErrorLog: errLog, DisableGeneralOptionsHandler: true,
		ConnContext: tunnelContext}
	return s
}

// EnsureCA loads the current CA; when there is none and create is set, it
// creates the first one and returns it (nil when one existed).
func (s *Server) EnsureCA(ctx context.Context, create bool) (*ca.Authority, error) {
	kr, err := s.keyring(ctx)
	if err != nil {
		return nil, err
	}
	a, err := ca.Load(ctx, s.opt.Store, kr, 0)
	if errors.Is(err, ca.ErrNoCA) && create {
		created, err := ca.Create(ctx, s.opt.Store, kr, false, time.Now().UTC())
		if errors.Is(err, store.ErrConflict) || errors.Is(err, ca.ErrExists) {
			// Another node made it at the same moment: use theirs.
			a, err = ca.Load(ctx, s.opt.Store, kr, 0)
			if err == nil {
				s.setCA(a)
			}
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		s.setCA(created)
		return created, nil
	}
	if err != nil {
		return nil, err
	}
	s.setCA(a)
	return nil, nil
}

// CA is the CA in use (nil: none yet).
func (s *Server) CA() *ca.Authority { return s.cur.Load() }

func (s *Server) setCA(a *ca.Authority) {
	if old := s.cur.Swap(a); old != nil && old.Generation != a.Generation {
		s.leaves.Reset()
		s.opt.Logger.Info("forward proxy: using a new CA", "generation", a.Generation, "fingerprint_sha256", a.Fingerprint())
	}
}

func (s *Server) keyring(ctx context.Context) (*vault.Keyring, error) {
	keys, err := s.opt.Store.Keys(ctx)
	if err != nil {
		return nil, err
	}
	return catalog.Keyring(s.opt.Master, keys)
}

// refresh adopts a newer CA generation, if the store has one.
func (s *Server) refresh(ctx context.Context) error {
	from := 0
	if a := s.cur.Load(); a != nil {
		from = a.Generation
	}
	gen, _, err := ca.Latest(ctx, s.opt.Store, from)
	if err != nil || gen == from {
		return err
	}
	kr, err := s.keyring(ctx)
	if err != nil {
		return err
	}
	a, err := ca.Load(ctx, s.opt.Store, kr, from)
	if err != nil || a == nil {
		return err
	}
	s.setCA(a)
	return nil
}

func (s *Server) poll() {
	defer close(s.pollDone)
	t := time.NewTicker(s.opt.Poll)
	defer t.Stop()
	for {
		select {
		case <-s.stopPoll:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.refresh(ctx); err != nil {
				s.opt.Logger.Warn("forward proxy: cannot read the CA from the store", "err", err)
			}
			cancel()
		}
	}
}

// Serve accepts connections on ln until Shutdown or Close. It returns
// http.ErrServerClosed after those.
func (s *Server) Serve(ln net.Listener) error {
	s.startOnce.Do(func() {
		go s.poll()
		go s.inner.Serve(s.innerGuard)
	})
	s.guard = httpfront.NewListener(ln, httpfront.Options{MaxHeaderBytes: s.opt.MaxHeaderBytes}).(*httpfront.Listener)
	return s.outer.Serve(s.guard)
}

// Shutdown stops accepting, lets CONNECT decisions and requests in flight
// (inside tunnels too) finish until ctx is done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.outer.Shutdown(ctx)
	s.stop()
	if e := s.inner.Shutdown(ctx); e != nil && err == nil {
		err = e
	}
	if err != nil {
		s.Close()
	}
	return err
}

// Close closes every connection at once.
func (s *Server) Close() error {
	s.outer.Close()
	s.stop()
	return s.inner.Close()
}

func (s *Server) stop() {
	s.stopOnce.Do(func() {
		s.queue.Close()
		s.hsMu.Lock()
		s.stopping = true
		for c := range s.hs {
			c.Close()
		}
		s.hsMu.Unlock()
		s.handshakes.Wait()
		close(s.stopPoll)
		s.startOnce.Do(func() { close(s.pollDone) }) // never served
		<-s.pollDone
	})
}

// serveOuter answers the forward listener's requests: CONNECT opens a
// tunnel, anything else is a plain forward request (or a refusal).
func (s *Server) serveOuter(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		s.opt.Gateway.ServeForwardHTTP(w, r, s.guard)
		return
	}
	var leaf *tls.Certificate
	t := s.opt.Gateway.OpenTunnel(w, r, func(t *gateway.Tunnel) error {
		a := s.cur.Load()
		if a == nil {
			return &gateway.TunnelError{Status: http.StatusServiceUnavailable, Reason: "no_ca",
				Message: "keyhole's forward proxy has no CA yet; an admin creates it with `keyhole ca init`"}
		}
		c, err := s.leaves.Get(a, t.Host, time.Now())
		if err != nil {
			return &gateway.TunnelError{Status: http.StatusServiceUnavailable, Reason: "tunnel_unavailable",
				Message: "keyhole cannot mint a certificate for this host right now; see the keyhole logs", Err: err}
		}
		leaf = c
		t.Guard = s.innerGuard
		return nil
	})
	if t == nil {
		return
	}
	s.intercept(w, t, leaf)
}

// intercept takes the connection over, answers 200, terminates TLS with
// the host's leaf and hands the connection to the inner server.
func (s *Server) intercept(w http.ResponseWriter, t *gateway.Tunnel, leaf *tls.Certificate) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.opt.Logger.Warn("forward proxy: cannot take the connection over", "request_id", t.ID, "err", err)
		return
	}
	if !s.track(conn) {
		conn.Close() // shutting down
		return
	}
	defer s.untrack(conn)
	// From here on the bytes are TLS, not HTTP/1.1 for the guard to read.
	httpfront.Passthrough(conn)
	conn.SetDeadline(time.Now().Add(s.opt.HandshakeTimeout))
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\nX-Keyhole-Request-Id: "+t.ID+"\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	var raw net.Conn = conn
	if n := brw.Reader.Buffered(); n > 0 {
		// The client did not wait for the 200 before its ClientHello.
		early, _ := brw.Reader.Peek(n)
		raw = &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)}
	}
	tc := tls.Server(raw, &tls.Config{
		Certificates: []tls.Certificate{*leaf},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.HandshakeTimeout)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Typically an agent that does not trust keyhole's CA.
		s.opt.Logger.Info("forward proxy: TLS handshake failed (does the agent trust keyhole's CA? keyhole ca export)",
			"request_id", t.ID, "host", t.Host, "err", err)
		tc.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	if !s.queue.push(&tunnelConn{Conn: tc, addr: &tunnelAddr{Addr: conn.RemoteAddr(), t: t}}) {
		tc.Close() // shutting down
	}
}

func (s *Server) track(c net.Conn) bool {
	s.hsMu.Lock()
	defer s.hsMu.Unlock()
	if s.stopping {
		return false
	}
	s.hs[c] = struct{}{}
	s.handshakes.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.hsMu.Lock()
	delete(s.hs, c)
	s.hsMu.Unlock()
	s.handshakes.Done()
}

type tunnelKey struct{}

// tunnelContext attaches each inner connection's tunnel to its requests.
func tunnelContext(ctx context.Context, c net.Conn) context.Context {
	if a, ok := c.RemoteAddr().(*tunnelAddr); ok {
		return context.WithValue(ctx, tunnelKey{}, a.t)
	}
	return ctx
}

func serveInner(w http.ResponseWriter, r *http.Request) {
	t, _ := r.Context().Value(tunnelKey{}).(*gateway.Tunnel)
	if t == nil {
		http.Error(w, "no tunnel", http.StatusInternalServerError) // cannot happen
		return
	}
	t.ServeHTTP(w, r)
}

// tunnelConn is a tunnel's TLS connection; its RemoteAddr carries the
// tunnel through the framing guard (which wraps the connection) to the
// inner server's ConnContext.
type tunnelConn struct {
	net.Conn
	addr *tunnelAddr
}

func (c *tunnelConn) RemoteAddr() net.Addr { return c.addr }

type tunnelAddr struct {
	net.Addr
	t *gateway.Tunnel
}

// prefixConn reads r (early bytes, then the connection) first.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// queue is the inner server's listener: intercept pushes connections.
type queue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newQueue() *queue { return &queue{ch: make(chan net.Conn), done: make(chan struct{})} }

func (q *queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *queue) push(c net.Conn) bool {
	select {
	case <-q.done:
		return false
	default:
	}
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *queue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *queue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "tunnel" }
func (queueAddr) String() string  { return "keyhole-tunnels" }

// Describe is the listener's line of the node's start-up summary.
func Describe(addr net.Addr) string {
	return fmt.Sprintf("http://%s   (agents: HTTPS_PROXY=http://kh:$KEYHOLE_TOKEN@%s; trust: keyhole ca export)", addr, addr)
}
