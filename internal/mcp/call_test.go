package mcp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

func TestBuildRequest(t *testing.T) {
	o := Options{RawToken: "kh_test"}
	for _, tc := range []struct {
		name, args string
		wantURI    string
		wantBody   string
		wantCT     string
		wantErr    string
	}{
		{name: "get with query", args: `{"method":"get","path":"/v1/items/a b","query":{"limit":3,"tag":["x","y"],"q":"a&b"}}`,
			wantURI: "/px/v1/items/a%20b?limit=3&q=a%26b&tag=x&tag=y"},
		{name: "query string", args: `{"method":"GET","path":"/v1","query":"?a=1&b=2"}`, wantURI: "/px/v1?a=1&b=2"},
		{name: "json body", args: `{"method":"POST","path":"/v1/charges","body":{"amount":10.50,"n":[1]}}`,
			wantURI: "/px/v1/charges", wantBody: `{"amount":10.50,"n":[1]}`, wantCT: "application/json"},
		{name: "string body", args: `{"method":"POST","path":"/v1/c","body":"a=1&b=2","headers":{"content-type":"application/x-www-form-urlencoded"}}`,
			wantURI: "/px/v1/c", wantBody: "a=1&b=2", wantCT: "application/x-www-form-urlencoded"},
		{name: "escapes kept", args: `{"method":"GET","path":"/v1/a%2Fb/é"}`, wantURI: "/px/v1/a%2Fb/%C3%A9"},
		{name: "no path", args: `{"method":"GET"}`, wantErr: "path must start with /"},
		{name: "url", args: `{"method":"GET","path":"https://x.example/"}`, wantErr: "path must start with /"},
		{name: "query in path", args: `{"method":"GET","path":"/a?b=1"}`, wantErr: "must not hold ?"},
		{name: "bad method", args: `{"method":"GE T","path":"/"}`, wantErr: "HTTP method"},
		{name: "authorization", args: `{"method":"GET","path":"/","headers":{"authorization":"Bearer x"}}`, wantErr: "cannot set Authorization"},
		{name: "token header", args: `{"method":"GET","path":"/","headers":{"X-Keyhole-Token":"kh_x"}}`, wantErr: "cannot set X-Keyhole-Token"},
		{name: "host", args: `{"method":"GET","path":"/","headers":{"Host":"evil"}}`, wantErr: "cannot set Host"},
		{name: "header injection", args: `{"method":"GET","path":"/","headers":{"X-A":"1\r\nX-B: 2"}}`, wantErr: "line break"},
		{name: "bad header name", args: `{"method":"GET","path":"/","headers":{"X A":"1"}}`, wantErr: "not valid"},
		{name: "unknown field", args: `{"method":"GET","path":"/","url":"x"}`, wantErr: "unknown field"},
		{name: "bad query", args: `{"method":"GET","path":"/","query":{"a":{"b":1}}}`, wantErr: "string or a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := buildRequest(context.Background(), o, "px", json.RawMessage(tc.args))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.RequestURI != tc.wantURI || r.URL.RequestURI() != tc.wantURI {
				t.Errorf("RequestURI %q (URL %q), want %q", r.RequestURI, r.URL.RequestURI(), tc.wantURI)
			}
			if r.Header.Get("Authorization") != "Bearer kh_test" || r.Host != "" {
				t.Errorf("Authorization %q, Host %q", r.Header.Get("Authorization"), r.Host)
			}
			b, _ := io.ReadAll(r.Body)
			if string(b) != tc.wantBody || r.ContentLength != int64(len(tc.wantBody)) || r.Header.Get("Content-Type") != tc.wantCT {
				t.Errorf("body %q (length %d, type %q), want %q (%q)", b, r.ContentLength, r.Header.Get("Content-Type"), tc.wantBody, tc.wantCT)
			}
		})
	}
}

// TestCallThroughPipeline checks what a call does with what the pipeline
// answers: the result's status, headers subset, body, keyhole's error code,
// truncation, binary bodies, and an aborted response.
func TestCallThroughPipeline(t *testing.T) {
	tool := &proxyTool{proxy: "px"}
	run := func(h http.HandlerFunc, max int) (*sdk.CallToolResult, Result) {
		t.Helper()
		res := call(context.Background(), Options{Pipeline: h, RawToken: "kh_x", MaxResultBytes: max}, tool, json.RawMessage(`{"method":"GET","path":"/v1"}`))
		var r Result
		if err := json.Unmarshal([]byte(res.Content[0].(*sdk.TextContent).Text), &r); err != nil {
			t.Fatal(err)
		}
		if sc, ok := res.StructuredContent.(*Result); !ok || sc.Status != r.Status || sc.Body != r.Body {
			t.Errorf("structured content %#v differs from the text %+v", res.StructuredContent, r)
		}
		return res, r
	}
	res, r := run(func(w http.ResponseWriter, req *http.Request) {
		if req.RequestURI != "/px/v1" || req.Header.Get("Authorization") != "Bearer kh_x" {
			t.Errorf("the pipeline got %s %v", req.RequestURI, req.Header)
		}
		w.Header().Set("X-Keyhole-Request-Id", "rid-1")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.Header().Set("X-Ratelimit-Remaining", "0")
		w.Header().Set("Set-Cookie", "s=1")
		w.WriteHeader(429)
		io.WriteString(w, `{"error":{"message":"slow down"}}`)
	}, 0)
	if !res.IsError || r.Status != 429 || r.RequestID != "rid-1" || r.Error != nil || r.Body != `{"error":{"message":"slow down"}}` {
		t.Errorf("an upstream 429 → %+v (isError %v)", r, res.IsError)
	}
	if !maps(r.Headers, map[string]string{"content-type": "application/json", "retry-after": "3", "x-ratelimit-remaining": "0"}) {
		t.Errorf("headers kept: %v", r.Headers)
	}
	_, r = run(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("X-Keyhole-Request-Id", "rid-2")
		w.WriteHeader(403)
		io.WriteString(w, `{"error":{"code":"denied_by_rule","message":"denied by rule x of proxy px","request_id":"rid-2"}}`)
	}, 0)
	if r.Error == nil || r.Error.Code != "denied_by_rule" || !strings.Contains(r.Error.Message, "rule x") {
		t.Errorf("keyhole's refusal → %+v", r)
	}
	_, r = run(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, strings.Repeat("é", 10)) // 20 bytes
	}, 7)
	if !r.Truncated || r.Body != "ééé" || r.Status != 200 {
		t.Errorf("a cut body → %+v", r)
	}
	_, r = run(func(w http.ResponseWriter, req *http.Request) { w.Write([]byte{0xff, 0x00, 0x01}) }, 0)
	if r.BodyEncoding != "base64" || r.Body != "/wAB" {
		t.Errorf("a binary body → %+v", r)
	}
	res, r = run(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "partial")
		panic(http.ErrAbortHandler)
	}, 0)
	if !r.Truncated || r.Body != "partial" {
		t.Errorf("an aborted response → %+v", r)
	}
	res, r = run(func(w http.ResponseWriter, req *http.Request) { panic(http.ErrAbortHandler) }, 0)
	if !res.IsError || r.Error == nil || r.Error.Code != "upstream_aborted" {
		t.Errorf("a call aborted before any answer → %+v", r)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMethodsAndDescription(t *testing.T) {
	rs := []spec.Rule{
		{Name: "r", Effect: "allow", Methods: []string{"GET", "PROPFIND"}, Paths: []string{"/a"}},
		{Name: "w", Effect: "allow", Methods: []string{"POST"}, Paths: []string{"/b"}, When: "request.json.x\n  == 1", RateLimit: "5/m"},
		{Name: "d", Effect: "deny", Paths: []string{"/admin/**"}},
	}
	all := allowedMethods(rs)
	for _, tc := range []struct {
		name      string
		proxy, tk map[string]bool
		hasTok    bool
		want      []string
	}{
		{"proxy only", all, nil, false, []string{"GET", "POST", "PROPFIND"}},
		{"every method", nil, nil, false, standardMethods},
		{"token narrows", all, map[string]bool{"GET": true}, true, []string{"GET"}},
		{"token of every method", all, nil, true, []string{"GET", "POST", "PROPFIND"}},
		{"proxy of every method", nil, map[string]bool{"DELETE": true}, true, []string{"DELETE"}},
		{"nothing in common", all, map[string]bool{"PUT": true}, true, standardMethods},
		{"nothing allowed", map[string]bool{}, nil, false, standardMethods},
	} {
		if got := intersect(tc.proxy, tc.tk, tc.hasTok); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := ruleLine(rs[1]); got != "allow POST /b when request.json.x == 1 (rate limit 5/m) [rule w]" {
		t.Errorf("ruleLine = %q", got)
	}
	if got := ruleLine(rs[2]); got != "deny any method /admin/** [rule d]" {
		t.Errorf("ruleLine = %q", got)
	}
	if a := annotations([]string{"GET", "HEAD"}); !a.ReadOnlyHint {
		t.Errorf("a GET-only tool is read-only")
	}
	if a := annotations([]string{"GET", "POST"}); a.ReadOnlyHint {
		t.Errorf("a tool that POSTs is not read-only")
	}
}
