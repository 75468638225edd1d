package admin_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAuditHashAndSearch: with capture.redact_mode "hmac" the audit log
// keeps a keyed hash of each redacted value, never the value; POST
// /audit/hash gives the hash of a value one knows (admin and auditor only),
// and GET /logs/search?contains= finds the records that carried it — a
// canary planted in a redact_headers header and in a redact_json field.
func TestAuditHashAndSearch(t *testing.T) {
	n := startNode(t)
	tok := n.setup("cards", map[string]any{"redact_mode": "hmac", "redact_headers": []string{"X-Canary"}, "redact_json": []string{"card.number"}})
	hdrCanary, jsonCanary := "hdr-canary-"+randAlnum(20), "json-canary-"+randAlnum(20)
	charge := func(hdr, number string) string {
		code, rid := n.call("POST", "/cards/v1/charge", tok, http.Header{"X-Canary": {hdr}, "Content-Type": {"application/json"}},
			`{"card":{"number":"`+number+`"},"amount":1}`)
		if code != 200 {
			t.Fatalf("charge → %d", code)
		}
		return rid
	}
	decoy := charge("hdr-decoy-"+randAlnum(20), "json-decoy-"+randAlnum(20))
	planted := charge(hdrCanary, jsonCanary)
	_ = decoy

	auditor, viewer := n.adminToken("auditor"), n.adminToken("viewer")
	hash := func(as, value string) (int, string) {
		code, m := n.api(as, "POST", "/audit/hash", map[string]any{"value": value})
		h, _ := m["hash"].(string)
		return code, h
	}
	search := func(as, contains string) (int, map[string]any) {
		return n.api(as, "GET", "/logs/search?since=1h&contains="+url.QueryEscape(contains), nil)
	}
	ids := func(m map[string]any) []string {
		var out []string
		recs, _ := m["records"].([]any)
		for _, r := range recs {
			id, _ := r.(map[string]any)["id"].(string)
			out = append(out, id)
		}
		return out
	}

	// The record holds the hashes, not the canaries.
	_, rec := n.api(n.token, "GET", "/logs/"+planted, nil)
	js, _ := json.Marshal(rec)
	if strings.Contains(string(js), hdrCanary) || strings.Contains(string(js), jsonCanary) {
		t.Fatalf("a redacted value is stored in clear: %s", js)
	}
	_, hh := hash(n.token, hdrCanary)
	if hdrs, _ := rec["request_headers"].(map[string]any); hdrs["X-Canary"].([]any)[0] != hh {
		t.Errorf("X-Canary stored as %v, want the hash %s", hdrs["X-Canary"], hh)
	}

	tests := []struct {
		name       string
		as         string
		value      string
		wantHash   int
		wantSearch int
		wantIDs    []string
	}{
		{"admin finds the header canary", n.token, hdrCanary, 200, 200, []string{planted}},
		{"auditor finds the JSON field canary", auditor, jsonCanary, 200, 200, []string{planted}},
		{"a value no request carried", auditor, "never-sent-" + randAlnum(10), 200, 200, nil},
		{"viewer may neither hash nor search", viewer, hdrCanary, 403, 403, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, h := hash(tc.as, tc.value)
			if code != tc.wantHash {
				t.Fatalf("POST /audit/hash → %d, want %d", code, tc.wantHash)
			}
			if code == 200 && (!strings.HasPrefix(h, "hmac-sha256:") || len(h) != len("hmac-sha256:")+32) {
				t.Errorf("hash %q", h)
			}
			if h == "" {
				h = "hmac-sha256:0"
			}
			code, m := search(tc.as, h)
			if code != tc.wantSearch {
				t.Fatalf("GET /logs/search → %d %v, want %d", code, m, tc.wantSearch)
			}
			if code != 200 {
				return
			}
			if got := ids(m); strings.Join(got, ",") != strings.Join(tc.wantIDs, ",") {
				t.Errorf("search found %v, want %v", got, tc.wantIDs)
			}
			if m["complete"] != true || m["scanned"].(float64) < 2 {
				t.Errorf("the search did not say it scanned the whole window: %v", m)
			}
		})
	}

	// The raw value is never found: it was never stored.
	if _, m := search(n.token, hdrCanary); len(ids(m)) != 0 {
		t.Errorf("a search for the raw canary found %v", ids(m))
	}
	// A hash call is itself an audit record (of who asked, not of what).
	_, m := n.api(n.token, "GET", "/logs?proxy=-admin&reason=audit.hash", nil)
	js, _ = json.Marshal(m)
	if recs, _ := m["records"].([]any); len(recs) != 4 || strings.Contains(string(js), hdrCanary) || strings.Contains(string(js), jsonCanary) {
		t.Errorf("want 4 audit.hash records (2 admin, 2 auditor) without the values; got %s", js)
	}
	// Bad requests.
	for _, q := range []string{"", "contains=", "contains=x&order=asc", "contains=x&decision=maybe"} {
		if code, _ := n.api(n.token, "GET", "/logs/search?"+q, nil); code != 400 {
			t.Errorf("GET /logs/search?%s → %d, want 400", q, code)
		}
	}
	if code, _ := n.api(n.token, "POST", "/audit/hash", map[string]any{}); code != 400 {
		t.Errorf("POST /audit/hash {} → %d, want 400", code)
	}
	code, m := n.api(n.token, "POST", "/proxies", map[string]any{"name": "bad", "upstream": "https://example.com",
		"auth": map[string]any{"type": "none"}, "capture": map[string]any{"redact_mode": "sha1"}})
	if msg, _ := m["error"].(map[string]any)["message"].(string); code != 400 || !strings.Contains(msg, "redact_mode") {
		t.Errorf("capture.redact_mode sha1 → %d %v, want 400 naming redact_mode", code, m)
	}
}

// TestSearchStopsAndSaysWhere: with limit reached the search says where it
// stopped and how to go on.
func TestSearchStopsAndSaysWhere(t *testing.T) {
	n := startNode(t)
	tok := n.setup("stripe", nil)
	for range 3 {
		n.call("GET", "/stripe/v1/needle", tok, nil, "")
	}
	_, m := n.api(n.token, "GET", "/logs/search?contains=needle&limit=2", nil)
	if recs, _ := m["records"].([]any); len(recs) != 2 || m["complete"] != false || m["stopped"] != "limit" || m["next_cursor"] == nil || m["stopped_at"] == nil {
		t.Fatalf("limit=2 of 3 matches: %v", m)
	}
	_, m2 := n.api(n.token, "GET", "/logs/search?contains=needle&cursor="+url.QueryEscape(m["next_cursor"].(string)), nil)
	if recs, _ := m2["records"].([]any); len(recs) != 1 || m2["complete"] != true {
		t.Fatalf("the next page: %v", m2)
	}
}
