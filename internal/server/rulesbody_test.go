package server

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"
)

// Hostile bodies against rules that read them (SPEC §5, issue 3): one row
// per attack class, each asserting the refusal (or the decision) and that
// nothing refused reached the upstream.
func TestRuleBodiesHoldAgainstEncodingTricks(t *testing.T) {
	n := startNode(t)
	small := rule("small", "allow", "POST /v1/pay")
	small["when"] = "request.json.amount <= 100"
	noAdmin := rule("no-admin", "deny", "POST,PUT,PATCH /**")
	noAdmin["when"] = "has(request.json.admin) && request.json.admin == true"
	oneA := rule("one-a", "deny", "GET /v1/q")
	oneA["when"] = "size(request.query['a']) > 1"
	readQ := rule("read", "allow", "GET /v1/**")
	f := n.fx("body", map[string]any{"max_rule_body": 4096}, small, noAdmin, oneA, readQ)

	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte(`{"amount":1,"pad":"`))
	zw.Write(bytes.Repeat([]byte("0"), 10<<20))
	zw.Write([]byte(`"}`))
	zw.Close()
	var okGz bytes.Buffer
	zw = gzip.NewWriter(&okGz)
	zw.Write([]byte(`{"amount":5}`))
	zw.Close()
	const js = "application/json"
	for _, c := range []struct {
		name, method, path, ctype, body string
		hdr                             []string
		chunked                         bool
		want                            int
		code                            string
	}{
		{"control: allowed", "POST", "/v1/pay", js, `{"amount":50}`, nil, false, 200, ""},
		{"gzip bomb: 10 MiB of zeros in 10 KiB", "POST", "/v1/pay", js, bomb.String(), []string{"Content-Encoding", "gzip"}, false, 413, "body_too_large"},
		{"gzip within the cap", "POST", "/v1/pay", js, okGz.String(), []string{"Content-Encoding", "gzip"}, false, 200, ""},
		{"deflate is not decoded", "POST", "/v1/pay", js, okGz.String(), []string{"Content-Encoding", "deflate"}, false, 415, "unsupported_encoding"},
		{"chunked body over the cap (no Content-Length)", "POST", "/v1/pay", js, `{"amount":1,"pad":"` + strings.Repeat("p", 5000) + `"}`, nil, true, 413, "body_too_large"},
		{"chunked body within the cap", "POST", "/v1/pay", js, `{"amount":7}`, nil, true, 200, ""},
		{"JSON relabelled text/plain is still JSON to the rules", "POST", "/v1/pay", "text/plain", `{"amount":5,"admin":true}`, nil, false, 403, "denied_by_rule"},
		{"JSON relabelled form is still JSON to the rules", "POST", "/v1/pay", "application/x-www-form-urlencoded", `{"amount":5,"admin":true}`, nil, false, 403, "denied_by_rule"},
		{"escaped key \\u0061mount is amount", "POST", "/v1/pay", js, `{"\u0061mount":500}`, nil, false, 403, "no_rule_allows"},
		{"duplicate key (first small, last big)", "POST", "/v1/pay", js, `{"amount":5,"amount":500}`, nil, false, 400, "bad_body"},
		{"case-variant key is another key", "POST", "/v1/pay", js, `{"Amount":5}`, nil, false, 403, "no_rule_allows"},
		{"labelled JSON that does not parse", "POST", "/v1/pay", js, `{"amount":5`, nil, false, 400, "bad_body"},
		{"nesting 65 deep", "POST", "/v1/pay", js, `{"amount":5,"d":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, nil, false, 400, "bad_body"},
		{"huge exponent", "POST", "/v1/pay", js, `{"amount":1e400}`, nil, false, 400, "bad_body"},
		{"integer beyond int64 compares as double", "POST", "/v1/pay", js, `{"amount":92233720368547758070}`, nil, false, 403, "no_rule_allows"},
		{"GET with a body on a body-reading proxy", "GET", "/v1/x", js, `{"admin":true}`, nil, false, 400, "bad_body"},
		{"query duplicates are a list", "GET", "/v1/q?a=1&a=2", "", "", nil, false, 403, "denied_by_rule"},
		{"query single value", "GET", "/v1/q?a=1", "", "", nil, false, 200, ""},
	} {
		before := f.up.count()
		hdr := append([]string{}, c.hdr...)
		if c.ctype != "" {
			hdr = append(hdr, "Content-Type", c.ctype)
		}
		var r *resp
		if c.chunked {
			r = n.rawResp(chunkedReq(c.method, "/body"+c.path, f.tok, c.body, hdr...))
		} else {
			r = n.rawResp(rawReq(c.method, "/body"+c.path, f.tok, c.body, hdr...))
		}
		switch {
		case r.status != c.want:
			t.Errorf("[%s] want %d %s, got %s", c.name, c.want, c.code, r)
		case c.code != "" && r.errCode() != c.code:
			t.Errorf("[%s] want code %s, got %s", c.name, c.code, r)
		case c.want != 200 && f.up.count() != before:
			t.Errorf("[%s] refused, yet the upstream received it", c.name)
		case c.want == 200 && !c.chunked && c.hdr == nil && string(f.up.last().Body) != c.body:
			t.Errorf("[%s] the evaluated body is forwarded byte for byte; upstream got %q", c.name, f.up.last().Body)
		}
	}
}

// chunkedReq is a request with a chunked body (no Content-Length).
func chunkedReq(method, target, tok, body string, hdr ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: k\r\nConnection: close\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n", method, target, tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	for rest := body; rest != ""; {
		k := min(len(rest), 1000)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", k, rest[:k])
		rest = rest[k:]
	}
	return b.String() + "0\r\n\r\n"
}
