package server

// The drop-in promise (SPEC §8): the official openai,
// @anthropic-ai/sdk and stripe SDKs work through keyhole by changing their
// base URL (or, for Stripe, their host) and their API key, and nothing
// else. Each test starts a node and an upstream that speaks the API's wire
// format (gzip-compressed whenever the client asks, as the real APIs do),
// runs the SDK script of sdktest/ against the node, and checks what the SDK
// got and what the upstream saw. Every byte the scripts print goes through
// the harness's leak checks: the canary secret, which each upstream echoes
// back in its answers, must never reach the SDK.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/templates"
)

// templateProxy creates a proxy from a built-in template (as `keyhole proxy
// create NAME --template T` does) in front of the test upstream.
func (n *testNode) templateProxy(name, tmpl string, up *upstream, secret string, rules ...any) {
	n.t.Helper()
	tp, ok := templates.Get(tmpl)
	if !ok {
		n.t.Fatalf("no template %q", tmpl)
	}
	p := tp.Proxy(name, up.URL, secret)
	js, _ := json.Marshal(p)
	var m map[string]any
	json.Unmarshal(js, &m)
	m["rules"] = rules
	n.must(http.StatusCreated, "POST", "/proxies", m)
}

// zipWriter answers gzip-compressed when the request accepts gzip (what
// keyhole's transport offers upstreams), and counts the answers it
// compressed. flush pushes what was written so far to the client.
type zipWriter struct {
	w  http.ResponseWriter
	gz *gzip.Writer
}

func newZipWriter(w http.ResponseWriter, r *http.Request, zipped *atomic.Int32) *zipWriter {
	z := &zipWriter{w: w}
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Del("Content-Length")
		z.gz = gzip.NewWriter(w)
		zipped.Add(1)
	}
	return z
}

func (z *zipWriter) Write(p []byte) (int, error) {
	if z.gz != nil {
		return z.gz.Write(p)
	}
	return z.w.Write(p)
}

func (z *zipWriter) flush() {
	if z.gz != nil {
		z.gz.Flush()
	}
	z.w.(http.Flusher).Flush()
}

func (z *zipWriter) close() {
	if z.gz != nil {
		z.gz.Close()
	}
}

// writeJSON answers status and v as JSON, gzip-compressed when accepted.
func writeZipJSON(w http.ResponseWriter, r *http.Request, zipped *atomic.Int32, status int, v any, hdr ...string) {
	for i := 0; i+1 < len(hdr); i += 2 {
		w.Header().Set(hdr[i], hdr[i+1])
	}
	w.Header().Set("Content-Type", "application/json")
	z := newZipWriter(w, r, zipped)
	w.WriteHeader(status)
	json.NewEncoder(z).Encode(v)
	z.close()
}

// openAIUpstream speaks OpenAI's chat completions: a chat.completion
// object, or with "stream": true server-sent `data:` chunks ending with
// `data: [DONE]`. Its answers hold the credential it received, split
// across two flushed writes when streaming. Models "rate-limited-once" and
// "always-rate-limited" answer 429 with OpenAI's retry hints.
func openAIUpstream(n *testNode, zipped *atomic.Int32) *upstream {
	up := n.upstream()
	var once atomic.Int32
	up.on("/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeZipJSON(w, r, zipped, 400, map[string]any{"error": map[string]any{"message": "bad json", "type": "invalid_request_error"}})
			return
		}
		rateLimited := map[string]any{"error": map[string]any{"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}
		switch {
		case req.Model == "rate-limited-once" && once.Add(1) == 1:
			writeZipJSON(w, r, zipped, 429, rateLimited, "Retry-After-Ms", "20", "Retry-After", "1", "X-Ratelimit-Remaining-Requests", "0")
			return
		case req.Model == "always-rate-limited":
			writeZipJSON(w, r, zipped, 429, rateLimited, "Retry-After", "7", "X-Ratelimit-Remaining-Requests", "0")
			return
		}
		key := r.Header.Get("Authorization")
		if !req.Stream {
			writeZipJSON(w, r, zipped, 200, map[string]any{
				"id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
					"message": map[string]any{"role": "assistant", "content": "Hello; key=" + key}}},
				"usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
			}, "X-Request-Id", "req_openai_1")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Request-Id", "req_openai_2")
		z := newZipWriter(w, r, zipped)
		w.WriteHeader(200)
		chunk := func(delta map[string]any, finish any) string {
			js, _ := json.Marshal(map[string]any{"id": "chatcmpl-124", "object": "chat.completion.chunk", "created": 1700000000,
				"model": req.Model, "choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}})
			return "data: " + string(js) + "\n\n"
		}
		keyChunk := chunk(map[string]any{"content": " key=" + key}, nil)
		cut := strings.Index(keyChunk, "Bearer ") + 12 // inside the credential
		for _, part := range []string{
			chunk(map[string]any{"role": "assistant", "content": ""}, nil),
			chunk(map[string]any{"content": "Hello"}, nil),
			keyChunk[:cut], keyChunk[cut:],
			chunk(map[string]any{}, "stop"),
			"data: [DONE]\n\n",
		} {
			io.WriteString(z, part)
			z.flush()
		}
		z.close()
	})
	return up
}

func TestSDKOpenAI(t *testing.T) {
	dir := nodeProject(t, "sdktest")
	n := startNode(t)
	secret := canary()
	n.secret("openai-key", secret)
	var zipped atomic.Int32
	up := openAIUpstream(n, &zipped)
	n.templateProxy("openai", "openai", up, "openai-key", rule("chat", "allow", "POST /v1/chat/completions"))
	n.agent("assistant")
	tok, _ := n.token("assistant", "1h", "openai")

	st := n.runNode(dir, "openai.mjs", "KEYHOLE_URL", "http://"+n.gw, "KH_TOKEN", tok,
		"OPENAI_BASE_URL", "http://"+n.gw+"/openai/v1", "OPENAI_API_KEY", tok)

	chat := st["chat"]
	if chat.str("content") != "Hello; key=Bearer [REDACTED]" || chat.str("object") != "chat.completion" || chat.str("total_tokens") != "12" {
		t.Errorf("chat.completions.create → %v; want the upstream's completion with the credential scrubbed", chat)
	}
	if chat.str("keyhole_request_id") == "" || chat.str("upstream_request_id") != "req_openai_1" {
		t.Errorf("response headers: X-Keyhole-Request-Id %q, the upstream's X-Request-Id %q", chat.str("keyhole_request_id"), chat.str("upstream_request_id"))
	}
	stream := st["stream"]
	if stream.str("content") != "Hello key=Bearer [REDACTED]" || stream.str("finish_reason") != "stop" || stream.str("chunks") != "4" {
		t.Errorf("streamed chat completion → %v", stream)
	}
	if st["env"].str("content") != "Hello; key=Bearer [REDACTED]" {
		t.Errorf("the SDK configured by OPENAI_BASE_URL and OPENAI_API_KEY alone → %v", st["env"])
	}
	if st["retry"].str("content") != "Hello; key=Bearer [REDACTED]" {
		t.Errorf("the SDK's own retry after 429 → %v", st["retry"])
	}
	if rl := st["rate_limit"]; rl.str("status") != "429" || rl.str("retry_after") != "7" || rl.str("ratelimit_remaining") != "0" {
		t.Errorf("a 429 must reach the SDK with its hints unchanged; got %v", rl)
	}
	if rf := st["refused"]; rf.str("status") != "403" || rf.str("code") != "no_rule_allows" || rf.str("keyhole_request_id") == "" {
		t.Errorf("a call no rule allows → want the SDK's 403 with code no_rule_allows; got %v", rf)
	}

	var chats, retries int
	for _, r := range up.requests() {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			t.Errorf("the upstream got Authorization %q, want the injected credential", r.Header.Get("Authorization"))
		}
		if r.Header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("keyhole must offer upstreams only gzip; the upstream got Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
		}
		for _, h := range []string{"X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-Runtime", "X-Stainless-Retry-Count"} {
			if r.Header.Get(h) == "" {
				t.Errorf("the SDK's %s header did not reach the upstream: %v", h, r.Header)
			}
		}
		if !strings.HasPrefix(r.Header.Get("User-Agent"), "OpenAI/JS") {
			t.Errorf("User-Agent %q did not pass through", r.Header.Get("User-Agent"))
		}
		chats++
		if r.Header.Get("X-Stainless-Retry-Count") == "1" {
			retries++
		}
	}
	if chats != 6 || retries != 1 {
		t.Errorf("the upstream saw %d chat calls (%d retries); want 6 (one the SDK's retry)", chats, retries)
	}
	if zipped.Load() == 0 {
		t.Errorf("the upstream never compressed an answer: gzip was not exercised")
	}
}

// anthropicUpstream speaks Anthropic's messages API: a message object, or
// with "stream": true the event stream (message_start, content_block_start,
// ping, content_block_delta…, content_block_stop, message_delta,
// message_stop). Model "overloaded-once" answers 529 to every other call.
func anthropicUpstream(n *testNode, zipped *atomic.Int32) *upstream {
	up := n.upstream()
	var once atomic.Int32
	up.on("/v1/messages", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeZipJSON(w, r, zipped, 400, map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": "bad json"}})
			return
		}
		if req.Model == "overloaded-once" && once.Add(1)%2 == 1 { // every other call
			writeZipJSON(w, r, zipped, 529, map[string]any{"type": "error", "error": map[string]any{"type": "overloaded_error", "message": "Overloaded"}},
				"Retry-After-Ms", "20", "Request-Id", "req_overloaded")
			return
		}
		key := r.Header.Get("X-Api-Key")
		text := "Hello; key=" + key
		if !req.Stream {
			writeZipJSON(w, r, zipped, 200, map[string]any{"id": "msg_01", "type": "message", "role": "assistant", "model": req.Model,
				"content": []any{map[string]any{"type": "text", "text": text}}, "stop_reason": "end_turn", "stop_sequence": nil,
				"usage": map[string]any{"input_tokens": 5, "output_tokens": 7}}, "Request-Id", "req_anthropic_1")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Request-Id", "req_anthropic_2")
		z := newZipWriter(w, r, zipped)
		w.WriteHeader(200)
		ev := func(typ string, data map[string]any) string {
			data["type"] = typ
			js, _ := json.Marshal(data)
			return "event: " + typ + "\ndata: " + string(js) + "\n\n"
		}
		keyEv := ev("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": "; key=" + key}})
		cut := strings.Index(keyEv, "key=") + 10 // inside the credential
		for _, part := range []string{
			ev("message_start", map[string]any{"message": map[string]any{"id": "msg_02", "type": "message", "role": "assistant", "model": req.Model,
				"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": map[string]any{"input_tokens": 5, "output_tokens": 1}}}),
			ev("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}}),
			ev("ping", map[string]any{}),
			ev("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": "Hello"}}),
			keyEv[:cut], keyEv[cut:],
			ev("content_block_stop", map[string]any{"index": 0}),
			ev("message_delta", map[string]any{"delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}, "usage": map[string]any{"output_tokens": 9}}),
			ev("message_stop", map[string]any{}),
		} {
			io.WriteString(z, part)
			z.flush()
		}
		z.close()
	})
	return up
}

func TestSDKAnthropic(t *testing.T) {
	dir := nodeProject(t, "sdktest")
	n := startNode(t)
	secret := canary()
	n.secret("anthropic-key", secret)
	var zipped atomic.Int32
	up := anthropicUpstream(n, &zipped)
	n.templateProxy("anthropic", "anthropic", up, "anthropic-key", rule("messages", "allow", "POST /v1/messages"))
	n.agent("assistant")
	tok, _ := n.token("assistant", "1h", "anthropic")

	for _, mode := range []string{"sdk", "x-api-key"} {
		before := up.count()
		st := n.runNode(dir, "anthropic.mjs", "KEYHOLE_URL", "http://"+n.gw, "KH_TOKEN", tok, "MODE", mode,
			"ANTHROPIC_BASE_URL", "http://"+n.gw+"/anthropic", "ANTHROPIC_API_KEY", tok)
		want := "Hello; key=[REDACTED]"
		if m := st["message"]; m.str("text") != want || m.str("type") != "message" || m.str("stop_reason") != "end_turn" ||
			m.str("upstream_request_id") != "req_anthropic_1" || m.str("keyhole_request_id") == "" {
			t.Errorf("%s: messages.create → %v", mode, m)
		}
		s := st["stream"]
		events, _ := s["events"].([]any)
		var names []string
		for _, e := range events {
			names = append(names, fmt.Sprint(e))
		}
		if s.str("text") != want || s.str("final_text") != want || s.str("stop_reason") != "end_turn" ||
			strings.Join(names, ",") != "message_start,content_block_start,content_block_delta,content_block_delta,content_block_stop,message_delta,message_stop" {
			t.Errorf("%s: messages.stream → %v", mode, s)
		}
		if st["env"].str("text") != want {
			t.Errorf("%s: the SDK configured by ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY alone → %v", mode, st["env"])
		}
		if st["retry"].str("text") != want {
			t.Errorf("%s: the SDK's retry after 529 → %v", mode, st["retry"])
		}
		reqs := up.requests()[before:]
		if len(reqs) != 5 {
			t.Errorf("%s: the upstream saw %d requests, want 5 (message, stream, env, 529 and its retry)", mode, len(reqs))
		}
		for _, r := range reqs {
			if r.Header.Get("X-Api-Key") != secret || r.Header.Get("Authorization") != "" {
				t.Errorf("%s: the upstream got x-api-key %q and Authorization %q; want the injected key and no Authorization", mode,
					r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
			}
			beta := "test-beta-2025-01-01" // the scripts' defaultHeaders, but for the client configured by the environment alone
			if bytes.Contains(r.Body, []byte(`"claude-env"`)) {
				beta = ""
			}
			if r.Header.Get("Anthropic-Version") != "2023-06-01" || r.Header.Get("Anthropic-Beta") != beta ||
				r.Header.Get("X-Stainless-Lang") != "js" || !strings.HasPrefix(r.Header.Get("User-Agent"), "Anthropic/JS") {
				t.Errorf("%s: the SDK's headers did not all pass through: %v", mode, r.Header)
			}
		}
	}

	// curl's way, both token locations: x-api-key (the template's
	// agent_token_header) and Authorization: Bearer.
	body := `{"model":"claude-test","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`
	for _, hdr := range [][]string{{"X-Api-Key", tok}, {"Authorization", "Bearer " + tok}} {
		r := n.call("POST", "/anthropic/v1/messages", "", body, "Content-Type", "application/json", "Anthropic-Version", "2023-06-01",
			"Accept-Encoding", "gzip", hdr[0], hdr[1])
		var m struct {
			Content []struct{ Text string } `json:"content"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &m) != nil || len(m.Content) != 1 || m.Content[0].Text != "Hello; key=[REDACTED]" {
			t.Errorf("curl-style %s → %s", hdr[0], r)
		}
		if last := up.last(); last.Header.Get("X-Api-Key") != secret || last.Header.Get("Authorization") != "" {
			t.Errorf("curl-style %s: the upstream got %v", hdr[0], last.Header)
		}
	}
	if zipped.Load() == 0 {
		t.Errorf("the upstream never compressed an answer: gzip was not exercised")
	}
}

// stripeUpstream speaks Stripe's API: form-encoded POSTs, JSON answers and
// errors, 429 with Retry-After and Stripe-Should-Retry.
func stripeUpstream(n *testNode, zipped *atomic.Int32) *upstream {
	up := n.upstream()
	customer := func(r *http.Request, f url.Values) map[string]any {
		return map[string]any{"id": "cus_123", "object": "customer", "email": f.Get("email"), "name": f.Get("name"),
			"description": "key=" + r.Header.Get("Authorization"), "metadata": map[string]any{"order": f.Get("metadata[order]")}}
	}
	up.on("/v1/customers", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			writeZipJSON(w, r, zipped, 400, map[string]any{"error": map[string]any{"type": "invalid_request_error", "message": "not a form"}})
			return
		}
		b, _ := io.ReadAll(r.Body)
		f, _ := url.ParseQuery(string(b))
		writeZipJSON(w, r, zipped, 200, customer(r, f), "Request-Id", "req_stripe_1", "Idempotency-Key", r.Header.Get("Idempotency-Key"))
	})
	up.on("/v1/customers/", func(w http.ResponseWriter, r *http.Request) {
		writeZipJSON(w, r, zipped, 200, customer(r, url.Values{"email": {"jenny@example.com"}}), "Request-Id", "req_stripe_2")
	})
	var charges atomic.Int32
	rateLimited := map[string]any{"error": map[string]any{"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}}
	up.on("/v1/charges", func(w http.ResponseWriter, r *http.Request) {
		if charges.Add(1) == 1 {
			writeZipJSON(w, r, zipped, 429, rateLimited, "Retry-After", "1", "Stripe-Should-Retry", "true")
			return
		}
		writeZipJSON(w, r, zipped, 200, map[string]any{"id": "ch_1", "object": "charge", "amount": 500, "currency": "usd"})
	})
	up.on("/v1/refunds", func(w http.ResponseWriter, r *http.Request) {
		writeZipJSON(w, r, zipped, 429, rateLimited, "Retry-After", "7", "Stripe-Should-Retry", "false")
	})
	return up
}

func TestSDKStripeHostRouting(t *testing.T) {
	dir := nodeProject(t, "sdktest")
	n := startNode(t, func(c *Config) { c.HostSuffix = ".localhost" })
	secret := "sk_test_" + canary()
	n.secret("stripe-key", secret)
	var zipped atomic.Int32
	up := stripeUpstream(n, &zipped)
	n.templateProxy("stripe", "stripe", up, "stripe-key", rule("customers-and-charges", "allow", "GET,POST /v1/**"))
	n.agent("billing-bot")
	tok, _ := n.token("billing-bot", "1h", "stripe")
	_, port, _ := strings.Cut(n.gw, ":")

	st := n.runNode(dir, "stripe.mjs", "KEYHOLE_PORT", port, "KH_TOKEN", tok)

	if c := st["create"]; c.str("id") != "cus_123" || c.str("email") != "jenny@example.com" || c.str("name") != "Jenny Rosen" ||
		c.str("description") != "key=Bearer [REDACTED]" {
		t.Errorf("customers.create → %v", c)
	}
	if st["retrieve"].str("id") != "cus_123" {
		t.Errorf("customers.retrieve → %v", st["retrieve"])
	}
	if st["retry"].str("id") != "ch_1" {
		t.Errorf("charges.create after the SDK's own retry → %v", st["retry"])
	}
	if nr := st["no_retry"]; nr.str("status") != "429" || nr.str("retry_after") != "7" || nr.str("should_retry") != "false" || nr.str("code") != "rate_limit" {
		t.Errorf("a 429 with Stripe-Should-Retry: false must reach the SDK with its hints unchanged; got %v", nr)
	}
	if rf := st["refused"]; rf.str("status") != "403" || rf.str("code") != "no_rule_allows" {
		t.Errorf("customers.del (no rule allows DELETE) → want 403 no_rule_allows; got %v", rf)
	}

	reqs := up.requests()
	var chargeKeys []string
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			t.Errorf("%s %s: the upstream got Authorization %q", r.Method, r.RequestURI, r.Header.Get("Authorization"))
		}
		if r.Header.Get("Stripe-Version") == "" || r.Header.Get("X-Stripe-Client-User-Agent") == "" || !strings.HasPrefix(r.Header.Get("User-Agent"), "Stripe/") {
			t.Errorf("%s %s: the SDK's Stripe-Version / X-Stripe-Client-User-Agent / User-Agent did not pass: %v", r.Method, r.RequestURI, r.Header)
		}
		switch {
		case r.Method == "POST" && r.RequestURI == "/v1/customers":
			f, _ := url.ParseQuery(string(r.Body))
			if r.Header.Get("Idempotency-Key") != "idem-create-jenny" || f.Get("email") != "jenny@example.com" || f.Get("metadata[order]") != "6735" {
				t.Errorf("POST /v1/customers: Idempotency-Key %q, form %q", r.Header.Get("Idempotency-Key"), r.Body)
			}
		case r.RequestURI == "/v1/charges":
			chargeKeys = append(chargeKeys, r.Header.Get("Idempotency-Key"))
		}
	}
	if len(chargeKeys) != 2 || chargeKeys[0] == "" || chargeKeys[0] != chargeKeys[1] {
		t.Errorf("charges.create: want the 429 and the SDK's retry with the same Idempotency-Key; got %q", chargeKeys)
	}
	if rec := n.logs("proxy=stripe&decision=deny"); len(rec) != 1 || str(rec[0], "method") != "DELETE" || str(rec[0], "path") != "/v1/customers/cus_123" {
		t.Errorf("the refused DELETE's record (host-routed: the whole path is the API's): %v", rec)
	}
	if zipped.Load() == 0 {
		t.Errorf("the upstream never compressed an answer: gzip was not exercised")
	}
	// Host routing is what carried the calls: the path had no /stripe prefix.
	for _, r := range reqs {
		if strings.HasPrefix(r.RequestURI, "/stripe") {
			t.Errorf("the upstream got %s: the SDK's path must arrive unchanged", r.RequestURI)
		}
	}
}
