package server

import (
	"net/http"
	"strings"
	"testing"
)

// TestSSRFGuardAtSave pins SPEC §3.6: an upstream whose host is (or
// resolves to) an internal address is refused when the proxy is saved —
// created or replaced — with 400 invalid_request, unless the node allows
// that range (this node allows 127.0.0.0/8 only). The attack it pins: an
// admin-API caller (or a poisoned declarative config) pointing a proxy,
// and so a credential, at the cloud metadata service or an internal host.
func TestSSRFGuardAtSave(t *testing.T) {
	n := startNode(t)
	n.secret("ssrf-key", canary())
	auth := map[string]any{"type": "bearer", "secret": "ssrf-key"}
	ok := n.upstream()
	n.proxy("good", ok, map[string]any{"auth": auth, "rules": []any{allowAll}})

	tests := []struct {
		name, upstream string
		wantStatus     int
	}{
		{"cloud metadata", "http://169.254.169.254", 400},
		{"cloud metadata with a path", "http://169.254.169.254/latest/meta-data/", 400},
		{"IPv6 loopback", "http://[::1]", 400},
		{"IPv6 loopback with a port", "http://[::1]:8080", 400},
		{"IPv4-mapped metadata", "http://[::ffff:169.254.169.254]", 400},
		{"IPv4-mapped metadata, hex", "http://[::ffff:a9fe:a9fe]", 400},
		{"NAT64 metadata", "http://[64:ff9b::a9fe:a9fe]", 400},
		{"6to4 metadata", "http://[2002:a9fe:a9fe::1]", 400},
		{"AWS IPv6 metadata", "http://[fd00:ec2::254]", 400},
		{"private 10/8", "http://10.0.0.1", 400},
		{"private 192.168/16", "https://192.168.1.1", 400},
		{"CGNAT", "http://100.64.0.1", 400},
		{"unspecified", "http://0.0.0.0:9000", 400},
		{"decimal loopback", "http://2130706433", 400},
		{"hex loopback", "http://0x7f000001", 400},
		{"octal loopback", "http://017700000001", 400},
		{"decimal metadata", "http://2852039166", 400},
		{"link-local IPv6", "http://[fe80::1]", 400},
		{"allowed range (127.0.0.0/8)", "http://127.0.0.2:9", 201},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "s" + itoa(i)
			r := n.admin("POST", "/proxies", map[string]any{"name": name, "upstream": tc.upstream, "auth": auth, "rules": []any{allowAll}})
			if tc.wantStatus != http.StatusBadRequest {
				if r.status != tc.wantStatus {
					t.Errorf("POST /proxies upstream %s → want %d, got %s", tc.upstream, tc.wantStatus, r)
				}
				return
			}
			if r.status != http.StatusBadRequest || r.errCode() != "invalid_request" {
				t.Errorf("POST /proxies upstream %s → want 400 invalid_request, got %s", tc.upstream, r)
			}
			if r := n.admin("GET", "/proxies/"+name, nil); r.status != http.StatusNotFound {
				t.Errorf("a refused proxy must not be stored; GET → %d", r.status)
			}
			// Replacing a good proxy's upstream is checked the same way.
			r = n.admin("PUT", "/proxies/good", map[string]any{"name": "good", "upstream": tc.upstream, "auth": auth, "rules": []any{allowAll}})
			if r.status != http.StatusBadRequest {
				t.Errorf("PUT /proxies/good upstream %s → want 400, got %s", tc.upstream, r)
			}
		})
	}
	if got := str(n.must(http.StatusOK, "GET", "/proxies/good", nil), "upstream"); got != ok.URL {
		t.Errorf("a refused replacement changed the stored upstream to %q", got)
	}
}

// TestSSRFGuardAtDial pins the dial-time half of SPEC §3.6: a proxy saved
// while its upstream was allowed (or resolved to a public address) is
// refused at connect time once the address is no longer allowed — here the
// node restarts without --allow-upstream-cidr 127.0.0.0/8 — with 502
// upstream_blocked, and the upstream never sees a connection. This is what
// defeats DNS rebinding: the check runs on the exact address dialled.
func TestSSRFGuardAtDial(t *testing.T) {
	n := startNode(t)
	f := n.fx("rebind", nil, allowAll)
	if r := n.call("GET", "/rebind/v1/x", f.tok, ""); r.status != http.StatusOK {
		t.Fatalf("control: with 127.0.0.0/8 allowed → want 200, got %s", r)
	}
	n.restart(func(c *Config) { c.AllowCIDRs = nil })
	before := f.up.count()
	r := n.call("GET", "/rebind/v1/x", f.tok, "")
	if wantErr(t, "GET /rebind/v1/x after the allowance is gone", r, http.StatusBadGateway, "upstream_blocked") {
		if strings.Contains(string(r.body), "127.0.0.1") {
			t.Errorf("the error names the internal address: %s", r.body)
		}
		if rec := n.record(r.rid()); str(rec, "reason") != "upstream_blocked" {
			t.Errorf("audit reason = %q, want upstream_blocked", str(rec, "reason"))
		}
	}
	if f.up.count() != before {
		t.Errorf("the blocked upstream received %d requests", f.up.count()-before)
	}
	// And saving a new proxy there is refused now.
	if r := n.admin("POST", "/proxies", map[string]any{"name": "again", "upstream": f.up.URL,
		"auth": map[string]any{"type": "bearer", "secret": "rebind-key"}, "rules": []any{allowAll}}); r.status != http.StatusBadRequest {
		t.Errorf("POST /proxies to 127.0.0.1 without the allowance → want 400, got %s", r)
	}
}
