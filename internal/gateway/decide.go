package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/policy"
	"github.com/keyhole-gw/keyhole/internal/rules"
)

func unescapeQuery(s string) (string, error) { return url.QueryUnescape(s) }

// hasBody reports whether the request carries a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody
}

// readBodyForRules buffers the body when a rule of the proxy (or of the
// child token) reads it: up to max_rule_body (413 beyond: a prefix is never
// inspected while the rest is forwarded), gzip decoded under the same cap,
// other encodings refused (415), and a body labelled JSON that does not
// parse refused (400). The buffered bytes are what is forwarded.
func (g *Gateway) readBodyForRules(w http.ResponseWriter, r *http.Request, x *exchange) (*rules.Body, *refusal) {
	p := x.proxy
	tr := x.tok.RulesFor(p.Spec.CaseInsensitivePaths)
	need := p.Rules.Body || tr != nil && tr.Body
	if !need {
		return nil, nil
	}
	if rules.BodylessMethods(r.Method) {
		if hasBody(r) {
			return nil, &refusal{status: http.StatusBadRequest, reason: "bad_body",
				message: r.Method + " requests carry no body on this proxy (its rules read bodies, and GET/HEAD bodies are never parsed)"}
		}
		return nil, nil
	}
	if !hasBody(r) {
		return rules.NewBody(nil, r.Header.Get("Content-Type")), nil
	}
	limit := p.Spec.MaxRuleBody
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	g.extendBodyDeadline(w)
	raw, err := io.ReadAll(io.LimitReader(&idleReader{r: r.Body, w: w, d: g.BodyIdleTimeout}, limit+1))
	if err != nil {
		return nil, &refusal{status: http.StatusBadRequest, reason: "bad_body", message: "the request body could not be read completely"}
	}
	if int64(len(raw)) > limit {
		return nil, tooLarge(limit)
	}
	// What is forwarded is exactly what was read.
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.ContentLength = int64(len(raw))
	r.TransferEncoding = nil
	data := raw
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		data, err = gunzipCapped(raw, limit)
		if errors.Is(err, errTooLarge) {
			return nil, tooLarge(limit)
		}
		if err != nil {
			return nil, &refusal{status: http.StatusBadRequest, reason: "bad_body", message: "the gzip request body does not decode"}
		}
	default:
		return nil, &refusal{status: http.StatusUnsupportedMediaType, reason: "unsupported_encoding",
			message: "this proxy's rules read request bodies; keyhole decodes gzip only, so send the body uncompressed or gzip-encoded"}
	}
	b := rules.NewBody(data, r.Header.Get("Content-Type"))
	if rules.IsJSONType(b.ContentType) {
		if err := b.JSONErr(); err != nil {
			return nil, &refusal{status: http.StatusBadRequest, reason: "bad_body", message: err.Error()}
		}
	}
	return b, nil
}

func tooLarge(limit int64) *refusal {
	return &refusal{status: http.StatusRequestEntityTooLarge, reason: "body_too_large",
		message: fmt.Sprintf("this proxy's rules read request bodies up to %d bytes (max_rule_body); this one is larger", limit)}
}

var errTooLarge = errors.New("too large")

// gunzipCapped decodes gzip but never past limit bytes: a decompression
// bomb is refused, not expanded.
func gunzipCapped(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, errTooLarge
	}
	return out, nil
}

// decide is step 5: the proxy's rules, then a child token's own rules.
func (g *Gateway) decide(r *http.Request, x *exchange, body *rules.Body) *refusal {
	path := x.path
	if x.proxy.Spec.CaseInsensitivePaths {
		path = policy.FoldCase(path)
	}
	in := &rules.Input{Method: r.Method, Path: path, RawQuery: x.rawQuery, Header: r.Header, Agent: x.tok.Agent,
		TokenID: x.tok.ID, Body: body}
	if x.agent != nil {
		in.Labels = x.agent.Labels
	}
	d := x.proxy.Rules.Decide(in)
	x.decision = d
	x.rec.Rule, x.rec.Reason, x.rec.Report = d.Rule, d.Reason, d.Report
	if !d.Allow {
		if d.Rule != "" {
			return &refusal{status: http.StatusForbidden, reason: d.Reason, rule: d.Rule,
				message: fmt.Sprintf("denied by rule %s of proxy %s", d.Rule, x.proxy.Name)}
		}
		return &refusal{status: http.StatusForbidden, reason: d.Reason, message: msgNoRule}
	}
	if tr := x.tok.RulesFor(x.proxy.Spec.CaseInsensitivePaths); tr != nil {
		td := tr.Decide(in)
		x.rec.Report = append(x.rec.Report, td.Report...)
		if !td.Allow {
			x.rec.Rule = ""
			return &refusal{status: http.StatusForbidden, reason: "no_rule_allows:token",
				message: "the proxy's rules allow this request, but this token's own rules do not"}
		}
		x.tokDecision = &td
	}
	return nil
}

// refuse answers a keyhole-made error, after recording it (SPEC §3.3
// step 7: nothing is decided without a record; if the record cannot be
// committed the answer is 503 instead).
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, x *exchange, f *refusal) {
	x.rec.Decision = audit.Deny
	if f.status >= 500 {
		x.rec.Decision = audit.Error
	}
	x.rec.Reason = f.reason
	if f.rule != "" {
		x.rec.Rule = f.rule
	}
	if x.rec.RequestHeaders == nil {
		x.rec.RequestHeaders = x.redactor().Headers(r.Header)
	}
	x.rec.Query = x.redactor().Query(x.rec.Query)
	end := audit.End{Status: f.status, LatencyMS: msSince(x.start)}
	if err := g.Audit.Record(r.Context(), &x.rec, &end); err != nil {
		g.auditFailed(w, r, x, err)
		return
	}
	for k, v := range f.header {
		w.Header()[k] = v
	}
	writeError(w, f.status, f.code(), f.message, x.rid)
	g.observe(x, f.status, x.rec.Decision)
	g.Metrics.Denials.WithLabelValues(metricReason(f.reason)).Inc()
}

// metricReason keeps the reason label's values bounded: rule names come
// from configuration, everything else is a fixed code.
func metricReason(r string) string { return r }

func (g *Gateway) auditFailed(w http.ResponseWriter, r *http.Request, x *exchange, err error) {
	if errors.Is(err, context.Canceled) {
		return // the agent went away
	}
	g.Logger.Warn("request refused: its audit record cannot be committed", "request_id", x.rid, "err", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "audit_unavailable", msgAudit, x.rid)
	g.observe(x, http.StatusServiceUnavailable, audit.Error)
}

func (x *exchange) redactor() *audit.Redactor {
	if x.proxy != nil {
		return x.proxy.Redact
	}
	return nil
}

func (g *Gateway) observe(x *exchange, status int, decision string) {
	proxy := "-unknown"
	if x.proxy != nil {
		proxy = x.proxy.Name
	} else if x.rec.Proxy != "" {
		proxy = x.rec.Proxy
	}
	st := statusLabel(status)
	g.Metrics.Requests.WithLabelValues(proxy, st, decision).Inc()
	g.Metrics.Latency.WithLabelValues(proxy, st).Observe(time.Since(x.start).Seconds())
}

var statusLabels = func() map[int]string {
	m := map[int]string{}
	for i := 100; i < 600; i++ {
		m[i] = fmt.Sprint(i)
	}
	return m
}()

func statusLabel(s int) string {
	if l, ok := statusLabels[s]; ok {
		return l
	}
	return "other"
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// idleReader cuts off a client that stops sending its body: each read
// pushes the connection's read deadline forward by d.
type idleReader struct {
	r io.Reader
	w http.ResponseWriter
	d time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	http.NewResponseController(ir.w).SetReadDeadline(time.Now().Add(ir.d))
	return ir.r.Read(p)
}

func (g *Gateway) extendBodyDeadline(w http.ResponseWriter) {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.BodyIdleTimeout))
}
