// Package gateway is keyhole's agent-facing handler (SPEC §3): it routes a
// request to a proxy, authenticates the agent's token, checks scope, the
// path's canonical form and the rules, records the decision in the audit
// log, injects the upstream credential and forwards the call, then scrubs
// secrets from the response as it streams back.
//
// The decision order of SPEC §3.3 is the order of ServeHTTP; every answer
// carries X-Keyhole-Request-Id, which is the id of its audit record.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/httpfront"
	"github.com/keyhole-gw/keyhole/internal/mcp"
	"github.com/keyhole-gw/keyhole/internal/metrics"
	"github.com/keyhole-gw/keyhole/internal/policy"
	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/token"
)

// KeyholeProxy is the proxy name of records of keyhole's own /-/ endpoints.
const KeyholeProxy = "-keyhole"

// MaxQueryParams bounds the query (SPEC §3.4).
const MaxQueryParams = 1000

// Options configure a Gateway.
type Options struct {
	Catalog *catalog.Catalog
	Audit   *audit.Writer
	Store   store.Config // for minting child tokens
	// Guard is the listener's framing guard (nil when not wrapped).
	Guard *httpfront.Listener
	// HostSuffix enables host routing: {proxy}{HostSuffix} → proxy.
	HostSuffix string
	Node       string
	Logger     *slog.Logger
	Metrics    *metrics.Metrics
	// Ready reports whether the node can serve (store and audit writable).
	Ready func(context.Context) error
	// BodyIdleTimeout cuts off a client that stops sending its body.
	BodyIdleTimeout time.Duration
	// Quotas holds the per-agent budgets (nil: quotas are not enforced —
	// only tests leave it out).
	Quotas *quota.Tracker
}

// Gateway is the agent-facing http.Handler.
type Gateway struct {
	Options
	rp *httputil.ReverseProxy
}

// New builds a gateway.
func New(o Options) *Gateway {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.BodyIdleTimeout == 0 {
		o.BodyIdleTimeout = 60 * time.Second
	}
	g := &Gateway{Options: o}
	g.rp = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      transportFor{},
		FlushInterval:  -1, // write each chunk as it comes: SSE and streamed responses are never held back
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		BufferPool:     bufferPool{},
	}
	return g
}

// exchange is one request's state, shared by ServeHTTP and the reverse
// proxy's callbacks through the request context.
type exchange struct {
	rid      string
	start    time.Time
	snap     *catalog.Snapshot
	proxy    *catalog.Proxy
	tok      *catalog.Token
	agent    *catalog.Agent
	rawPath  string // the escaped path after /{proxy}, as received
	path     string // its decoded canonical form
	rawQuery string
	// fwdToken is a forward-proxy tunnel's agent token (forwardmode.go).
	fwdToken string
	rec      audit.Start
	end      audit.End
	decision rules.Decision
	// tokDecision is a child token's own rules' decision (nil: none).
	tokDecision *rules.Decision

	reqTap   *tap
	respTap  *tap
	respType string
	sw       *statusWriter
	// sumQuotas are charged once the response tells how much; usage
	// reads it from the response.
	sumQuotas []sumQuota
	usage     *usageTap
	scrub     interface{ Replaced() int }
	upAt      time.Time // when the request left for the upstream
	upHdr     time.Duration
	sent      bool // the request reached the upstream
	failure   *refusal

	// mcp is an MCP upstream's tools/list to filter (mcp.go).
	mcp *mcp.Listing
}

type ctxKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(ctxKey{}).(*exchange)
	return x
}

func newRequestID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// ServeHTTP decides in the order of SPEC §3.3.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := g.newExchange(w, r)
	if rawPath, ok := g.front(w, r, x, g.Guard); ok {
		g.route(w, r, x, rawPath)
	}
}

func (g *Gateway) newExchange(w http.ResponseWriter, r *http.Request) *exchange {
	x := &exchange{rid: newRequestID(), start: time.Now(), snap: g.Catalog.Load()}
	w.Header().Set("X-Keyhole-Request-Id", x.rid)
	x.rec = audit.Start{ID: x.rid, Time: x.start, Node: g.Node, Method: r.Method}
	return x
}

// front runs the refusals that come before routing (SPEC §3.4): the
// framing guard's, methods that are never forwarded, targets that are not
// origin-form, methods that are not tokens. It returns the target's escaped
// path (the query goes to x.rawQuery), or false once it has answered.
func (g *Gateway) front(w http.ResponseWriter, r *http.Request, x *exchange, guard *httpfront.Listener) (string, bool) {
	if guard != nil {
		if rej, ok := guard.Rejection(r); ok {
			x.rec.Method, x.rec.Path = rej.Method, rej.Target
			msg := guardMessages[rej.Reason]
			if msg == "" {
				msg = "the request's framing is refused; nothing was forwarded"
			}
			w.Header().Set("Connection", "close")
			g.refuse(w, r, x, &refusal{status: rej.Status, reason: rej.Reason, message: msg})
			return "", false
		}
	}
	httpfront.StripGuardHeaders(r.Header)

	if r.Method == http.MethodTrace || r.Method == http.MethodConnect {
		x.rec.Path = clipTarget(r.RequestURI)
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		g.refuse(w, r, x, &refusal{status: http.StatusMethodNotAllowed, reason: "method_not_allowed",
			message: r.Method + " is never forwarded"})
		return "", false
	}
	// The request target must be origin-form (RFC 9112 §3.2.1): an
	// absolute-form target would let the agent name the host.
	raw := r.RequestURI
	if !strings.HasPrefix(raw, "/") {
		x.rec.Path = clipTarget(raw)
		g.refuse(w, r, x, &refusal{status: http.StatusBadRequest, reason: "bad_target",
			message: "keyhole takes origin-form request targets only (a path such as /stripe/v1/charges), not absolute URLs or *"})
		return "", false
	}
	rawPath, rawQuery, _ := strings.Cut(raw, "?")
	x.rawQuery = rawQuery

	if !policy.ValidMethod(r.Method) {
		g.refuse(w, r, x, &refusal{status: http.StatusBadRequest, reason: "bad_method", message: "the method is not an RFC 9110 token"})
		return "", false
	}
	return rawPath, true
}

// route is path and host routing (SPEC §3.1) and steps 1–2 of §3.3.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request, x *exchange, rawPath string) {
	if rawPath == "/-" || strings.HasPrefix(rawPath, "/-/") {
		g.serveKeyhole(w, r, x, rawPath)
		return
	}

	// Routing (SPEC §3.1): the Host under --host-suffix, else the first
	// path segment.
	name, rest := "", ""
	if host := hostOf(r.Host); g.HostSuffix != "" && strings.HasSuffix(host, g.HostSuffix) && len(host) > len(g.HostSuffix) {
		name, rest = host[:len(host)-len(g.HostSuffix)], rawPath
	} else {
		name, rest, _ = strings.Cut(rawPath[1:], "/")
		if rest != "" || strings.HasSuffix(rawPath, name+"/") {
			rest = "/" + rest
		}
	}
	x.rawPath = rest
	x.rec.Path = clipTarget(rest)
	x.rec.Query = x.rawQuery
	var p *catalog.Proxy
	if nameOK(name) {
		p = x.snap.Proxy(name)
	}
	if p != nil {
		x.proxy = p
		x.rec.Proxy = p.Name
	}

	// Step 2: the token, before anything about the proxy is revealed.
	if f := g.authenticate(r, x, p); f != nil {
		g.refuse(w, r, x, f)
		return
	}
	// Step 1 (after the token): an unknown proxy.
	if p == nil {
		g.refuse(w, r, x, &refusal{status: http.StatusNotFound, reason: "unknown_proxy", message: msgUnknownProxy})
		return
	}
	g.serveProxy(w, r, x)
}

// serveProxy is steps 3–8 of SPEC §3.3, for a request routed to x.proxy
// whose token is authenticated (x.tok); forward-proxy mode enters here too
// (forwardmode.go).
func (g *Gateway) serveProxy(w http.ResponseWriter, r *http.Request, x *exchange) {
	p := x.proxy
	// Step 3: scope.
	if !x.tok.Scope[p.Name] {
		g.refuse(w, r, x, &refusal{status: http.StatusForbidden, reason: "not_in_scope", message: msgNotInScope})
		return
	}
	if p.Err != nil {
		g.Logger.Error("proxy cannot serve: its configuration does not compile", "proxy", p.Name, "err", p.Err)
		g.refuse(w, r, x, &refusal{status: http.StatusBadGateway, reason: "proxy_misconfigured",
			message: "this proxy's configuration cannot be used right now (see the keyhole logs)"})
		return
	}
	x.rec.SecretVersion = p.Inject.SecretVersion()
	// Step 4: the canonical path, and the rest of SPEC §3.4.
	if f := g.checkRequest(r, x); f != nil {
		g.refuse(w, r, x, f)
		return
	}
	// Step 5: rules (reading the body first when a rule needs it).
	body, f := g.readBodyForRules(w, r, x)
	if f != nil {
		g.refuse(w, r, x, f)
		return
	}
	if f := g.decide(r, x, body); f != nil {
		g.refuse(w, r, x, f)
		return
	}
	// Step 6: rate limits, the proxy rule's then the token rule's.
	ok, wait := x.decision.RateLimit(x.tok.Agent, time.Now())
	if ok && x.tokDecision != nil {
		ok, wait = x.tokDecision.RateLimit(x.tok.Agent, time.Now())
	}
	if !ok {
		secs := int((wait + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		h := http.Header{"Retry-After": {strconv.Itoa(secs)}}
		g.refuse(w, r, x, &refusal{status: http.StatusTooManyRequests, reason: "rate_limited", rule: x.decision.Rule, header: h,
			message: fmt.Sprintf("rule %s allows no more requests now; retry after %d s", x.decision.Rule, secs)})
		return
	}
	if f := g.takeQuotas(x); f != nil {
		g.refuse(w, r, x, f)
		return
	}
	// Step 7: the start record, committed before anything is forwarded.
	x.rec.Decision = audit.Allow
	x.rec.Query = p.Redact.Query(x.rawQuery)
	if err := g.Audit.Begin(r.Context(), &x.rec); err != nil {
		g.auditFailed(w, r, x, err)
		return
	}
	// Step 8: forward.
	g.forward(w, r, x, body)
}

// guardMessages explain the framing guard's refusals (SPEC §3.4).
var guardMessages = map[string]string{
	httpfront.ReasonConflictingFraming:  "the request has both Content-Length and Transfer-Encoding, or two different Content-Lengths (request smuggling); nothing was forwarded and the connection is closed",
	httpfront.ReasonBadTransferEncoding: "the request's Transfer-Encoding is not exactly \"chunked\" on HTTP/1.1; nothing was forwarded",
	httpfront.ReasonBadContentLength:    "the request's Content-Length is not one plain number; nothing was forwarded",
	httpfront.ReasonBadHeaderSyntax:     "the request's header block is malformed (space before a colon, folded lines, a bare LF, or a bad method or target); nothing was forwarded",
	httpfront.ReasonHeadersTooLarge:     "the request's header block is larger than 64 KiB",
	httpfront.ReasonBadChunk:            "the request's chunked body is malformed",
}

func nameOK(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

func hostOf(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// clipTarget keeps an audit path bounded.
func clipTarget(s string) string {
	if len(s) > 2048 {
		return s[:2048]
	}
	return s
}

// tokenLocations lists, in order, where an agent may present its token
// (SPEC §3.2), for a given proxy.
func tokenFrom(r *http.Request, p *catalog.Proxy) (tok string, present bool) {
	if v := strings.TrimSpace(r.Header.Get("Authorization")); v != "" {
		scheme, val, ok := strings.Cut(v, " ")
		switch {
		case ok && strings.EqualFold(scheme, "Bearer"):
			present = true
			if val = strings.TrimSpace(val); token.LooksLikeAgentToken(val) {
				tok = val
			}
		case ok && strings.EqualFold(scheme, "token") && token.LooksLikeAgentToken(strings.TrimSpace(val)):
			// GitHub's SDKs and gh send "Authorization: token …".
			tok = strings.TrimSpace(val)
		case !ok && token.LooksLikeAgentToken(v):
			// Linear's SDK sends its api key bare, without a scheme.
			tok = v
		}
	}
	if vs, ok := r.Header["X-Keyhole-Token"]; ok {
		present = true
		if tok == "" && len(vs) > 0 && token.LooksLikeAgentToken(strings.TrimSpace(vs[0])) {
			tok = strings.TrimSpace(vs[0])
		}
	}
	if p != nil && p.TokenHeader != "" && tok == "" {
		v := strings.TrimSpace(r.Header.Get(p.TokenHeader))
		if scheme, val, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			v = strings.TrimSpace(val)
		}
		if token.LooksLikeAgentToken(v) {
			tok = v
		}
	}
	return tok, present
}

// authenticate is step 2 of SPEC §3.3.
func (g *Gateway) authenticate(r *http.Request, x *exchange, p *catalog.Proxy) *refusal {
	raw, present := tokenFrom(r, p)
	if x.fwdToken != "" {
		// Forward-proxy mode: the token came with the tunnel's
		// Proxy-Authorization; it is checked again on every request.
		raw = x.fwdToken
	}
	if raw == "" {
		h := http.Header{"Www-Authenticate": {`Bearer realm="keyhole"`}}
		if present {
			return &refusal{status: http.StatusUnauthorized, reason: "bad_token", message: msgBadToken, header: h}
		}
		return &refusal{status: http.StatusUnauthorized, reason: "no_token", message: msgNoToken, header: h}
	}
	t, reason := x.snap.Authenticate(raw, time.Now())
	if t != nil {
		x.tok = t
		x.rec.TokenID, x.rec.Agent = t.ID, t.Agent
		x.agent = x.snap.Agent(t.Agent)
	}
	h := http.Header{"Www-Authenticate": {`Bearer realm="keyhole", error="invalid_token"`}}
	switch reason {
	case "":
		// The record keeps the headers as received (redacted), the
		// token-carrying ones included; then they are gone for good.
		x.rec.RequestHeaders = x.redactor().Headers(r.Header)
		stripToken(r.Header, raw)
		return nil
	case catalog.ReasonExpired:
		return &refusal{status: http.StatusUnauthorized, reason: reason, message: msgExpired, header: h}
	case catalog.ReasonRevoked:
		return &refusal{status: http.StatusUnauthorized, reason: reason, message: msgRevoked, header: h}
	}
	return &refusal{status: http.StatusUnauthorized, reason: "bad_token", message: msgBadToken, header: h}
}

// stripToken removes every header that carries the token (SPEC §3.2): not
// only the three locations, but any header whose value holds it — or holds
// any other keyhole token (a second agent token in agent_token_header, an
// admin token pasted into a header): none of them may reach an upstream.
func stripToken(h http.Header, tok string) {
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, tok) || strings.Contains(v, "kh") && token.FindAll([]byte(v)) != nil {
				delete(h, k)
				break
			}
		}
	}
	delete(h, "X-Keyhole-Token")
}

// methodOverrides are never honoured and never forwarded (SPEC §3.4):
// an upstream that honours them would run a method the rules never saw.
var methodOverrides = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method"}

// checkRequest is step 4: SPEC §3.4's refusals that need the proxy.
func (g *Gateway) checkRequest(r *http.Request, x *exchange) *refusal {
	p := x.proxy
	dec, err := policy.CanonicalPath(x.rawPath, policy.PathOptions{AllowSemicolons: p.Spec.AllowSemicolons})
	if err != nil {
		msg := "the path is not in canonical form"
		var pe *policy.PathError
		if errors.As(err, &pe) {
			msg = pe.Error()
		}
		return &refusal{status: http.StatusBadRequest, reason: "bad_path", message: msg + "; keyhole forwards only paths whose meaning is unambiguous"}
	}
	x.path = dec
	x.rec.Path = clipTarget(dec)
	if f := checkQuery(x.rawQuery, p.InjectedParams); f != nil {
		return f
	}
	// A keyhole token in the target would travel to the upstream (and
	// into logs): it belongs in a header, which keyhole strips.
	if strings.Contains(x.rawPath, "kh") || strings.Contains(x.rawQuery, "kh") {
		if token.FindAll([]byte(dec)) != nil || token.FindAll([]byte(x.rawQuery)) != nil {
			return &refusal{status: http.StatusBadRequest, reason: "token_in_url",
				message: "a keyhole token is in the URL; send it in the Authorization header instead (keyhole never forwards it)"}
		}
	}
	if r.Header.Get("Upgrade") != "" && !p.Spec.AllowWebsocket {
		return &refusal{status: http.StatusBadRequest, reason: "upgrade_refused",
			message: "protocol upgrades (WebSocket) are refused on this proxy; set allow_websocket to allow them"}
	}
	for _, h := range methodOverrides {
		delete(r.Header, h)
	}
	return nil
}

// checkQuery refuses a query that does not parse, has more than 1,000
// parameters, or sets a parameter that the proxy's auth injects.
func checkQuery(raw string, injected map[string]bool) *refusal {
	if raw == "" {
		return nil
	}
	if strings.Count(raw, "&")+1 > MaxQueryParams {
		return &refusal{status: http.StatusBadRequest, reason: "bad_query", message: fmt.Sprintf("the query has more than %d parameters", MaxQueryParams)}
	}
	for _, part := range strings.Split(raw, "&") {
		if strings.ContainsAny(part, ";\x00") {
			return &refusal{status: http.StatusBadRequest, reason: "bad_query", message: "the query holds a ; or NUL (ambiguous separators are refused)"}
		}
		k, v, _ := strings.Cut(part, "=")
		uk, err1 := unescapeQuery(k)
		_, err2 := unescapeQuery(v)
		if err1 != nil || err2 != nil {
			return &refusal{status: http.StatusBadRequest, reason: "bad_query", message: "the query holds an invalid percent escape"}
		}
		if injected[uk] {
			return &refusal{status: http.StatusBadRequest, reason: "bad_query",
				message: fmt.Sprintf("the query parameter %q is set by keyhole's upstream auth; the agent cannot send it", uk)}
		}
	}
	return nil
}
