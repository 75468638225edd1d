package server

import (
	"io"
	"net/http"
	"strconv"
	"testing"
)

// SPEC §3.8 quotas: a count of requests and a sum of a number read from the
// response (JSON, and the last event of a stream that carries it), per
// agent and period → 429 quota_exceeded with Retry-After once spent; the
// counters survive a restart.
func TestQuotas(t *testing.T) {
	n := startNode(t)
	f := n.fx("quota", map[string]any{"quotas": []any{
		map[string]any{"name": "calls", "limit": 3, "per": "hour"},
		map[string]any{"name": "tokens", "limit": 100, "per": "day", "sum": "usage.total_tokens"},
	}}, rule("all", "allow", "* /**"))
	f.up.on("/v1/chat", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","usage":{"prompt_tokens":20,"total_tokens":60}}`)
	})
	f.up.on("/v1/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"delta\":\"hi\"}\n\ndata: {\"usage\":{\"total_tokens\":30}}\n\ndata: [DONE]\n\n")
	})
	// calls: 3 per hour. tokens: 0 → 60 (JSON), → 90 (the stream's last
	// usage), → 150 (90 < 100, so the third call is still allowed).
	for i, path := range []string{"/v1/chat", "/v1/stream", "/v1/chat"} {
		if r := n.call("POST", "/quota"+path, f.tok, "{}", "Content-Type", "application/json"); r.status != 200 {
			t.Fatalf("call %d: want 200, got %s", i+1, r)
		}
	}
	r := n.call("POST", "/quota/v1/chat", f.tok, "{}", "Content-Type", "application/json")
	if r.status != 429 || r.errCode() != "quota_exceeded" {
		t.Fatalf("the fourth call exceeds both quotas; want 429 quota_exceeded, got %s", r)
	}
	if s, err := strconv.Atoi(r.hdr.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 carries Retry-After in seconds; got %q", r.hdr.Get("Retry-After"))
	}
	if rec := n.record(r.rid()); str(rec, "reason") != "quota_exceeded:calls" {
		t.Errorf("the record names the spent quota; got reason %q", str(rec, "reason"))
	}
	n.agent("other-bot")
	other, _ := n.token("other-bot", "1h", "quota")
	if r := n.call("POST", "/quota/v1/chat", other, "{}", "Content-Type", "application/json"); r.status != 200 {
		t.Errorf("each agent has its own budget; another agent's first call → want 200, got %s", r)
	}
	before := f.up.count()
	n.restart()
	if r := n.call("GET", "/quota/v1/x", f.tok, ""); r.status != 429 || f.up.count() != before {
		t.Errorf("quota counters survive a restart; want 429 and nothing forwarded, got %s", r)
	}
}
