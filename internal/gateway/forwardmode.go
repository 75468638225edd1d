package gateway

import (
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/httpfront"
	"github.com/keyhole-gw/keyhole/internal/token"
)

// Forward-proxy mode (SPEC §3.7). The forward package owns the listener,
// the TLS interception and the CA; this file is the gateway's side of it:
//
//   - OpenTunnel decides a CONNECT: the agent token from Proxy-Authorization
//     (407 without a valid one), then the proxies whose upstream is
//     https://host:port (403 when none is in the token's scope: keyhole
//     opens no blind tunnels). The decision is an audit record of its own.
//   - Tunnel.ServeHTTP serves each request read inside an open tunnel, once
//     TLS is terminated, through the same pipeline as a path-routed request
//     (serveProxy: scope, canonical path, rules, rate limits, quotas, audit,
//     injection, scrubbing, streaming). The token is checked again on every
//     request, so a revocation reaches open tunnels too.
//   - ServeForwardHTTP serves a plain-HTTP forward request (absolute-form
//     target http://host:port/path, the HTTP_PROXY way) the same way,
//     against proxies whose upstream is http://host:port.
//
// Which proxy serves a request: among the proxies whose upstream has the
// request's scheme, host and port, the one whose upstream base path is the
// longest prefix of the request's path, preferring proxies in the token's
// scope, ties going to the first name in sorted order. The path the rules
// see (and the audit record keeps) is the rest after that base path, as in
// path routing. A path under no base path is 404 unknown_proxy.

// Reasons of forward-proxy refusals (besides the pipeline's own).
const (
	// ReasonNoProxyForHost: the CONNECT (or plain forward request) names a
	// host:port that is no proxy's upstream.
	ReasonNoProxyForHost = "no_proxy_for_host"
	// ReasonMisdirected: a request inside a tunnel names another host.
	ReasonMisdirected = "misdirected_request"
	// ReasonTunnelOpened is the reason of an allowed CONNECT's record.
	ReasonTunnelOpened = "tunnel_opened"
)

// TunnelError is what OpenTunnel's prepare function returns to refuse a
// tunnel that keyhole cannot serve (its CA is missing, say). Message reaches
// the agent: it must not hold internals.
type TunnelError struct {
	Status  int
	Reason  string
	Message string
	Err     error // the internal cause, for logs only
}

func (e *TunnelError) Error() string { return e.Message }
func (e *TunnelError) Unwrap() error { return e.Err }

// Tunnel is a CONNECT that OpenTunnel allowed: an agent's token and the
// host:port it reaches. Its ServeHTTP serves the requests that arrive
// inside the tunnel once TLS is terminated.
type Tunnel struct {
	g      *Gateway
	token  string
	scope  map[string]bool
	scheme string
	// Host is the tunnel's host, lower-case, without brackets or a final
	// dot; Port its port.
	Host, Port string
	// ID is the id of the CONNECT's audit record.
	ID string
	// Agent and TokenID name who opened it (for logs).
	Agent, TokenID string
	// Guard is the framing guard of the listener that the tunnel's
	// requests are read from (nil: none).
	Guard *httpfront.Listener

	// cands caches the proxies of the tunnel's upstream for a snapshot.
	cands atomic.Pointer[tunnelCands]
}

type tunnelCands struct {
	snap  *catalog.Snapshot
	cands []*catalog.Proxy
}

// candidates are the proxies of the tunnel's upstream in snapshot s,
// computed once per snapshot (the configuration changes rarely; a tunnel
// carries many requests).
func (t *Tunnel) candidates(s *catalog.Snapshot) []*catalog.Proxy {
	if c := t.cands.Load(); c != nil && c.snap == s {
		return c.cands
	}
	c := &tunnelCands{snap: s, cands: candidates(s, t.scheme, t.Host, t.Port)}
	t.cands.Store(c)
	return c.cands
}

// OpenTunnel decides a CONNECT request. When the tunnel is allowed it calls
// prepare (nil: none), records the decision and returns the tunnel, having
// written nothing: the caller answers 200 and takes the connection over.
// Otherwise it has answered (407, 403, 400, 503…) and returns nil.
func (g *Gateway) OpenTunnel(w http.ResponseWriter, r *http.Request, prepare func(*Tunnel) error) *Tunnel {
	x := g.newExchange(w, r)
	x.rec.Path = clipTarget(r.RequestURI)
	host, port, ok := splitAuthority(r.RequestURI)
	if !ok {
		g.refuse(w, r, x, &refusal{status: http.StatusBadRequest, reason: "bad_target",
			message: "CONNECT takes host:port (RFC 9110 §9.3.6)"})
		return nil
	}
	raw, present := proxyToken(r)
	if raw == "" {
		g.refuse(w, r, x, proxyAuthRefusal(&refusal{reason: noTokenReason(present)}))
		return nil
	}
	x.fwdToken = raw
	if f := g.authenticate(r, x, nil); f != nil {
		g.refuse(w, r, x, proxyAuthRefusal(f))
		return nil
	}
	cands := candidates(x.snap, "https", host, port)
	if f := g.pickForTunnel(x, cands, host, port); f != nil {
		g.refuse(w, r, x, f)
		return nil
	}
	t := &Tunnel{g: g, token: raw, scope: x.tok.Scope, scheme: "https", Host: host, Port: port,
		ID: x.rid, Agent: x.tok.Agent, TokenID: x.tok.ID}
	t.cands.Store(&tunnelCands{snap: x.snap, cands: cands})
	if prepare != nil {
		if err := prepare(t); err != nil {
			f := &refusal{status: http.StatusServiceUnavailable, reason: "tunnel_unavailable",
				message: "keyhole cannot terminate TLS for this host right now; see the keyhole logs"}
			var te *TunnelError
			if errors.As(err, &te) {
				f.status, f.reason, f.message = te.Status, te.Reason, te.Message
			}
			g.Logger.Warn("forward proxy: tunnel refused", "request_id", x.rid, "host", host, "err", err)
			g.refuse(w, r, x, f)
			return nil
		}
	}
	x.rec.Decision, x.rec.Reason = audit.Allow, ReasonTunnelOpened
	end := audit.End{Status: http.StatusOK, LatencyMS: msSince(x.start)}
	if err := g.Audit.Record(r.Context(), &x.rec, &end); err != nil {
		g.auditFailed(w, r, x, err)
		return nil
	}
	g.observe(x, http.StatusOK, audit.Allow)
	return t
}

// pickForTunnel is the CONNECT's scope decision: 403 when no proxy has
// this upstream (no blind tunnels) or none of those is in the token's
// scope. The record names the first proxy in scope, else the first match.
func (g *Gateway) pickForTunnel(x *exchange, cands []*catalog.Proxy, host, port string) *refusal {
	if len(cands) == 0 {
		return &refusal{status: http.StatusForbidden, reason: ReasonNoProxyForHost,
			message: "no proxy of this gateway has " + clipName(host) + ":" + port + " as its upstream; keyhole opens no tunnel to other hosts"}
	}
	x.proxy = cands[0]
	for _, p := range cands {
		if x.tok.Scope[p.Name] {
			x.proxy = p
			break
		}
	}
	x.rec.Proxy = x.proxy.Name
	if !x.tok.Scope[x.proxy.Name] {
		return &refusal{status: http.StatusForbidden, reason: "not_in_scope",
			message: "this token is not scoped to any proxy of " + clipName(host) + ":" + port}
	}
	return nil
}

// ServeHTTP serves one request read inside the tunnel (after TLS
// termination): the same refusals and pipeline as a path-routed request
// to the proxy that serves its path.
func (t *Tunnel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := t.g
	x := g.newExchange(w, r)
	rawPath, ok := g.front(w, r, x, t.Guard)
	if !ok {
		return
	}
	x.rec.Path, x.rec.Query = clipTarget(rawPath), x.rawQuery
	x.fwdToken = t.token
	// The tunnel was opened, and its certificate minted, for one host: a
	// request that names another (RFC 9110 §7.4) is misdirected.
	if h, p := splitHostHeader(r.Host, t.Port); h != t.Host || p != t.Port {
		g.refuse(w, r, x, &refusal{status: http.StatusMisdirectedRequest, reason: ReasonMisdirected,
			message: "this tunnel reaches " + clipName(t.Host) + ":" + t.Port + " only; the request names another host"})
		return
	}
	g.serveRouted(w, r, x, t.candidates(x.snap), t.scope, t.Host, t.Port, rawPath, false)
}

// serveRouted routes a forward-mode request to the proxy among cands (the
// proxies of its upstream) that serves its path, then runs steps 2–8 of
// SPEC §3.3. The token is x.fwdToken; scope only orders the candidates
// (the pipeline decides on scope itself).
func (g *Gateway) serveRouted(w http.ResponseWriter, r *http.Request, x *exchange, cands []*catalog.Proxy,
	scope map[string]bool, host, port, rawPath string, proxyAuth bool) {
	p, rest := pickByPath(cands, scope, rawPath)
	if p != nil {
		x.proxy, x.rec.Proxy = p, p.Name
		x.rawPath, x.rec.Path = rest, clipTarget(rest)
	}
	if f := g.authenticate(r, x, nil); f != nil {
		if proxyAuth {
			f = proxyAuthRefusal(f)
		}
		g.refuse(w, r, x, f)
		return
	}
	switch {
	case len(cands) == 0:
		g.refuse(w, r, x, &refusal{status: http.StatusForbidden, reason: ReasonNoProxyForHost,
			message: "no proxy of this gateway has " + clipName(host) + ":" + port + " as its upstream"})
		return
	case p == nil:
		g.refuse(w, r, x, &refusal{status: http.StatusNotFound, reason: "unknown_proxy",
			message: "no proxy of " + clipName(host) + ":" + port + " serves this path (each forwards only under its upstream's base path)"})
		return
	}
	g.serveProxy(w, r, x)
}

// ServeForwardHTTP serves a plain-HTTP forward-proxy request, whose target
// is absolute-form (http://host:port/path?query): token from
// Proxy-Authorization (407 without one), then the proxy whose upstream is
// http://host:port, then the pipeline. Any other target is refused (400):
// the forward listener is not the gateway listener.
func (g *Gateway) ServeForwardHTTP(w http.ResponseWriter, r *http.Request, guard *httpfront.Listener) {
	x := g.newExchange(w, r)
	var host, port string
	if _, rejected := guardRejection(guard, r); !rejected {
		var origin string
		var ok bool
		host, port, origin, ok = absoluteHTTP(r.RequestURI)
		if !ok {
			x.rec.Path = clipTarget(r.RequestURI)
			g.refuse(w, r, x, &refusal{status: http.StatusBadRequest, reason: "bad_target",
				message: "this is keyhole's forward-proxy listener: it takes CONNECT host:port (HTTPS_PROXY) and absolute http:// URLs (HTTP_PROXY); call proxies by path on the gateway listener"})
			return
		}
		r.RequestURI = origin
	}
	rawPath, ok := g.front(w, r, x, guard)
	if !ok {
		return
	}
	x.rec.Path, x.rec.Query = clipTarget(rawPath), x.rawQuery
	raw, present := proxyToken(r)
	if raw == "" {
		g.refuse(w, r, x, proxyAuthRefusal(&refusal{reason: noTokenReason(present)}))
		return
	}
	x.fwdToken = raw
	var scope map[string]bool
	if t, _ := x.snap.Authenticate(raw, time.Now()); t != nil {
		scope = t.Scope // orders the candidates; authenticate decides
	}
	g.serveRouted(w, r, x, candidates(x.snap, "http", host, port), scope, host, port, rawPath, true)
}

func guardRejection(guard *httpfront.Listener, r *http.Request) (httpfront.Rejection, bool) {
	if guard == nil {
		return httpfront.Rejection{}, false
	}
	return guard.Rejection(r)
}

// proxyToken reads the agent token from Proxy-Authorization: the password
// of Basic credentials (HTTPS_PROXY=http://kh:TOKEN@host:port), else their
// user name, or a Bearer value. present: the header was there at all.
func proxyToken(r *http.Request) (tok string, present bool) {
	v := strings.TrimSpace(r.Header.Get("Proxy-Authorization"))
	if v == "" {
		return "", false
	}
	scheme, val, _ := strings.Cut(v, " ")
	val = strings.TrimSpace(val)
	var cand string
	switch {
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(val)
		if err != nil {
			return "", true
		}
		user, pass, _ := strings.Cut(string(b), ":")
		cand = pass
		if !token.LooksLikeAgentToken(cand) {
			cand = user
		}
	case strings.EqualFold(scheme, "Bearer"):
		cand = val
	}
	if token.LooksLikeAgentToken(cand) {
		return cand, true
	}
	return "", true
}

func noTokenReason(present bool) string {
	if present {
		return "bad_token"
	}
	return "no_token"
}

const msgProxyAuth = "; send the keyhole token as the proxy password: HTTPS_PROXY=http://kh:kh_…@HOST:PORT (or Proxy-Authorization: Bearer kh_…)"

// proxyAuthRefusal turns an authentication refusal into the proxy's own
// (407 with Proxy-Authenticate, RFC 9110 §11.7.1).
func proxyAuthRefusal(f *refusal) *refusal {
	msg := msgBadToken
	switch f.reason {
	case "no_token":
		msg = "no keyhole token"
	case catalog.ReasonExpired:
		msg = msgExpired
	case catalog.ReasonRevoked:
		msg = msgRevoked
	}
	return &refusal{status: http.StatusProxyAuthRequired, reason: f.reason, message: msg + msgProxyAuth,
		header: http.Header{"Proxy-Authenticate": {`Basic realm="keyhole"`}}}
}

// candidates lists the proxies whose upstream is scheme://host:port, in
// the snapshot's (sorted) order.
func candidates(s *catalog.Snapshot, scheme, host, port string) []*catalog.Proxy {
	var out []*catalog.Proxy
	for _, name := range s.ProxyNames() {
		p := s.Proxy(name)
		if p == nil || p.Upstream == nil || !strings.EqualFold(p.Upstream.Scheme, scheme) {
			continue
		}
		pt := p.Upstream.Port()
		if pt == "" {
			pt = defaultPort(scheme)
		}
		if pt == port && strings.EqualFold(strings.TrimSuffix(p.Upstream.Hostname(), "."), host) {
			out = append(out, p)
		}
	}
	return out
}

// pickByPath chooses among cands the proxy whose upstream base path is the
// longest prefix of rawPath (whole segments), those in scope first, and
// returns the rest of the path after that base.
func pickByPath(cands []*catalog.Proxy, scope map[string]bool, rawPath string) (*catalog.Proxy, string) {
	var best *catalog.Proxy
	var bestRest string
	bestLen, bestIn := -1, false
	for _, p := range cands {
		base := strings.TrimSuffix(p.Upstream.EscapedPath(), "/")
		rest, ok := underBase(rawPath, base, p.Spec.CaseInsensitivePaths)
		if !ok {
			continue
		}
		in := scope[p.Name]
		if best == nil || in && !bestIn || in == bestIn && len(base) > bestLen {
			best, bestRest, bestLen, bestIn = p, rest, len(base), in
		}
	}
	return best, bestRest
}

// underBase reports whether rawPath is base or below it, and the rest.
func underBase(rawPath, base string, fold bool) (string, bool) {
	if base == "" {
		return rawPath, true
	}
	if len(rawPath) < len(base) {
		return "", false
	}
	head := rawPath[:len(base)]
	if head != base && !(fold && strings.EqualFold(head, base)) {
		return "", false
	}
	rest := rawPath[len(base):]
	if rest != "" && rest[0] != '/' {
		return "", false // /v10 is not under /v1
	}
	return rest, true
}

// splitAuthority parses a CONNECT target: host:port, the port required.
func splitAuthority(s string) (host, port string, ok bool) {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" || !validPort(p) || strings.ContainsAny(h, "/?#@ ") {
		return "", "", false
	}
	return normalHost(h), p, true
}

// splitHostHeader splits a Host header, the port defaulting to def.
func splitHostHeader(s, def string) (string, string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return normalHost(h), p
	}
	return normalHost(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")), def
}

// absoluteHTTP parses an absolute-form http:// target into its host, port
// and origin-form rest ("/" when the path is empty).
func absoluteHTTP(s string) (host, port, origin string, ok bool) {
	const scheme = "http://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return "", "", "", false
	}
	rest := s[len(scheme):]
	i := strings.IndexAny(rest, "/?")
	auth := rest
	origin = "/"
	if i >= 0 {
		auth = rest[:i]
		origin = rest[i:]
		if origin[0] == '?' {
			origin = "/" + origin
		}
	}
	if auth == "" || strings.ContainsAny(auth, "@# ") {
		return "", "", "", false
	}
	host, port = auth, "80"
	if h, p, err := net.SplitHostPort(auth); err == nil {
		if !validPort(p) {
			return "", "", "", false
		}
		host, port = h, p
	} else if strings.Contains(strings.TrimSuffix(strings.TrimPrefix(auth, "["), "]"), "]") {
		return "", "", "", false
	}
	host = normalHost(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if host == "" {
		return "", "", "", false
	}
	return host, port, origin, true
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536 && p[0] != '+' && p[0] != '0'
}

func normalHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

func defaultPort(scheme string) string {
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}
