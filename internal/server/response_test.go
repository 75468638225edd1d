package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// failsafe bounds every wait on the network in this file. It is never an
// assertion about speed: it only stops a broken build from hanging the run.
const failsafe = 10 * time.Second

// TestUpstreamAnswersPassThrough pins SPEC §3.3 step 8 and §3.6: upstream
// statuses pass through unchanged, redirects are passed back (scrubbed) and
// never followed, Set-Cookie is dropped unless pass_cookies, the
// upstream's own X-Keyhole-Request-Id cannot replace keyhole's, and
// SDK retry hints come back as sent.
func TestUpstreamAnswersPassThrough(t *testing.T) {
	n := startNode(t)
	f := n.fx("pass", nil, allowAll)
	other := n.upstream() // a redirect's target: must never be contacted
	f.up.on("/v1/401", reply(401, `{"upstream":"says no"}`, "Content-Type", "application/json", "Www-Authenticate", `Bearer realm="up"`))
	f.up.on("/v1/403", reply(403, "forbidden upstream", "Content-Type", "text/plain"))
	f.up.on("/v1/429", reply(429, "slow down", "Retry-After", "7", "Stripe-Should-Retry", "true"))
	f.up.on("/v1/503", reply(503, "upstream maintenance", "Retry-After", "120"))
	f.up.on("/v1/204", reply(204, ""))
	f.up.on("/v1/418", reply(418, "teapot"))
	f.up.on("/v1/302", reply(302, "", "Location", other.URL+"/steal?x=1"))
	f.up.on("/v1/307", reply(307, "", "Location", "/v1/elsewhere"))
	f.up.on("/v1/302-secret", reply(302, "", "Location", "https://evil.example/cb?k="+f.s))
	f.up.on("/v1/cookie", reply(200, "ok", "Set-Cookie", "sid=abc; Path=/", "Set-Cookie", "other=1"))
	f.up.on("/v1/rid", reply(200, "ok", "X-Keyhole-Request-Id", "upstream-chosen"))

	tests := []struct {
		name, path string
		wantStatus int
		wantBody   string
		wantHdr    map[string]string // "" = absent
	}{
		{"upstream 401", "/v1/401", 401, `{"upstream":"says no"}`, map[string]string{"Www-Authenticate": `Bearer realm="up"`}},
		{"upstream 403", "/v1/403", 403, "forbidden upstream", nil},
		{"upstream 429 with retry hints", "/v1/429", 429, "slow down", map[string]string{"Retry-After": "7", "Stripe-Should-Retry": "true"}},
		{"upstream 503", "/v1/503", 503, "upstream maintenance", map[string]string{"Retry-After": "120"}},
		{"upstream 204", "/v1/204", 204, "", nil},
		{"unusual status", "/v1/418", 418, "teapot", nil},
		{"redirect to another host, not followed", "/v1/302", 302, "", map[string]string{"Location": other.URL + "/steal?x=1"}},
		{"relative redirect, not followed", "/v1/307", 307, "", map[string]string{"Location": "/v1/elsewhere"}},
		{"redirect carrying the secret, scrubbed", "/v1/302-secret", 302, "", map[string]string{"Location": "https://evil.example/cb?k=[REDACTED]"}},
		{"Set-Cookie dropped by default", "/v1/cookie", 200, "ok", map[string]string{"Set-Cookie": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := n.call("GET", "/pass"+tc.path, f.tok, "")
			if r.status != tc.wantStatus || string(r.body) != tc.wantBody || r.rid() == "" {
				t.Errorf("want %d %q with X-Keyhole-Request-Id, got %s", tc.wantStatus, tc.wantBody, r)
			}
			for k, v := range tc.wantHdr {
				if got := r.hdr.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if rec := n.record(r.rid()); str(rec, "status") != itoa(tc.wantStatus) || str(rec, "decision") != "allow" {
				t.Errorf("audit status/decision = %s/%s, want %d/allow", str(rec, "status"), str(rec, "decision"), tc.wantStatus)
			}
		})
	}
	if other.count() != 0 {
		t.Errorf("a redirect was followed: the other host received %d requests", other.count())
	}
	if f.up.count() != len(tests) {
		t.Errorf("the upstream received %d requests for %d calls: a redirect was followed", f.up.count(), len(tests))
	}
	r := n.call("GET", "/pass/v1/rid", f.tok, "")
	if got := r.hdr.Values("X-Keyhole-Request-Id"); len(got) != 1 || got[0] == "upstream-chosen" || got[0] != f.up.last().Header.Get("X-Keyhole-Request-Id") {
		t.Errorf("X-Keyhole-Request-Id = %q; want exactly keyhole's id (the one the upstream received), never the upstream's", got)
	}
	p := n.fx("cookies", map[string]any{"pass_cookies": true}, allowAll)
	p.up.on("/v1/cookie", reply(200, "ok", "Set-Cookie", "sid=abc; Path=/", "Set-Cookie", "other=1"))
	if r := n.call("GET", "/cookies/v1/cookie", p.tok, ""); strings.Join(r.hdr.Values("Set-Cookie"), "|") != "sid=abc; Path=/|other=1" {
		t.Errorf("pass_cookies: want both Set-Cookie headers, got %q", r.hdr.Values("Set-Cookie"))
	}
}

// TestUpstreamFailures pins SPEC §3.3 step 8: an unreachable upstream is
// 502, one slower than its response_header timeout is 504 (the status is
// asserted, never a duration), a content coding keyhole cannot inspect is
// 502 upstream_encoding (a br body would hide a secret from the scrubber),
// and each is recorded.
func TestUpstreamFailures(t *testing.T) {
	n := startNode(t)
	dead := n.fx("dead", nil, allowAll)
	dead.up.Close() // nothing listens there any more

	late := n.fx("late", map[string]any{"timeouts": map[string]string{"connect": "5s", "response_header": "200ms", "total": "1m"}}, allowAll)
	late.up.on("/v1/slow", hang)

	enc := n.fx("enc", nil, allowAll)
	enc.up.on("/v1/br", reply(200, "\x1b\x03\x00secret-in-br", "Content-Encoding", "br", "Content-Type", "text/plain"))
	enc.up.on("/v1/deflate", reply(200, "xx", "Content-Encoding", "deflate"))
	enc.up.on("/v1/zstd", reply(200, "xx", "Content-Encoding", "zstd"))
	enc.up.on("/v1/gzip-br", reply(200, "xx", "Content-Encoding", "gzip, br"))
	enc.up.on("/v1/identity", reply(200, "plain", "Content-Encoding", "identity"))

	tests := []struct {
		name, path, tok string
		wantStatus      int
		wantCode        string
	}{
		{"unreachable upstream", "/dead/v1/x", dead.tok, 502, "upstream_unreachable"},
		{"response_header timeout", "/late/v1/slow", late.tok, 504, "upstream_timeout"},
		{"br response", "/enc/v1/br", enc.tok, 502, "upstream_encoding"},
		{"deflate response", "/enc/v1/deflate", enc.tok, 502, "upstream_encoding"},
		{"zstd response", "/enc/v1/zstd", enc.tok, 502, "upstream_encoding"},
		{"gzip then br", "/enc/v1/gzip-br", enc.tok, 502, "upstream_encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := n.call("GET", tc.path, tc.tok, "", "Accept-Encoding", "br, gzip, deflate, zstd")
			if !wantErr(t, "GET "+tc.path, r, tc.wantStatus, tc.wantCode) {
				return
			}
			if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "dial") {
				t.Errorf("the error message names internals: %s", r.body)
			}
			rec := n.record(r.rid())
			if str(rec, "status") != itoa(tc.wantStatus) || str(rec, "decision") != "error" || str(rec, "reason") != tc.wantCode {
				t.Errorf("audit status/decision/reason = %s/%s/%s, want %d/error/%s", str(rec, "status"), str(rec, "decision"), str(rec, "reason"), tc.wantStatus, tc.wantCode)
			}
		})
	}
	if r := n.call("GET", "/enc/v1/identity", enc.tok, ""); r.status != http.StatusOK || string(r.body) != "plain" {
		t.Errorf("Content-Encoding: identity is plain text → want 200 plain, got %s", r)
	}
	for _, rq := range enc.up.requests() {
		if ae := rq.Header.Get("Accept-Encoding"); ae != "" && ae != "gzip" {
			t.Errorf("keyhole offers upstreams only encodings it decodes; the upstream got Accept-Encoding %q", ae)
		}
	}
}

// TestCompressedResponsesAreScrubbed pins SPEC §3.6 "compression never
// hides a secret": an upstream that gzips its answer (even unasked) is
// decoded before scrubbing, so the agent gets plaintext with [REDACTED],
// and the audit capture sees plaintext too.
func TestCompressedResponsesAreScrubbed(t *testing.T) {
	n := startNode(t)
	f := n.fx("gz", nil, allowAll)
	body := `{"echo":"` + f.s + `","pad":"` + strings.Repeat("x", 4096) + `"}`
	f.up.on("/v1/gz", gzipped("application/json", body, "X-Key", f.s))
	want := strings.ReplaceAll(body, f.s, "[REDACTED]")
	for _, ae := range []string{"", "gzip", "identity", "br"} {
		t.Run("Accept-Encoding "+ae, func(t *testing.T) {
			var hdr []string
			if ae != "" {
				hdr = []string{"Accept-Encoding", ae}
			}
			r := n.call("GET", "/gz/v1/gz", f.tok, "", hdr...)
			if r.status != http.StatusOK {
				t.Fatalf("want 200, got %s", r)
			}
			got := r.body
			switch ce := r.hdr.Get("Content-Encoding"); ce {
			case "":
			case "gzip":
				if ae != "gzip" {
					t.Errorf("the agent did not accept gzip, yet the response is gzip-encoded")
				}
				zr, err := gzip.NewReader(bytes.NewReader(got))
				if err != nil {
					t.Fatalf("a gzip response that does not decode: %v", err)
				}
				if got, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("Content-Encoding %q toward the agent", ce)
			}
			if string(got) != want {
				t.Errorf("want the decoded body with [REDACTED], got %q", clip(string(got)))
			}
			if r.hdr.Get("X-Key") != "[REDACTED]" {
				t.Errorf("X-Key = %q, want [REDACTED]", r.hdr.Get("X-Key"))
			}
			rec := n.record(r.rid())
			if rb := str(rec, "response_body"); !strings.Contains(rb, `"echo":"[REDACTED]"`) {
				t.Errorf("the audit capture must be the decoded, redacted body; got %q", clip(rb))
			}
		})
	}
}

// TestSSEIsNotBuffered pins SPEC §3.6 "server-sent events reach the agent
// as they arrive" without measuring time: the upstream sends event one and
// then blocks until the test has read event one through keyhole; only then
// does it send event two. A gateway that buffers the response never
// delivers event one, and the failsafe fails the test.
func TestSSEIsNotBuffered(t *testing.T) {
	n := startNode(t)
	f := n.fx("sse", nil, allowAll)
	gate := make(chan struct{})
	half := len(f.s) / 2
	f.up.on("/v1/stream", gated("text/event-stream", gate,
		"event: one\ndata: {\"n\":1}\n\n",
		"data: key="+f.s[:half], // a secret split across events' writes…
		f.s[half:]+"\n\nevent: two\ndata: {\"n\":2}\n\n"))
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+n.gw+"/sse/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+f.tok)
	req.Header.Set("Accept", "application/json") // SSE is recognised by the response, not the request
	res, err := agentClient.Do(req)
	if err != nil {
		t.Fatalf("SSE request: %v", err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("want 200 text/event-stream, got %d %q", res.StatusCode, ct)
	}
	br := bufio.NewReader(res.Body)
	var got strings.Builder
	readEvent := func(what string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			got.WriteString(line)
			if err != nil {
				t.Fatalf("reading %s: %v (the response is buffered if this is the failsafe's deadline); so far %q", what, err, got.String())
			}
			if line == "\n" {
				return
			}
		}
	}
	readEvent("event one before the upstream sends anything else")
	open(t, gate) // the upstream may now send the first half of the secret
	open(t, gate) // … and the rest, and event two
	readEvent("the event holding the secret")
	readEvent("event two")
	rest, _ := io.ReadAll(br)
	got.Write(rest)
	n.see("agent SSE stream", got.String(), false)
	want := "event: one\ndata: {\"n\":1}\n\ndata: key=[REDACTED]\n\nevent: two\ndata: {\"n\":2}\n\n"
	if got.String() != want {
		t.Errorf("the stream arrives intact, in order, scrubbed: want %q, got %q", want, got.String())
	}
}

// TestSecretSplitAcrossChunks pins the streaming scrubber (SPEC §3.6) at
// every split point of a secret: the upstream sends "pre-" plus the first
// part of the secret, flushes, and waits until the agent has read "pre-"
// through keyhole — which proves keyhole sends what cannot be a secret at
// once and holds back only the possible prefix — then sends the rest.
func TestSecretSplitAcrossChunks(t *testing.T) {
	n := startNode(t)
	f := n.fx("split", nil, allowAll)
	s := f.s
	for i := 1; i < len(s); i++ {
		gate := make(chan struct{})
		path := "/v1/split/" + itoa(i)
		f.up.on(path, gated("text/plain", gate, "pre-"+s[:i], s[i:]+"-post"))
		t.Run("split at "+itoa(i), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), failsafe)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+n.gw+"/split"+path, nil)
			req.Header.Set("Authorization", "Bearer "+f.tok)
			res, err := agentClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			first := make([]byte, 4)
			if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "pre-" {
				t.Fatalf("want \"pre-\" before the upstream sends the rest, got %q, %v", first, err)
			}
			open(t, gate)
			rest, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			got := string(first) + string(rest)
			n.see("agent split body", got, false)
			if got != "pre-[REDACTED]-post" {
				t.Errorf("want pre-[REDACTED]-post, got %q", got)
			}
		})
	}
	// A prefix of the secret that never completes is released as it is.
	f.up.on("/v1/partial", gated("text/plain", nil, "x"+s[:len(s)-1], "Y"))
	if r := n.call("GET", "/split/v1/partial", f.tok, ""); string(r.body) != "x"+s[:len(s)-1]+"Y" {
		t.Errorf("a prefix of the secret that does not complete it passes unchanged; got %q", r.body)
	}
	f.up.on("/v1/partial-end", gated("text/plain", nil, "x"+s[:len(s)-1]))
	if r := n.call("GET", "/split/v1/partial-end", f.tok, ""); string(r.body) != "x"+s[:len(s)-1] {
		t.Errorf("a prefix of the secret at the end of the body is released at EOF; got %q", r.body)
	}
}

// open lets a gated upstream send its next part, failing the test if the
// upstream is not waiting for it within the failsafe.
func open(t *testing.T, gate chan<- struct{}) {
	t.Helper()
	select {
	case gate <- struct{}{}:
	case <-time.After(failsafe):
		t.Fatalf("the upstream never came back for its next part")
	}
}

// TestHeadAndBodylessResponses: a HEAD through the scrubber keeps its
// Content-Length semantics and sends no body; 204/304 stay bodiless.
func TestHeadAndBodylessResponses(t *testing.T) {
	n := startNode(t)
	f := n.fx("head", nil, allowAll)
	f.up.on("/v1/doc", reply(200, "hello "+f.s, "Content-Type", "text/plain", "X-Key", f.s))
	f.up.on("/v1/304", reply(304, "", "Etag", `"abc"`))
	r := n.call("HEAD", "/head/v1/doc", f.tok, "")
	if r.status != 200 || len(r.body) != 0 || r.hdr.Get("X-Key") != "[REDACTED]" {
		t.Errorf("HEAD → want 200, no body, X-Key [REDACTED]; got %s", r)
	}
	if r := n.call("GET", "/head/v1/304", f.tok, "", "If-None-Match", `"abc"`); r.status != 304 || len(r.body) != 0 || r.hdr.Get("Etag") != `"abc"` {
		t.Errorf("304 passes through bodiless with its ETag; got %s", r)
	}
}

// TestResponseTrailersAreScrubbed: trailer fields are header fields (RFC
// 9110 §6.5) that ReverseProxy passes to the agent after the body. The
// attack it pins: an upstream (or anything on its path) that puts the
// credential it received into a trailer — declared or not — would hand it
// to the agent, past a scrubber that only looked at the header block and
// the body.
func TestResponseTrailersAreScrubbed(t *testing.T) {
	n := startNode(t)
	f := n.fx("trl", nil, allowAll)
	f.up.on("/v1/trailer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sig, X-Plain")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "body "+f.s)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sig", "sig="+r.Header.Get("Authorization"))
		w.Header().Set("X-Plain", "nothing secret")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", f.s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+n.gw+"/trl/v1/trailer", nil)
	req.Header.Set("Authorization", "Bearer "+f.tok)
	res, err := agentClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := readResp(res)
	if err != nil {
		t.Fatal(err)
	}
	n.see("agent response with trailers", r.dump(), false)
	if string(r.body) != "body [REDACTED]" {
		t.Errorf("body = %q, want body [REDACTED]", r.body)
	}
	want := map[string]string{"X-Sig": "sig=Bearer [REDACTED]", "X-Plain": "nothing secret", "X-Undeclared": "[REDACTED]"}
	for k, v := range want {
		if got := res.Trailer.Get(k); got != v {
			t.Errorf("trailer %s = %q, want %q", k, got, v)
		}
	}
}
