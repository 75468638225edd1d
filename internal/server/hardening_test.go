package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestHostilePathsAreRefused pins SPEC §3.4: a path that is not in
// canonical form gets 400 bad_path before any rule runs and nothing reaches
// the upstream. The proxy allows every method and path, so only the
// canonical check stands between each path and the upstream. The attack it
// pins: a path that the rules read one way and the upstream another
// (traversal past a deny rule, Tomcat's "..;", double decoding, NUL
// truncation, overlong UTF-8 dots).
func TestHostilePathsAreRefused(t *testing.T) {
	n := startNode(t)
	f := n.fx("canon", nil, allowAll)
	if r := n.rawResp(rawReq("GET", "/canon/v1/items/1", f.tok, "")); r.status != http.StatusOK {
		t.Fatalf("control: a canonical path → want 200, got %s", r)
	}
	tests := []struct {
		name, path string
		anyBody    bool // an HTTP parser may refuse it first: only the status is checked
	}{
		{"dot-dot segment", "/v1/items/../admin", false},
		{"dot segment", "/v1/items/./1", false},
		{"encoded dot-dot", "/v1/items/%2e%2e/admin", false},
		{"encoded dot-dot, mixed case", "/v1/items/%2E%2e/admin", false},
		{"..; segment (Tomcat)", "/v1/items/..;/admin", false},
		{"encoded slash", "/v1/items%2fadmin", false},
		{"encoded slash, upper case", "/v1/items%2Fadmin", false},
		{"encoded backslash", "/v1/items%5cadmin", false},
		{"raw backslash", `/v1/items\admin`, false},
		{"empty first segment", "//v1/items/1", false},
		{"empty segment", "/v1//items/1", false},
		{"semicolon", "/v1/items/1;x=1", false},
		{"encoded NUL", "/v1/items/%00", false},
		{"encoded control byte", "/v1/items/%01x", false},
		{"overlong UTF-8 dots", "/v1/items/%c0%ae%c0%ae/admin", false},
		{"invalid UTF-8", "/v1/items/%ff", false},
		{"double encoding %252e", "/v1/items/%252e%252e/admin", false},
		{"double encoding %2541", "/v1/items/%2541", false},
		{"invalid percent escape", "/v1/items/%zz", true},
		// Beyond the acceptance suite.
		{"encoded dot-dot and slash", "/v1/items/%2e%2e%2fadmin", false},
		{"encoded dot-dot-slash as one segment", "/v1/%2e%2e%2f", false},
		{"encoded single dot segment", "/v1/%2e/items", false},
		{"half-encoded dot-dot", "/v1/.%2e/admin", false},
		{"half-encoded dot-dot, other half", "/v1/%2e./admin", false},
		{"dot-dot then NUL", "/v1/..%00/admin", false},
		{"trailing dot-dot", "/v1/items/..", false},
		{"trailing dot", "/v1/items/.", false},
		{"encoded semicolon", "/v1/items/1%3bx=1", false},
		{"..%3b segment", "/v1/items/..%3b/admin", false},
		{"encoded CR LF", "/v1/items/%0d%0aX-Injected:%201", false},
		{"encoded DEL", "/v1/items/%7f", false},
		{"encoded tab", "/v1/%09items", false},
		{"overlong UTF-8 slash", "/v1/items%c0%afadmin", false},
		{"three-byte overlong dot", "/v1/%e0%80%ae%e0%80%ae/admin", false},
		{"UTF-16 surrogate", "/v1/%ed%a0%80", false},
		{"truncated UTF-8", "/v1/caf%c3", false},
		{"truncated escape at the end", "/v1/items/%2", true},
		{"double encoding %255c", "/v1/items%255cadmin", false},
		{"double encoding %252f", "/v1/items%252fadmin", false},
		{"raw fragment", "/v1/items#frag", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.count()
			r := n.rawResp(rawReq("GET", "/canon"+tc.path, f.tok, ""))
			if n := f.up.count() - before; n != 0 {
				t.Errorf("GET /canon%s reached the upstream as %q", tc.path, f.up.last().RequestURI)
			}
			if tc.anyBody {
				if r.status != http.StatusBadRequest {
					t.Errorf("GET /canon%s → want 400, got %s", tc.path, r)
				}
				return
			}
			if wantErr(t, "GET /canon"+tc.path, r, http.StatusBadRequest, "bad_path") {
				if rec := n.record(r.rid()); str(rec, "reason") != "bad_path" {
					t.Errorf("audit reason = %q, want bad_path", str(rec, "reason"))
				}
			}
		})
	}
	// Look-alikes of "/" and "." are ordinary characters: accepted, and
	// forwarded as sent (the upstream never sees a real slash).
	for _, p := range []string{"/v1/a%ef%bc%8fb", "/v1/a%E2%88%95b", "/v1/%e2%80%a4%e2%80%a4/x", "/v1/%c2%b7"} {
		r := n.rawResp(rawReq("GET", "/canon"+p, f.tok, ""))
		if r.status != http.StatusOK || f.up.last().RequestURI != p {
			t.Errorf("GET /canon%s (a look-alike, not a separator) → want 200 forwarded byte for byte, got %d, upstream %q", p, r.status, f.up.last().RequestURI)
		}
	}
	// With allow_semicolons, ";" passes, but "..;" and ";" opening a
	// segment are still refused.
	semi := n.fx("semi", map[string]any{"allow_semicolons": true}, allowAll)
	for _, c := range []struct {
		path string
		want int
	}{{"/v1/items;v=2", 200}, {"/v1/..;/admin", 400}, {"/v1/;x/admin", 400}} {
		r := n.rawResp(rawReq("GET", "/semi"+c.path, semi.tok, ""))
		if r.status != c.want {
			t.Errorf("allow_semicolons: GET /semi%s → want %d, got %s", c.path, c.want, r)
		}
	}
	if semi.up.count() != 1 || semi.up.last().RequestURI != "/v1/items;v=2" {
		t.Errorf("allow_semicolons: the upstream got %d requests, last %q; want exactly /v1/items;v=2", semi.up.count(), semi.up.last().RequestURI)
	}
}

// TestHostileRequestsAreRefused pins the rest of SPEC §3.4: methods,
// request targets, framing, header blocks, queries and upgrades that
// keyhole refuses before anything is forwarded. The attacks it pins:
// request smuggling (CL+TE, duplicate Content-Length, obs-fold), SSRF
// through absolute-form targets, header floods, query parameter pollution
// (an agent overriding the injected api_key), and protocol switching.
func TestHostileRequestsAreRefused(t *testing.T) {
	n := startNode(t)
	f := n.fx("frame", nil, allowAll)
	elsewhere := n.upstream() // an absolute-form target must never reach it
	qs := canary()
	n.secret("q-key", qs)
	qup := n.upstream()
	n.proxy("qry", qup, map[string]any{"auth": map[string]any{"type": "query", "secret": "q-key", "params": map[string]string{"api_key": "{{secret}}"}},
		"rules": []any{allowAll}})
	n.agent("q-bot")
	qtok, _ := n.token("q-bot", "1h", "qry")

	params := func(k int) string {
		p := make([]string, k)
		for i := range p {
			p[i] = fmt.Sprintf("p%d=1", i)
		}
		return strings.Join(p, "&")
	}
	auth := "Authorization: Bearer " + f.tok + "\r\n"
	tests := []struct {
		name       string
		req        string
		wantStatus int
		wantCode   string // "" = any
		wantClosed bool
	}{
		{"TRACE", rawReq("TRACE", "/frame/v1/x", f.tok, ""), 405, "", false},
		{"CONNECT", rawReq("CONNECT", elsewhere.hostport(), f.tok, ""), 405, "", false},
		{"absolute-form to another host", rawReq("GET", elsewhere.URL+"/frame/v1/x", f.tok, ""), 400, "", false},
		{"asterisk-form OPTIONS", rawReq("OPTIONS", "*", f.tok, ""), 400, "bad_target", false},
		{"asterisk-form GET", rawReq("GET", "*", f.tok, ""), 400, "bad_target", false},
		{"method that is not a token", rawReq("G@T", "/frame/v1/x", f.tok, ""), 400, "", false},
		{"method with a slash", rawReq("GET/1", "/frame/v1/x", f.tok, ""), 400, "", false},
		{"Content-Length and Transfer-Encoding", "POST /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth +
			"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", true},
		{"Transfer-Encoding then Content-Length", "POST /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth +
			"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400, "", true},
		{"two different Content-Lengths", "POST /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth +
			"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400, "", true},
		{"Content-Length list", "POST /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth +
			"Content-Length: 4, 5\r\n\r\nabcde", 400, "", true},
		{"Transfer-Encoding that is not chunked", "POST /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth +
			"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, "", true},
		{"obs-fold", "GET /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth + "X-Folded: a\r\n  b\r\n\r\n", 400, "", false},
		{"whitespace before the colon", "GET /frame/v1/x HTTP/1.1\r\nHost: k\r\n" + auth + "X-Space : a\r\n\r\n", 400, "", false},
		{"bare LF line ends", "GET /frame/v1/x HTTP/1.1\nHost: k\n" + strings.TrimSuffix(auth, "\r\n") + "\n\n", 400, "", false},
		{"80 KiB header block", rawReq("GET", "/frame/v1/x", f.tok, "", "X-Big", strings.Repeat("a", 80<<10)), 431, "", false},
		{"1,001 query parameters", rawReq("GET", "/frame/v1/x?"+params(1001), f.tok, ""), 400, "bad_query", false},
		{"%zz in the query", rawReq("GET", "/frame/v1/x?a=%zz", f.tok, ""), 400, "bad_query", false},
		{"%zz in a query name", rawReq("GET", "/frame/v1/x?%zz=1", f.tok, ""), 400, "bad_query", false},
		{"; in the query", rawReq("GET", "/frame/v1/x?a=1;b=2", f.tok, ""), 400, "bad_query", false},
		{"the injected query parameter", rawReq("GET", "/qry/v1/x?api_key=mine", qtok, ""), 400, "bad_query", false},
		{"the injected parameter, percent-encoded name", rawReq("GET", "/qry/v1/x?api%5Fkey=mine", qtok, ""), 400, "bad_query", false},
		{"the injected parameter without a value", rawReq("GET", "/qry/v1/x?a=1&api_key", qtok, ""), 400, "bad_query", false},
		{"the injected parameter after others", rawReq("GET", "/qry/v1/x?a=1&b=2&api_key=x", qtok, ""), 400, "bad_query", false},
		{"Upgrade: websocket", rawReq("GET", "/frame/v1/ws", f.tok, "", "Connection", "Upgrade", "Upgrade", "websocket",
			"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), 400, "upgrade_refused", false},
		{"Upgrade: h2c", rawReq("GET", "/frame/v1/x", f.tok, "", "Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
			400, "upgrade_refused", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.count() + qup.count() + elsewhere.count()
			r, closed := n.raw(tc.req, tc.wantClosed)
			if r.status != tc.wantStatus {
				t.Errorf("want %d, got %s", tc.wantStatus, r)
			} else if tc.wantCode != "" {
				wantErr(t, tc.name, r, tc.wantStatus, tc.wantCode)
			}
			if tc.wantClosed && !closed {
				t.Errorf("conflicting framing → the connection must be closed after the 400; it stayed open")
			}
			if after := f.up.count() + qup.count() + elsewhere.count(); after != before {
				t.Errorf("a refused request reached an upstream (%d requests)", after-before)
			}
		})
	}
	// The boundaries hold on the allowed side.
	if r := n.rawResp(rawReq("GET", "/frame/v1/x?"+params(1000), f.tok, "")); r.status != http.StatusOK || f.up.last().RawQuery != params(1000) {
		t.Errorf("1,000 query parameters → want 200 forwarded unchanged, got %d", r.status)
	}
	if r := n.rawResp(rawReq("GET", "/frame/v1/x", f.tok, "", "X-Big", strings.Repeat("a", 60<<10))); r.status != http.StatusOK {
		t.Errorf("a 60 KiB header block (under 64 KiB) → want 200, got %s", r)
	}
	if r := n.rawResp(rawReq("GET", "/qry/v1/x?API_KEY=mine&apikey=2", qtok, "")); r.status != http.StatusOK ||
		qup.last().RawQuery != "API_KEY=mine&apikey=2&api_key="+url.QueryEscape(qs) {
		t.Errorf("names that merely resemble the injected one pass, then keyhole appends its own; got %d, upstream query %q", r.status,
			strings.ReplaceAll(qup.last().RawQuery, url.QueryEscape(qs), "<SECRET>"))
	}
	// Request trailers never reach the upstream.
	trailer := "POST /frame/v1/trailer HTTP/1.1\r\nHost: k\r\n" + auth + "Transfer-Encoding: chunked\r\nTrailer: X-Evil\r\nConnection: close\r\n\r\n" +
		"5\r\nhello\r\n0\r\nX-Evil: smuggled\r\n\r\n"
	if r := n.rawResp(trailer); r.status != http.StatusOK {
		t.Errorf("a chunked POST with a trailer → want 200 (trailer dropped), got %s", r)
	} else if got := f.up.last(); string(got.Body) != "hello" || len(got.Trailer) != 0 || got.Header.Get("X-Evil") != "" || got.Header.Get("Trailer") != "" {
		t.Errorf("request trailers are dropped: the upstream got body %q, trailer %v, X-Evil %q, Trailer %q", got.Body, got.Trailer, got.Header.Get("X-Evil"), got.Header.Get("Trailer"))
	}
}

// TestHeaderSmugglingIsNeutralised pins SPEC §3.4 and §3.6 on the headers
// that do reach the upstream: method overrides stripped (an upstream that
// honours them would run a method the rules never saw), client
// X-Forwarded-*/Forwarded/X-Real-IP removed (no spoofed client identity),
// hop-by-hop headers and those named in Connection removed — but never the
// credential keyhole injects (Connection: Authorization), Host is the
// upstream's, and the request id is keyhole's on both sides.
func TestHeaderSmugglingIsNeutralised(t *testing.T) {
	n := startNode(t)
	f := n.fx("smug", nil, rule("read", "allow", "GET /**"), rule("no-delete", "deny", "DELETE /**"))
	r := n.rawResp(rawReq("GET", "/smug/v1/items/1", f.tok, "",
		"X-HTTP-Method-Override", "DELETE", "X-HTTP-Method", "DELETE", "X-Method-Override", "DELETE", "X-Original-Method", "DELETE",
		"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "gopher", "X-Forwarded-Port", "6666",
		"X-Forwarded-Prefix", "/evil", "Forwarded", "for=6.6.6.6;host=evil.example", "X-Real-IP", "6.6.6.6",
		"Via", "1.1 evil.example", "Proxy-Authorization", "Basic ZXZpbDpldmls", "Te", "trailers", "X-Keyhole-Request-Id", "agent-chosen-id"))
	got := f.up.last()
	if r.status != http.StatusOK || got.Method != http.MethodGet {
		t.Fatalf("method overrides are never honoured: want 200 and GET upstream, got %s and %q", r, got.Method)
	}
	for _, h := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method",
		"Forwarded", "X-Real-Ip", "Via", "Proxy-Authorization", "Te"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("the upstream received %s: %q", h, v)
		}
	}
	for k, vs := range got.Header {
		v := strings.Join(vs, ",")
		if strings.HasPrefix(k, "X-Forwarded-") || strings.Contains(v, "6.6.6.6") || strings.Contains(v, "evil.example") {
			t.Errorf("a client forwarding header reached the upstream: %s: %s", k, v)
		}
	}
	if got.Host != f.up.hostport() {
		t.Errorf("Host upstream = %q, want the upstream's %q", got.Host, f.up.hostport())
	}
	if rid := r.rid(); rid == "" || rid == "agent-chosen-id" || got.Header.Get("X-Keyhole-Request-Id") != rid {
		t.Errorf("request id: agent got %q, upstream got %q; want keyhole's own id on both sides, never the agent's", rid, got.Header.Get("X-Keyhole-Request-Id"))
	}
	if rec := n.record(r.rid()); str(rec, "id") != r.rid() {
		t.Errorf("the audit record's id %q differs from X-Keyhole-Request-Id %q", str(rec, "id"), r.rid())
	}
	// A method override cannot turn a denied DELETE into an allowed one either.
	if r := n.call("DELETE", "/smug/v1/items/1", f.tok, "", "X-HTTP-Method-Override", "GET"); r.status != http.StatusForbidden {
		t.Errorf("DELETE with X-HTTP-Method-Override: GET → want 403 (deny rule), got %s", r)
	}

	tests := []struct {
		name       string
		connection string
		extra      []string
		wantGone   []string
	}{
		{"Connection names Authorization", "Authorization, X-Drop", []string{"X-Drop", "1"}, []string{"X-Drop"}},
		{"Connection names the request id", "X-Keyhole-Request-Id", nil, nil},
		{"Connection names Host", "Host, keep-alive", []string{"Keep-Alive", "timeout=5"}, []string{"Keep-Alive"}},
		{"Connection names a static header", "Anthropic-Version", []string{"Anthropic-Version", "agent-set"}, nil},
		{"Connection names Authorization in odd case", "aUtHoRiZaTiOn", nil, nil},
	}
	n.must(http.StatusOK, "PUT", "/proxies/smug", map[string]any{"name": "smug", "upstream": f.up.URL,
		"auth": map[string]any{"type": "bearer", "secret": "smug-key"}, "static_headers": map[string]string{"Anthropic-Version": "2023-06-01"},
		"rules": []any{rule("read", "allow", "GET /**")}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := append([]string{"Connection", tc.connection}, tc.extra...)
			r := n.rawResp(strings.Replace(rawReq("GET", "/smug/v1/c", f.tok, "", hdr...), "Connection: close\r\n", "", 1))
			got := f.up.last()
			if r.status != http.StatusOK || got.RequestURI != "/v1/c" {
				t.Fatalf("want 200 forwarded, got %s", r)
			}
			if v := got.Header.Get("Authorization"); v != "Bearer "+f.s {
				t.Errorf("the injected credential must survive Connection: %s; upstream Authorization = %q", tc.connection, head(v))
			}
			if got.Header.Get("X-Keyhole-Request-Id") != r.rid() {
				t.Errorf("the request id must survive; upstream got %q, agent %q", got.Header.Get("X-Keyhole-Request-Id"), r.rid())
			}
			if got.Host != f.up.hostport() {
				t.Errorf("Host upstream = %q, want %q", got.Host, f.up.hostport())
			}
			if v := got.Header.Get("Anthropic-Version"); v != "2023-06-01" {
				t.Errorf("static header Anthropic-Version = %q, want the proxy's 2023-06-01", v)
			}
			for _, h := range tc.wantGone {
				if v, ok := got.Header[h]; ok {
					t.Errorf("%s is named in Connection and must be removed; the upstream got %q", h, v)
				}
			}
		})
	}
}

// TestForwardingIsExact pins SPEC §3.1 and §3.4: the path the rules saw is
// the path sent upstream, byte for byte (no re-encoding, no case change of
// escapes, no normalisation), the raw query likewise, and an upstream base
// path is prefixed. A request that a decoding, re-encoding proxy would
// change could be routed by the upstream differently from how the rules
// read it.
func TestForwardingIsExact(t *testing.T) {
	n := startNode(t)
	f := n.fx("exact", nil, allowAll)
	bup := n.upstream()
	n.secret("base-key", canary())
	n.proxyAt("based", bup.URL+"/base", map[string]any{"auth": map[string]any{"type": "bearer", "secret": "base-key"}, "rules": []any{allowAll}})
	n.proxyAt("based-slash", bup.URL+"/base/", map[string]any{"auth": map[string]any{"type": "bearer", "secret": "base-key"}, "rules": []any{allowAll}})
	n.agent("base-bot")
	btok, _ := n.token("base-bot", "1h", "based", "based-slash")

	tests := []struct {
		name, target, tok string
		up                *upstream
		want              string // the upstream's request target
	}{
		{"%20 and + in path and query", "/exact/v1/a%20b/c+d?q=a%20b+c&x=%2B&y=", f.tok, f.up, "/v1/a%20b/c+d?q=a%20b+c&x=%2B&y="},
		{"unreserved characters escaped", "/exact/v1/%41%42%7e", f.tok, f.up, "/v1/%41%42%7e"},
		{"upper- and lower-case escapes kept", "/exact/v1/caf%C3%A9/caf%c3%a9", f.tok, f.up, "/v1/caf%C3%A9/caf%c3%a9"},
		{"sub-delims raw", "/exact/v1/a:b@c!$&'()*,=", f.tok, f.up, "/v1/a:b@c!$&'()*,="},
		{"trailing slash kept", "/exact/v1/items/", f.tok, f.up, "/v1/items/"},
		{"proxy root", "/exact", f.tok, f.up, "/"},
		{"proxy root with slash", "/exact/", f.tok, f.up, "/"},
		{"duplicate and empty query parameters", "/exact/v1/x?a=1&a=2&b&c=", f.tok, f.up, "/v1/x?a=1&a=2&b&c="},
		{"query with escapes and UTF-8", "/exact/v1/x?q=%E2%9C%93&r=%e2%9c%93&s=a%2Fb", f.tok, f.up, "/v1/x?q=%E2%9C%93&r=%e2%9c%93&s=a%2Fb"},
		{"query with unusual but valid bytes", "/exact/v1/x?q=a|b&r=[1]&s={x}", f.tok, f.up, "/v1/x?q=a|b&r=[1]&s={x}"},
		{"encoded question mark in the path", "/exact/v1/what%3F?really=1", f.tok, f.up, "/v1/what%3F?really=1"},
		{"base path prefixed", "/based/v1/x?y=1", btok, bup, "/base/v1/x?y=1"},
		{"base path with trailing slash", "/based-slash/v1/x", btok, bup, "/base/v1/x"},
		{"base path and escapes", "/based/v1/a%20b", btok, bup, "/base/v1/a%20b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := n.rawResp(rawReq("GET", tc.target, tc.tok, ""))
			if r.status != http.StatusOK {
				t.Fatalf("GET %s → want 200, got %s", tc.target, r)
			}
			if got := tc.up.last().RequestURI; got != tc.want {
				t.Errorf("GET %s reached the upstream as %q, want %q", tc.target, got, tc.want)
			}
		})
	}
}
