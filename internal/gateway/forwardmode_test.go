package gateway

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

func TestProxyToken(t *testing.T) {
	tok := "kh_" + "0123456789abcdefghijABCDEFGHIJ0123456789"
	b := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, header, want string
		present            bool
	}{
		{"absent", "", "", false},
		{"basic password", b("kh:" + tok), tok, true},
		{"basic user name", b(tok + ":"), tok, true},
		{"basic user name, any password", b(tok + ":x"), tok, true},
		{"bearer", "Bearer " + tok, tok, true},
		{"bearer, other case", "bEaReR  " + tok, tok, true},
		{"basic, not a token", b("kh:hunter2"), "", true},
		{"basic, not base64", "Basic !!!", "", true},
		{"another scheme", "Digest " + tok, "", true},
	} {
		r := &http.Request{Header: http.Header{}}
		if tc.header != "" {
			r.Header.Set("Proxy-Authorization", tc.header)
		}
		got, present := proxyToken(r)
		if got != tc.want || present != tc.present {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.name, got, present, tc.want, tc.present)
		}
	}
}

func TestAbsoluteHTTP(t *testing.T) {
	for _, tc := range []struct {
		in, host, port, origin string
		ok                     bool
	}{
		{"http://api.example/v1/x?a=1", "api.example", "80", "/v1/x?a=1", true},
		{"HTTP://API.Example.:8080", "api.example", "8080", "/", true},
		{"http://127.0.0.1:9/?q", "127.0.0.1", "9", "/?q", true},
		{"http://h?q=1", "h", "80", "/?q=1", true},
		{"http://[::1]:81/p", "::1", "81", "/p", true},
		{"http://[::1]/p", "::1", "80", "/p", true},
		{"https://api.example/", "", "", "", false},
		{"/v1/x", "", "", "", false},
		{"http://user:pw@api.example/", "", "", "", false},
		{"http:///x", "", "", "", false},
		{"http://h:0/", "", "", "", false},
		{"http://h:99999/", "", "", "", false},
		{"http://h:+80/", "", "", "", false},
		{"*", "", "", "", false},
	} {
		h, p, o, ok := absoluteHTTP(tc.in)
		if ok != tc.ok || h != tc.host || p != tc.port || o != tc.origin {
			t.Errorf("%q: got %q %q %q %v; want %q %q %q %v", tc.in, h, p, o, ok, tc.host, tc.port, tc.origin, tc.ok)
		}
	}
}

func TestSplitAuthority(t *testing.T) {
	for _, tc := range []struct {
		in, host, port string
		ok             bool
	}{
		{"api.stripe.com:443", "api.stripe.com", "443", true},
		{"API.Stripe.COM.:443", "api.stripe.com", "443", true},
		{"[::1]:8443", "::1", "8443", true},
		{"api.stripe.com", "", "", false},
		{":443", "", "", false},
		{"h:0", "", "", false},
		{"h:x", "", "", false},
		{"a/b:443", "", "", false},
		{"u@h:443", "", "", false},
	} {
		h, p, ok := splitAuthority(tc.in)
		if ok != tc.ok || h != tc.host || p != tc.port {
			t.Errorf("%q: got %q %q %v; want %q %q %v", tc.in, h, p, ok, tc.host, tc.port, tc.ok)
		}
	}
}

func TestPickByPath(t *testing.T) {
	mk := func(name, upstream string, fold bool) *catalog.Proxy {
		u, _ := url.Parse(upstream)
		return &catalog.Proxy{Name: name, Upstream: u, Spec: spec.Proxy{CaseInsensitivePaths: fold}}
	}
	root := mk("a-root", "https://h", false)
	v1 := mk("b-v1", "https://h/v1", false)
	v1b := mk("c-v1", "https://h/v1/", false)
	fold := mk("d-fold", "https://h/API", true)
	cands := []*catalog.Proxy{root, v1, v1b, fold}
	all := map[string]bool{"a-root": true, "b-v1": true, "c-v1": true, "d-fold": true}
	for _, tc := range []struct {
		name, path string
		scope      map[string]bool
		want, rest string
	}{
		{"longest base wins", "/v1/charges", all, "b-v1", "/charges"},
		{"the base itself", "/v1", all, "b-v1", ""},
		{"a segment is not a prefix", "/v10/x", all, "a-root", "/v10/x"},
		{"root takes the rest", "/other", all, "a-root", "/other"},
		{"in scope first", "/v1/charges", map[string]bool{"a-root": true}, "a-root", "/v1/charges"},
		{"ties go to the first name", "/v1/x", map[string]bool{"c-v1": true, "b-v1": true}, "b-v1", "/x"},
		{"only out of scope: the longest still", "/v1/x", nil, "b-v1", "/x"},
		{"case-insensitive base", "/api/x", all, "d-fold", "/x"},
	} {
		p, rest := pickByPath(cands, tc.scope, tc.path)
		if p == nil || p.Name != tc.want || rest != tc.rest {
			name := "<nil>"
			if p != nil {
				name = p.Name
			}
			t.Errorf("%s: got %s %q; want %s %q", tc.name, name, rest, tc.want, tc.rest)
		}
	}
	if p, _ := pickByPath([]*catalog.Proxy{v1}, all, "/v2/x"); p != nil {
		t.Errorf("a path outside every base path picked %s", p.Name)
	}
}
