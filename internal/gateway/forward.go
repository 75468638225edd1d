package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/httpfront"
	"github.com/keyhole-gw/keyhole/internal/inject"
	"github.com/keyhole-gw/keyhole/internal/netguard"
	"github.com/keyhole-gw/keyhole/internal/rules"
)

// forward is step 8: the reverse proxy, then the end of the record.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, x *exchange, body *rules.Body) {
	p := x.proxy
	// The end leaves decision, reason and rule empty unless they change
	// (an upstream failure): the start's stand, and the store then has no
	// index to update but the status.
	x.end = audit.End{}
	x.mcp = g.mcpListing(r, x, body) // MCP upstreams: a tools/list answer to filter (mcp.go)
	capMax := int64(0)
	if p.Spec.Capture.RequestBody || p.Spec.Capture.ResponseBody {
		capMax = p.Spec.Capture.MaxBytes + int64(max(p.Redact.MaxSecretLen(), maxTokenLen))
	}
	if hasBody(r) {
		// Full duplex: net/http otherwise reads what is left of the
		// request body and closes it when the response's header is
		// written — while the transport may still be reading that body
		// (its last read, which checks for EOF), so the upstream
		// connection was closed under a response being copied.
		http.NewResponseController(w).EnableFullDuplex()
		if body == nil {
			r.Body = &idleReadCloser{idleReader{r: r.Body, w: w, d: g.BodyIdleTimeout}, r.Body}
		}
		x.reqTap = newTap(r.Body, capMax, p.Spec.Capture.RequestBody)
		r.Body = x.reqTap
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), ctxKey{}, x), time.Duration(p.Spec.Timeouts.Total))
	defer cancel()
	sw := &statusWriter{ResponseWriter: w, head: r.Method == http.MethodHead}
	x.sw = sw
	defer func() {
		// ReverseProxy aborts a response that fails mid-stream by
		// panicking with http.ErrAbortHandler: record it, then let the
		// panic close the connection.
		rec := recover()
		if rec != nil && x.failure == nil {
			x.failure = &refusal{status: sw.status, reason: "upstream_aborted", message: "the response was cut off"}
		}
		g.finish(r, x, sw, rec != nil)
		if rec != nil {
			panic(rec)
		}
	}()
	g.rp.ServeHTTP(sw, r.WithContext(ctx))
}

// finish commits the end of the record (in sync mode, before the handler
// returns and the response ends).
func (g *Gateway) finish(r *http.Request, x *exchange, sw *statusWriter, aborted bool) {
	p := x.proxy
	e := &x.end
	e.Status = sw.status
	if e.Status == 0 {
		e.Status = http.StatusOK
	}
	e.LatencyMS = msSince(x.start)
	e.ResponseBytes = sw.n
	if x.sent {
		e.Upstream = true
		e.UpstreamLatencyMS = float64(x.upHdr.Microseconds()) / 1000
	}
	if x.reqTap != nil {
		e.RequestBytes = x.reqTap.n
		if x.reqTap.keep {
			e.RequestBody = p.Redact.Capture(x.reqTap.buf.Bytes(), p.Spec.Capture.MaxBytes, x.reqTap.n > int64(x.reqTap.buf.Len()), r.Header.Get("Content-Type"))
		}
	}
	if x.respTap != nil && x.respTap.keep {
		e.ResponseBody = p.Redact.Capture(x.respTap.buf.Bytes(), p.Spec.Capture.MaxBytes, x.respTap.n > int64(x.respTap.buf.Len()), x.respType)
	}
	if x.scrub != nil {
		e.Scrubbed = x.scrub.Replaced()
	}
	g.chargeUsage(x)
	if f := x.failure; f != nil {
		e.Decision, e.Reason, e.Error = audit.Error, f.reason, f.message
	}
	// The agent may be gone (context canceled); the record still ends.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	err := g.Audit.Finish(ctx, x.rid, e)
	g.observe(x, e.Status, e.Decision)
	if err != nil && !aborted {
		// sync, fail closed: the response must not end before its record
		// does (SPEC §6). The end event is kept and retried (its request
		// reached the upstream); the agent's response is aborted — a held
		// one is never sent, a streamed one gets no final chunk — so the
		// agent sees a failed call, not a complete one without a record.
		g.Logger.Warn("the end of an audit record cannot be committed; aborting the response", "request_id", x.rid, "err", err)
		panic(http.ErrAbortHandler)
	}
	if !aborted {
		sw.release()
	}
}

// hopHeaders the agent may not send upstream beyond what ReverseProxy
// already removes (RFC 9110 §7.6.1 and the Forwarded family: keyhole does
// not tell upstreams about its clients, and a client cannot pretend to be
// another).
var dropOnRequest = []string{"Forwarded", "X-Real-Ip", "Via", "X-Keyhole-Request-Id", "Accept-Encoding", "Proxy-Authorization",
	"Te", "Trailer", "Upgrade"}

// rewrite builds the outgoing request (ReverseProxy.Rewrite runs after the
// hop-by-hop headers, including those named in Connection, are removed —
// so nothing the agent names in Connection can remove what is set here).
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	out := pr.Out
	p := x.proxy
	u := p.Upstream
	out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
	base := strings.TrimSuffix(u.EscapedPath(), "/")
	rawPath := x.rawPath
	if rawPath == "" {
		rawPath = "/"
	}
	out.URL.RawPath = base + rawPath
	out.URL.Path = strings.TrimSuffix(u.Path, "/") + x.path
	out.URL.RawQuery = x.rawQuery
	out.URL.ForceQuery = false
	out.URL.Fragment, out.URL.RawFragment = "", ""
	out.Host = ""
	for k := range out.Header {
		if strings.HasPrefix(k, "X-Forwarded-") {
			delete(out.Header, k)
		}
	}
	for _, h := range dropOnRequest {
		delete(out.Header, h)
	}
	if p.Spec.AllowWebsocket && pr.In.Header.Get("Upgrade") != "" {
		out.Header.Set("Upgrade", pr.In.Header.Get("Upgrade"))
		out.Header.Set("Connection", "Upgrade")
	}
	out.Trailer = nil
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's default
	}
	for k, v := range p.Spec.StaticHeaders {
		out.Header.Set(k, v)
	}
	out.Header.Set("X-Keyhole-Request-Id", x.rid)
	// Upstream auth runs last: AWS SigV4 signs every header set above, so
	// nothing may change the request after it (inject/sigv4.go).
	if err := p.Inject.Apply(out); err != nil {
		// Fail closed: an outgoing request without its credential is
		// never sent (the transport sees the marker and refuses).
		*out = *out.WithContext(context.WithValue(out.Context(), injectFailed{}, err))
	} else {
		// OAuth 2.0: scrub the response of the access token this request
		// carries, which may be newer than the snapshot (catalog/dynamic.go).
		x.proxy = p.ForRequest(out)
	}
	x.upAt = time.Now()
}

type injectFailed struct{}

// maxTokenLen: a capture takes this much beyond max_bytes so that a
// keyhole token straddling the cut is still recognised and redacted.
const maxTokenLen = 64

// transportFor sends each request through its proxy's pooled transport.
type transportFor struct{}

func (transportFor) RoundTrip(r *http.Request) (*http.Response, error) {
	if err, ok := r.Context().Value(injectFailed{}).(error); ok {
		return nil, &authError{err}
	}
	x := exchangeFrom(r.Context())
	x.sent = true
	// OAuth 2.0 (SPEC §4): on an upstream 401, refresh the token once and
	// retry once when the body can be replayed (a small body is kept for
	// that); never after a 403, never twice (catalog/dynamic.go).
	replay := x.proxy.PrepareRetry(r)
	res, err := x.proxy.Transport.RoundTrip(r)
	if err == nil && res.StatusCode == http.StatusUnauthorized {
		if r2 := x.proxy.RetryUnauthorized(r, res, replay); r2 != nil {
			x.proxy = x.proxy.ForRequest(r2)
			res, err = x.proxy.Transport.RoundTrip(r2)
		}
	}
	x.upHdr = time.Since(x.upAt)
	return res, err
}

type authError struct{ err error }

func (e *authError) Error() string { return "upstream credential unavailable" }
func (e *authError) Unwrap() error { return e.err }

var errEncoding = errors.New("upstream response encoding keyhole cannot inspect")

// modifyResponse scrubs secrets from the response's headers and, as it
// streams, its body; drops Set-Cookie unless pass_cookies; taps a bounded
// copy for the audit record.
func (g *Gateway) modifyResponse(res *http.Response) error {
	x := exchangeFrom(res.Request.Context())
	p := x.proxy
	if res.StatusCode == http.StatusSwitchingProtocols {
		// A WebSocket (allow_websocket): ReverseProxy needs the raw
		// backend connection as the body. Frames are neither captured nor
		// scrubbed (docs/security-model.md).
		x.end.ResponseHeaders = p.Redact.Headers(res.Header)
		return nil
	}
	// Keyhole offered only gzip (which the transport decodes): any other
	// content coding would hide secrets from the scrubber (SPEC §3.6).
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return errEncoding
	}
	if !p.Spec.PassCookies {
		delete(res.Header, "Set-Cookie")
		delete(res.Header, "Set-Cookie2")
	}
	delete(res.Header, "X-Keyhole-Request-Id") // ours is already set
	if p.Scrub.Len() > 0 {
		for k, vs := range res.Header {
			for i, v := range vs {
				vs[i] = p.Scrub.ReplaceString(v)
			}
			res.Header[k] = vs
		}
	}
	x.end.ResponseHeaders = p.Redact.Headers(res.Header)
	x.respType = res.Header.Get("Content-Type")
	capMax := p.Spec.Capture.MaxBytes + int64(max(p.Redact.MaxSecretLen(), maxTokenLen))
	x.respTap = newTap(res.Body, capMax, p.Spec.Capture.ResponseBody)
	var body io.ReadCloser = x.respTap
	if len(x.sumQuotas) > 0 && res.Request.Method != http.MethodHead {
		x.usage = newUsageTap(body, x.respType, x.sumQuotas)
		body = x.usage
	}
	body, err := g.filterResponse(res, x, body)
	if err != nil {
		return err
	}
	if body, err = g.filterMCPTools(res, x, body); err != nil { // MCP upstreams (mcp.go)
		return err
	}
	if p.Scrub.Len() > 0 && res.Request.Method != http.MethodHead {
		sr := p.Scrub.Reader(body)
		if rc, ok := sr.(interface{ Replaced() int }); ok {
			x.scrub = rc
		}
		// Trailer fields are headers too (RFC 9110 §6.5): ReverseProxy
		// copies them to the agent after the body, so they are scrubbed
		// as soon as the transport has read them.
		body = &trailerScrubber{ReadCloser: sr, res: res, set: p.Scrub}
	}
	if res.ContentLength >= 0 && res.ContentLength <= holdLimit && x.sw != nil {
		x.sw.hold = true
	}
	if res.Request.Method != http.MethodHead && res.StatusCode != http.StatusNoContent && res.StatusCode != http.StatusNotModified {
		// Every body goes to the agent chunked: scrubbing may change its
		// length, and the final chunk is written only after the handler
		// has committed the end of the audit record — so the response
		// never ends before its record does (SPEC §6), Content-Length or not.
		res.ContentLength = -1
		res.Header.Del("Content-Length")
	}
	res.Body = body
	return nil
}

// trailerScrubber replaces secret values in the response's trailer fields
// when the body ends: the transport fills res.Trailer just before the
// body's EOF, and ReverseProxy sends them to the agent after the body.
type trailerScrubber struct {
	io.ReadCloser
	res *http.Response
	set interface{ ReplaceString(string) string }
}

func (t *trailerScrubber) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		for _, vs := range t.res.Trailer {
			for i, v := range vs {
				vs[i] = t.set.ReplaceString(v)
			}
		}
	}
	return n, err
}

// proxyError answers a failed exchange with the SPEC §3.3 envelope: 504 on
// a timeout, 502 otherwise. The message never holds the upstream URL (a
// query-parameter credential would be in it) or the Go error text.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	f := &refusal{status: http.StatusBadGateway, reason: "upstream_unreachable", message: "the upstream could not be reached"}
	var ne net.Error
	var ae *authError
	switch {
	case errors.Is(err, inject.ErrBodyTooLarge): // AWS SigV4 hashes the whole body
		f = &refusal{status: http.StatusRequestEntityTooLarge, reason: "body_too_large",
			message: "this proxy signs request bodies (AWS SigV4) and takes at most " + strconv.Itoa(inject.MaxSignedBody) + " bytes; this one is larger"}
	case errors.As(err, &ae):
		f = &refusal{status: http.StatusBadGateway, reason: "upstream_auth_failed", message: "keyhole could not obtain the upstream credential; nothing was forwarded"}
	case errors.Is(err, errFilterTooLarge):
		f = &refusal{status: http.StatusBadGateway, reason: "filter_too_large", message: "the response is too large for this route's response filters to inspect, so it is withheld"}
	case errors.Is(err, errEncoding):
		f = &refusal{status: http.StatusBadGateway, reason: "upstream_encoding", message: "the upstream answered with a content encoding keyhole cannot inspect"}
	case netguard.IsBlocked(err):
		f = &refusal{status: http.StatusBadGateway, reason: "upstream_blocked", message: "the upstream's address is refused by keyhole's SSRF guard"}
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		f = &refusal{status: http.StatusGatewayTimeout, reason: "upstream_timeout", message: "the upstream did not answer in time"}
	case errors.Is(err, context.Canceled):
		f = &refusal{status: 499, reason: "client_gone", message: "the agent closed the request"}
	}
	if x != nil {
		x.failure = f
		g.Metrics.UpstreamErrors.WithLabelValues(x.proxy.Name, f.reason).Inc()
		g.Logger.Debug("upstream error", "proxy", x.proxy.Name, "request_id", x.rid, "reason", f.reason)
		writeError(w, f.status, f.code(), f.message, x.rid)
		return
	}
	writeError(w, f.status, f.code(), f.message, "")
}

// statusWriter records the status and the bytes written, keeps Flush and
// the rest reachable through Unwrap (http.ResponseController), and can
// hold a small response back until the audit record has ended.
//
// Holding: a response whose upstream length is known and small is kept in
// memory (after scrubbing and filters) and written in one piece, with its
// exact Content-Length, once finish has committed the end of its record —
// the response cannot end before its record does (SPEC §6 sync
// durability), and the agent gets one write instead of a chunked stream.
// Bodyless responses (HEAD, 204, 304) are held the same way. Anything
// longer than holdLimit, or of unknown length, streams chunked and each
// write is flushed at once; the final chunk still goes out only after the
// handler returns, that is after the commit.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
	head   bool // a HEAD request: the upstream's Content-Length stays
	hold   bool
	held   bytes.Buffer
}

// holdLimit bounds a held response.
const holdLimit = 64 << 10

func (s *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		s.ResponseWriter.WriteHeader(code) // informational: pass on at once
		return
	}
	if s.status == 0 {
		s.status = code
	}
	if code == http.StatusNoContent || code == http.StatusNotModified || s.head {
		s.hold = true
	}
	if !s.hold {
		s.ResponseWriter.WriteHeader(code)
	}
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.hold {
		if s.held.Len()+len(b) <= holdLimit {
			s.n += int64(len(b))
			return s.held.Write(b)
		}
		// Longer than announced (a filter or an upstream that lied):
		// stream from here on.
		s.hold = false
		h := s.ResponseWriter.Header()
		h.Del("Content-Length")
		s.ResponseWriter.WriteHeader(s.status)
		if _, err := s.ResponseWriter.Write(s.held.Bytes()); err != nil {
			return 0, err
		}
		s.held = bytes.Buffer{}
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

// Flush flushes a streamed response; a held one has nothing to flush.
func (s *statusWriter) Flush() {
	if s.hold {
		return
	}
	http.NewResponseController(s.ResponseWriter).Flush()
}

// release writes a held response (after the record's end is committed).
func (s *statusWriter) release() {
	if !s.hold {
		return
	}
	s.hold = false
	h := s.ResponseWriter.Header()
	switch {
	case s.head:
	case s.status == http.StatusNoContent || s.status == http.StatusNotModified:
		h.Del("Content-Length")
	default:
		h.Set("Content-Length", strconv.Itoa(s.held.Len()))
	}
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.ResponseWriter.WriteHeader(s.status)
	if s.held.Len() > 0 {
		s.ResponseWriter.Write(s.held.Bytes())
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack is used by ReverseProxy for a protocol switch (101): the guard
// listener must then stop reading the connection as HTTP/1.1.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil {
		s.status = http.StatusSwitchingProtocols
		httpfront.Passthrough(c)
	}
	return c, brw, err
}

// tap passes a body through and keeps its first max bytes for the audit
// record, counting the rest.
type tap struct {
	src  io.ReadCloser
	buf  bytes.Buffer
	max  int64
	n    int64
	keep bool
}

func newTap(src io.ReadCloser, max int64, keep bool) *tap {
	return &tap{src: src, max: max, keep: keep && max > 0}
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		if t.keep {
			if room := t.max - int64(t.buf.Len()); room > 0 {
				t.buf.Write(p[:min(int64(n), room)])
			}
		}
		t.n += int64(n)
	}
	return n, err
}

func (t *tap) Close() error { return t.src.Close() }

type idleReadCloser struct {
	idleReader
	c io.Closer
}

func (i *idleReadCloser) Close() error { return i.c.Close() }

// bufferPool reuses ReverseProxy's 32 KiB copy buffers.
type bufferPool struct{}

var bufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(bufs.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { bufs.Put(&b) }
