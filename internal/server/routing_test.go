package server

import (
	"net/http"
	"strings"
	"testing"
)

// TestHostRouting pins SPEC §3.1's --host-suffix: a request whose Host is
// {proxy}{suffix} routes to that proxy with its whole path (for SDKs that
// take a host but no base path); any other Host routes by the first path
// segment; and host routing gives no way around the token-first order.
func TestHostRouting(t *testing.T) {
	n := startNode(t, func(c *Config) { c.HostSuffix = "GW.Test" }) // normalised to ".gw.test"
	f := n.fx("hr", nil, allowAll)
	req := func(host, target, tok string) string {
		return strings.Replace(rawReq("GET", target, tok, ""), "Host: keyhole.test", "Host: "+host, 1)
	}
	tests := []struct {
		name, host, target, tok string
		wantStatus              int
		wantCode                string
		wantUp                  string // the upstream's request target when forwarded
	}{
		{"proxy by host, whole path", "hr.gw.test", "/v1/charges?limit=3", f.tok, 200, "", "/v1/charges?limit=3"},
		{"host with port and capitals", "HR.GW.TEST:8443", "/v1/x", f.tok, 200, "", "/v1/x"},
		{"host with a trailing dot", "hr.gw.test.", "/v1/y", f.tok, 200, "", "/v1/y"},
		{"path that names the proxy again is not stripped", "hr.gw.test", "/hr/v1/z", f.tok, 200, "", "/hr/v1/z"},
		{"the suffix alone routes by path", "gw.test", "/hr/v1/p", f.tok, 200, "", "/v1/p"},
		{"another host routes by path", "example.test", "/hr/v1/q", f.tok, 200, "", "/v1/q"},
		{"unknown proxy by host without a token", "nope.gw.test", "/v1/x", "", 401, "no_token", ""},
		{"unknown proxy by host with a token", "nope.gw.test", "/v1/x", f.tok, 404, "unknown_proxy", ""},
		{"invalid proxy name by host", "a.b.gw.test", "/v1/x", f.tok, 404, "unknown_proxy", ""},
		{"bad path by host", "hr.gw.test", "/v1/../admin", f.tok, 400, "bad_path", ""},
		{"keyhole's own paths stay keyhole's", "hr.gw.test", "/-/whoami", f.tok, 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.count()
			r := n.rawResp(req(tc.host, tc.target, tc.tok))
			if tc.wantCode != "" {
				wantErr(t, tc.name, r, tc.wantStatus, tc.wantCode)
			} else if r.status != tc.wantStatus {
				t.Errorf("want %d, got %s", tc.wantStatus, r)
			}
			switch {
			case tc.wantUp == "" && f.up.count() != before:
				t.Errorf("the upstream received %q", f.up.last().RequestURI)
			case tc.wantUp != "" && (f.up.count() != before+1 || f.up.last().RequestURI != tc.wantUp):
				t.Errorf("want the upstream to receive %q, got %q", tc.wantUp, f.up.last().RequestURI)
			}
		})
	}
	if r := n.call("GET", "/hr/v1/ok", f.tok, ""); r.status != http.StatusOK {
		t.Errorf("path routing still works on a host-suffix node: %s", r)
	}
}
