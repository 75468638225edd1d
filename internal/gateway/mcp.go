package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/mcp"
	"github.com/keyhole-gw/keyhole/internal/policy"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/version"
)

// MCP support (SPEC §8; the protocol side is internal/mcp):
//
//   - serveMCP answers /-/mcp, keyhole's own MCP server for the calling
//     agent. Each tool call runs through this Gateway's ServeHTTP
//     in-process, so it gets its own decision and audit record exactly as
//     an HTTP call to GATEWAY/<proxy>/… would.
//   - mcpListing and filterMCPTools filter an MCP upstream's tools/list
//     answers down to the tools the agent's rules let it call (forward.go
//     calls them).

// mcpCapture bounds the JSON-RPC request body kept in a /-/mcp record.
const mcpCapture = 64 << 10

// maxMCPResponse bounds a held /-/mcp answer; a larger one streams.
const maxMCPResponse = 8 << 20

// serveMCP is /-/mcp: authenticated like any call (Authorization: Bearer
// or X-Keyhole-Token; no token → 401), recorded as one request of proxy
// "-keyhole" (its JSON-RPC request body captured), and answered by the MCP
// server of internal/mcp. The answer is held until the record's end is
// committed, as for forwarded calls (SPEC §6 sync durability).
func (g *Gateway) serveMCP(w http.ResponseWriter, r *http.Request, x *exchange) {
	// The raw token is read before authenticate strips its header: the
	// tool calls present it again, each to the full pipeline.
	raw, _ := tokenFrom(r, nil)
	if f := g.authenticate(r, x, nil); f != nil {
		g.refuse(w, r, x, f)
		return
	}
	x.rec.Decision, x.rec.Reason = audit.Allow, "ok"
	if err := g.Audit.Begin(r.Context(), &x.rec); err != nil {
		g.auditFailed(w, r, x, err)
		return
	}
	var reqTap *tap
	if r.Body != nil && r.Body != http.NoBody {
		reqTap = newTap(&idleReadCloser{idleReader{r: r.Body, w: w, d: g.BodyIdleTimeout}, r.Body}, mcpCapture+maxTokenLen, true)
		r.Body = reqTap
	}
	hw := &heldWriter{ResponseWriter: w}
	h := mcp.Handler(mcp.Options{Snapshot: x.snap, Token: x.tok, Agent: x.agent, RawToken: raw, Pipeline: g,
		Version: version.String(), Logger: g.Logger})
	ctx := mcp.WithRemoteAddr(r.Context(), r.RemoteAddr)
	h.ServeHTTP(hw, r.WithContext(ctx))

	// Decision and reason stay the start's (as in forward).
	e := audit.End{Status: hw.code(), LatencyMS: msSince(x.start), ResponseBytes: hw.n}
	if reqTap != nil {
		e.RequestBytes = reqTap.n
		e.RequestBody = (*audit.Redactor)(nil).Capture(reqTap.buf.Bytes(), mcpCapture, reqTap.n > int64(reqTap.buf.Len()), r.Header.Get("Content-Type"))
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	err := g.Audit.Finish(fctx, x.rid, &e)
	g.observe(x, e.Status, audit.Allow)
	if err != nil {
		// As for forwarded calls: the answer never ends before its record
		// (SPEC §6 sync); the end event is kept and retried.
		g.Logger.Warn("the end of an MCP call's audit record cannot be committed; aborting the response", "request_id", x.rid, "err", err)
		panic(http.ErrAbortHandler)
	}
	hw.release()
}

// heldWriter keeps the MCP handler's answer (one JSON-RPC response, or
// an error) until release; past maxMCPResponse it streams.
type heldWriter struct {
	http.ResponseWriter
	status    int
	buf       bytes.Buffer
	streaming bool
	n         int64
}

func (h *heldWriter) code() int {
	if h.status == 0 {
		return http.StatusOK
	}
	return h.status
}

func (h *heldWriter) WriteHeader(code int) {
	if h.status == 0 && code >= 200 {
		h.status = code
	}
}

func (h *heldWriter) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	if !h.streaming && h.buf.Len()+len(p) <= maxMCPResponse {
		return h.buf.Write(p)
	}
	if !h.streaming {
		h.streaming = true
		h.ResponseWriter.Header().Del("Content-Length")
		h.ResponseWriter.WriteHeader(h.code())
		if _, err := h.ResponseWriter.Write(h.buf.Bytes()); err != nil {
			return 0, err
		}
		h.buf = bytes.Buffer{}
	}
	return h.ResponseWriter.Write(p)
}

// Flush is deferred to release while the answer is held.
func (h *heldWriter) Flush() {
	if h.streaming {
		http.NewResponseController(h.ResponseWriter).Flush()
	}
}

func (h *heldWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h *heldWriter) release() {
	if h.streaming {
		return
	}
	if h.status != http.StatusNoContent && h.status != http.StatusNotModified {
		h.ResponseWriter.Header().Set("Content-Length", strconv.Itoa(h.buf.Len()))
	}
	h.ResponseWriter.WriteHeader(h.code())
	h.ResponseWriter.Write(h.buf.Bytes())
}

// mcpListing returns the tools/list requests of a request to an MCP
// upstream whose body the rules read (nil otherwise: then no rule tells one
// tool from another, and there is nothing to filter — internal/mcp's
// upstream.go says why). Called by forward before the request leaves.
func (g *Gateway) mcpListing(r *http.Request, x *exchange, body *rules.Body) *mcp.Listing {
	if body == nil || r.Method != http.MethodPost {
		return nil
	}
	// Without the bytes "tools/list" and without any escape (JSON could
	// spell it "tools\/list" or with \u escapes), no string of the body
	// is tools/list: no need to parse what the rules may not have parsed.
	if !bytes.Contains(body.Data, []byte("tools/list")) && bytes.IndexByte(body.Data, '\\') < 0 {
		return nil
	}
	v, ok := body.JSON()
	if !ok {
		return nil
	}
	in := rules.Input{Method: r.Method, Path: x.path, RawQuery: x.rawQuery, Header: r.Header.Clone(), Agent: x.tok.Agent, TokenID: x.tok.ID}
	if x.proxy.Spec.CaseInsensitivePaths {
		in.Path = policy.FoldCase(x.path)
	}
	if x.agent != nil {
		in.Labels = x.agent.Labels
	}
	sets := []*rules.Set{x.proxy.Rules, x.tok.RulesFor(x.proxy.Spec.CaseInsensitivePaths)}
	ct := r.Header.Get("Content-Type")
	l := mcp.NewListing(v, func(id any, tool string) bool { return mcp.ToolAllowed(in, ct, id, tool, sets...) })
	if l != nil {
		l.OnFilter = func() { x.end.Filtered = true }
	}
	return l
}

// filterMCPTools filters an MCP upstream's answer to a tools/list request
// (mcpListing): JSON is buffered (bounded; larger → 502 filter_too_large,
// never passed on unfiltered), an event stream is filtered event by event.
func (g *Gateway) filterMCPTools(res *http.Response, x *exchange, body io.ReadCloser) (io.ReadCloser, error) {
	if x.mcp == nil || res.Request.Method == http.MethodHead || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified {
		return body, nil
	}
	out, n, wrapped, err := x.mcp.Filter(res.Header.Get("Content-Type"), body, maxFilterBody)
	switch {
	case errors.Is(err, mcp.ErrTooLarge):
		return nil, errFilterTooLarge
	case err != nil:
		return nil, err
	case !wrapped:
		return body, nil
	}
	res.ContentLength = n
	if n >= 0 {
		res.Header.Set("Content-Length", strconv.FormatInt(n, 10))
	} else {
		res.Header.Del("Content-Length")
	}
	return out, nil
}
