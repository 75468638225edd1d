package server

import (
	"strings"
	"testing"
)

// The admin API answers unknown endpoints 404 and known ones with another
// method 405 (with Allow), both in the error envelope, and records changes
// and refused attempts (proxy "-admin"), never the secret values sent.
func TestAdminAPIRoutesAndRecords(t *testing.T) {
	n := startNode(t)
	for _, c := range []struct {
		method, path string
		want         int
		code, allow  string
	}{
		{"PATCH", "/secrets", 405, "method_not_allowed", "GET, POST"},
		{"POST", "/secrets/x", 405, "method_not_allowed", "GET, PUT, DELETE"},
		{"GET", "/no-such-thing", 404, "not_found", ""},
		{"GET", "/logs/" + strings.Repeat("a", 80), 400, "invalid_request", ""},
	} {
		r := n.admin(c.method, c.path, nil)
		if r.status != c.want || r.errCode() != c.code || r.hdr.Get("Allow") != c.allow || r.rid() == "" {
			t.Errorf("%s %s → want %d %s (Allow %q), got %s (Allow %q)", c.method, c.path, c.want, c.code, c.allow, r, r.hdr.Get("Allow"))
		}
	}
	value := canary()
	n.secret("recorded", value)
	viewer := str(n.must(201, "POST", "/admin-tokens", map[string]any{"name": "v", "role": "viewer", "ttl": "1h"}), "token")
	n.plantToken(viewer)
	if r := n.adminAs(viewer, "DELETE", "/secrets/recorded", nil); r.status != 403 {
		t.Fatalf("a viewer cannot delete; got %s", r)
	}
	recs := n.logs("proxy=-admin&limit=1000")
	var created, refused bool
	for _, rec := range recs {
		switch {
		case str(rec, "reason") == "secret.create" && str(rec, "decision") == "allow":
			created = true
		case str(rec, "reason") == "forbidden" && str(rec, "decision") == "deny" && str(rec, "agent") == "v":
			refused = true
		}
	}
	if !created || !refused {
		t.Errorf("want an -admin record of the secret's creation and of the viewer's refused delete; got %d records", len(recs))
	}
}

// Admin request bodies are read strictly: a repeated key is refused, not
// last-wins ({"role":"viewer","role":"admin"} must not issue an admin
// token), and so is a case variant of a field name.
func TestAdminBodiesAreStrict(t *testing.T) {
	n := startNode(t)
	for _, body := range []string{
		`{"name":"x","role":"viewer","role":"admin","ttl":"1h"}`,
		`{"name":"x","Role":"admin","ttl":"1h"}`,
	} {
		r := n.admin("POST", "/admin-tokens", body)
		if r.status != 400 || r.errCode() != "invalid_request" {
			t.Errorf("POST /admin-tokens %s → want 400 invalid_request, got %s", body, r)
		}
		if tok := str(r.obj(), "token"); tok != "" {
			n.plantToken(tok)
		}
	}
	up := n.upstream()
	n.secret("strict-k", canary())
	n.proxy("strict", up, map[string]any{"auth": map[string]any{"type": "bearer", "secret": "strict-k"}})
	dup := `{"upstream":"` + up.URL + `","upstream":"http://127.0.0.1:1","auth":{"type":"bearer","secret":"strict-k"}}`
	if r := n.admin("PUT", "/proxies/strict", dup); r.status != 400 {
		t.Errorf("PUT /proxies/strict without a name and with a repeated upstream → want 400, got %s", r)
	}
}
