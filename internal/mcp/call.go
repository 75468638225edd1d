package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/keyhole-gw/keyhole/internal/policy"
)

// callArgs are a call_<proxy> tool's arguments (inputSchema).
type callArgs struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   json.RawMessage   `json:"query"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// Result is a tool call's structured result (also sent, as JSON, as the
// result's text content, which is what most MCP clients show a model).
type Result struct {
	// Status is the HTTP status the agent got (keyhole's own or the
	// upstream's).
	Status int `json:"status"`
	// Headers is a subset of the response headers: those a caller acts
	// on (Content-Type, Location, Retry-After, rate-limit and request-id
	// headers).
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the response body, scrubbed of secrets; base64 when it is
	// not UTF-8 (BodyEncoding says so); cut at the result limit when
	// Truncated.
	Body         string `json:"body"`
	BodyEncoding string `json:"body_encoding,omitempty"`
	Truncated    bool   `json:"truncated,omitempty"`
	// RequestID is the call's audit record id (X-Keyhole-Request-Id).
	RequestID string `json:"request_id,omitempty"`
	// Error is keyhole's refusal (code and message) when keyhole, not the
	// upstream, answered with an error.
	Error *ResultError `json:"error,omitempty"`
}

// ResultError is keyhole's error envelope (SPEC §3.3) inside a result.
type ResultError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// call runs one tool call through the gateway pipeline in-process: the
// request is built as the agent would have sent it to GATEWAY/<proxy>/…,
// with the agent's token in Authorization, and handed to the gateway's own
// handler, which authenticates, checks scope, path and rules, writes the
// audit record, injects the credential, forwards and scrubs — nothing of
// that is repeated or skipped here.
func call(ctx context.Context, o Options, t *proxyTool, raw json.RawMessage) *sdk.CallToolResult {
	req, err := buildRequest(ctx, o, t.proxy, raw)
	if err != nil {
		return errorResult("invalid_arguments", err.Error())
	}
	w := newCapture(o.MaxResultBytes)
	if err := serve(o.Pipeline, w, req); err != nil {
		if w.status == 0 {
			return errorResult("upstream_aborted", "the call failed before keyhole answered: "+err.Error())
		}
		// The answer started and was cut off (an upstream that failed
		// mid-stream): return what came, marked.
		w.truncated = true
	}
	return w.result()
}

// serve calls h and turns a panic into an error: the gateway aborts a
// response that fails mid-stream with http.ErrAbortHandler (net/http's way
// to cut a connection), and here no net/http server is there to catch it.
func serve(h http.Handler, w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				err = errors.New("the response was cut off")
				return
			}
			err = fmt.Errorf("internal error")
		}
	}()
	h.ServeHTTP(w, r)
	return nil
}

// refusedHeaders cannot be set through a tool call: the token headers are
// keyhole's, the framing and hop-by-hop headers are the transport's.
var refusedHeaders = map[string]string{
	"Authorization":       "keyhole authenticates the call with this session's token and adds the API's credential itself",
	"X-Keyhole-Token":     "keyhole authenticates the call with this session's token",
	"Proxy-Authorization": "keyhole authenticates the call with this session's token",
	"Host":                "the host is the API's",
	"Content-Length":      "keyhole frames the body",
	"Transfer-Encoding":   "keyhole frames the body",
	"Connection":          "hop-by-hop headers are the transport's",
	"Keep-Alive":          "hop-by-hop headers are the transport's",
	"Te":                  "hop-by-hop headers are the transport's",
	"Trailer":             "hop-by-hop headers are the transport's",
	"Upgrade":             "protocol upgrades are not possible through a tool call",
}

func buildRequest(ctx context.Context, o Options, proxy string, raw json.RawMessage) (*http.Request, error) {
	var a callArgs
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("the arguments must be an object {method, path, query, headers, body}: %s", jsonProblem(err))
	}
	a.Method = strings.ToUpper(strings.TrimSpace(a.Method))
	if !policy.ValidMethod(a.Method) {
		return nil, errors.New("method must be an HTTP method such as GET or POST")
	}
	if !strings.HasPrefix(a.Path, "/") {
		return nil, errors.New("path must start with / (the API's own path, e.g. /v1/items; not a URL)")
	}
	if strings.ContainsAny(a.Path, "?#") {
		return nil, errors.New("path must not hold ? or #: give query parameters in query")
	}
	query, err := encodeQuery(a.Query)
	if err != nil {
		return nil, err
	}
	target := "/" + proxy + escapePath(a.Path)
	if query != "" {
		target += "?" + query
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, errors.New("path is not a valid URL path")
	}
	h := http.Header{}
	for k, v := range a.Headers {
		if !policy.ValidMethod(k) { // a header name is an RFC 9110 token, like a method
			return nil, fmt.Errorf("header name %q is not valid", clip(k))
		}
		ck := http.CanonicalHeaderKey(k)
		if why, bad := refusedHeaders[ck]; bad {
			return nil, fmt.Errorf("headers cannot set %s: %s", ck, why)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("the value of header %s holds a line break or NUL", ck)
		}
		h.Set(ck, v)
	}
	var body []byte
	if b := bytes.TrimSpace(a.Body); len(b) > 0 && !bytes.Equal(b, []byte("null")) {
		if b[0] == '"' {
			var s string
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, errors.New("body does not parse")
			}
			body = []byte(s)
		} else {
			// A JSON value is forwarded exactly as the client wrote it
			// (numbers are never rewritten).
			body = b
			if h.Get("Content-Type") == "" {
				h.Set("Content-Type", "application/json")
			}
		}
	}
	h.Set("Authorization", "Bearer "+o.RawToken)
	r := (&http.Request{
		Method:     a.Method,
		URL:        u,
		RequestURI: target,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		// No Host: the gateway routes by path (host routing needs a Host
		// under --host-suffix, which this request never has).
		Host:       "",
		RemoteAddr: remoteAddr(ctx),
	}).WithContext(ctx)
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	return r, nil
}

// remoteAddr is the MCP client's address (the SDK keeps the HTTP request's
// context, with the connection's values, for tool handlers).
func remoteAddr(ctx context.Context) string {
	if a, ok := ctx.Value(remoteAddrKey{}).(string); ok {
		return a
	}
	return "mcp"
}

type remoteAddrKey struct{}

// WithRemoteAddr records the MCP client's address for the tool calls of a
// request.
func WithRemoteAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, addr)
}

// encodeQuery accepts an object of string or string-list values (encoded
// in key order) or, leniently, a query string.
func encodeQuery(raw json.RawMessage) (string, error) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return "", nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", errors.New("query does not parse")
		}
		return strings.TrimPrefix(s, "?"), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return "", errors.New("query must be an object: name → value or list of values")
	}
	v := url.Values{}
	for k, val := range m {
		var s string
		if err := json.Unmarshal(val, &s); err == nil {
			v.Add(k, s)
			continue
		}
		var l []string
		if err := json.Unmarshal(val, &l); err == nil {
			v[k] = append(v[k], l...)
			continue
		}
		// Numbers and booleans, as models often write them.
		if lit := bytes.TrimSpace(val); len(lit) > 0 && strings.IndexByte("-0123456789tf", lit[0]) >= 0 {
			v.Add(k, string(lit))
			continue
		}
		return "", fmt.Errorf("query parameter %q must be a string or a list of strings", clip(k))
	}
	return v.Encode(), nil
}

// escapePath percent-encodes the bytes that cannot appear raw in a URL
// path (spaces, quotes, non-ASCII…), leaving everything else — existing
// escapes included — as the caller wrote it. The gateway then checks the
// path's canonical form exactly as for any HTTP request.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if pathByte(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// pathByte reports RFC 3986 pchar bytes, "/" and "%".
func pathByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

func jsonProblem(err error) string {
	s := err.Error()
	if strings.HasPrefix(s, "json: unknown field ") {
		return "unknown field " + clip(strings.TrimPrefix(s, "json: unknown field "))
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field + " has the wrong type"
	}
	return "they do not parse"
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func errorResult(code, msg string) *sdk.CallToolResult {
	res := &Result{Error: &ResultError{Code: code, Message: msg}}
	js, _ := marshal(res)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: string(js)}}, StructuredContent: res}
}

// marshal encodes without HTML escaping: the result is read by a model,
// and "\u0026" for "&" is noise.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// capture is the ResponseWriter of an in-process call: it keeps the status,
// the headers and up to max bytes of the body.
type capture struct {
	hdr       http.Header
	status    int
	buf       bytes.Buffer
	max       int
	truncated bool
}

func newCapture(max int) *capture {
	if max <= 0 {
		max = DefaultMaxResultBytes
	}
	return &capture{hdr: http.Header{}, max: max}
}

func (c *capture) Header() http.Header { return c.hdr }

func (c *capture) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		return // informational
	}
	if c.status == 0 {
		c.status = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	if c.buf.Len()+len(p) > c.max {
		c.truncated = true
	}
	return len(p), nil
}

// Flush is a no-op: the body is returned whole once the call is over.
func (c *capture) Flush() {}

// resultHeaders are the response headers a result keeps (lower-case
// prefixes end in "-").
var resultHeaders = []string{"content-type", "location", "retry-after", "link", "etag", "last-modified",
	"request-id", "x-request-id", "stripe-should-retry", "idempotent-replayed", "mcp-session-id",
	"x-ratelimit-", "ratelimit-", "ratelimit", "anthropic-ratelimit-"}

func keepHeader(name string) bool {
	n := strings.ToLower(name)
	for _, h := range resultHeaders {
		if n == h || strings.HasSuffix(h, "-") && strings.HasPrefix(n, h) {
			return true
		}
	}
	return false
}

func (c *capture) result() *sdk.CallToolResult {
	status := c.status
	if status == 0 {
		status = http.StatusOK
	}
	res := &Result{Status: status, RequestID: c.hdr.Get("X-Keyhole-Request-Id"), Truncated: c.truncated}
	keys := make([]string, 0, len(c.hdr))
	for k := range c.hdr {
		if keepHeader(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if res.Headers == nil {
			res.Headers = map[string]string{}
		}
		res.Headers[strings.ToLower(k)] = strings.Join(c.hdr[k], ", ")
	}
	body := c.buf.Bytes()
	if c.truncated {
		// Do not end inside a UTF-8 sequence that the cut split.
		for i := 0; i < utf8.UTFMax && len(body) > 0 && !utf8.Valid(body); i++ {
			body = body[:len(body)-1]
		}
	}
	if utf8.Valid(body) {
		res.Body = string(body)
	} else {
		res.Body, res.BodyEncoding = base64.StdEncoding.EncodeToString(body), "base64"
	}
	if status >= 400 {
		res.Error = keyholeError(body, res.RequestID)
	}
	js, _ := marshal(res)
	return &sdk.CallToolResult{IsError: status >= 400, Content: []sdk.Content{&sdk.TextContent{Text: string(js)}}, StructuredContent: res}
}

// keyholeError reads keyhole's error envelope (SPEC §3.3) from a body whose
// request_id is the call's own: an upstream's error has another shape or
// another id.
func keyholeError(body []byte, rid string) *ResultError {
	var e struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if rid == "" || json.Unmarshal(body, &e) != nil || e.Error.Code == "" || e.Error.RequestID != rid {
		return nil
	}
	return &ResultError{Code: e.Error.Code, Message: e.Error.Message}
}
