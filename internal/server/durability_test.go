package server

import "testing"

// TestCompletionCommittedBeforeResponseEnds pins SPEC §6 sync durability:
// "its completion is committed before the response ends". Right after the
// agent has read a whole response, its audit record must already hold the
// status. Responses whose end the agent sees before keyhole's handler
// returns are the ones at risk: bodyless answers (204, 304, HEAD), whose
// end is the header flush, and bodies with a Content-Length that keyhole
// passes through unchanged (a proxy with no secret to scrub).
func TestCompletionCommittedBeforeResponseEnds(t *testing.T) {
	n := startNode(t)
	f := n.fx("dur", nil, allowAll)
	f.up.on("/v1/204", reply(204, ""))
	f.up.on("/v1/304", reply(304, ""))
	f.up.on("/v1/doc", reply(200, "hello", "Content-Type", "text/plain"))
	none := n.upstream()
	none.on("/v1/doc", reply(200, "hello", "Content-Type", "text/plain"))
	n.proxy("dur-none", none, map[string]any{"auth": map[string]any{"type": "none"}, "rules": []any{allowAll}})
	n.agent("dur-none-bot")
	ntok, _ := n.token("dur-none-bot", "1h", "dur-none")

	tests := []struct {
		name, method, path, tok string
		want                    int
	}{
		{"204", "GET", "/dur/v1/204", f.tok, 204},
		{"304", "GET", "/dur/v1/304", f.tok, 304},
		{"HEAD", "HEAD", "/dur/v1/doc", f.tok, 200},
		{"Content-Length passed through", "GET", "/dur-none/v1/doc", ntok, 200},
		{"scrubbed (chunked) body", "GET", "/dur/v1/doc", f.tok, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			missing := 0
			const tries = 40
			for range tries {
				r := n.call(tc.method, tc.path, tc.tok, "")
				if r.status != tc.want {
					t.Fatalf("want %d, got %s", tc.want, r)
				}
				if rec := n.record(r.rid()); str(rec, "status") != itoa(tc.want) {
					missing++
				}
			}
			if missing > 0 {
				t.Errorf("%d of %d responses had ended before their audit record held the status (sync durability: completion is committed before the response ends)", missing, tries)
			}
		})
	}
}
