package admin_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/server"
)

// cursorSeqs decodes a stream cursor (base64url of "s1:" and a JSON object
// of node → seq): the test reads the position the stream says it is at.
func cursorSeqs(t *testing.T, id string) map[string]int64 {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || !strings.HasPrefix(string(b), "s1:") {
		t.Fatalf("cursor %q is not base64url of s1:{…}", id)
	}
	var m map[string]int64
	if err := json.Unmarshal(b[3:], &m); err != nil {
		t.Fatalf("cursor %q: %v", id, err)
	}
	return m
}

// TestLogStreamCommitOrder: 200 requests made at once while a follower is
// connected all arrive — each as its start, then its end as an update —
// in the order the node committed them, with no event of the chain
// skipped (the seqs the stream sends are contiguous from its start).
func TestLogStreamCommitOrder(t *testing.T) {
	n := startNode(t)
	tok := n.setup("stripe", nil)
	s, _ := n.stream(n.token, "", "")
	start := cursorSeqs(t, s.first(t).id)
	if len(start) != 1 {
		t.Fatalf("start position %v: want the one node", start)
	}
	var node string
	var head int64
	for node, head = range start {
	}

	const N = 200
	var mu sync.Mutex
	want := map[string]bool{}
	var wg sync.WaitGroup
	for i := range N {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, rid := n.call("GET", fmt.Sprintf("/stripe/v1/items/%d", i), tok, nil, "")
			if code != 200 {
				t.Errorf("request %d → %d %s", i, code, rid)
			}
			mu.Lock()
			want[rid] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	evs := s.waitFor(t, "every request's start and end", func(evs []sseEvent) bool {
		updates := 0
		for _, e := range evs {
			if e.kind == "update" && want[e.str("id")] {
				updates++
			}
		}
		return updates == N
	})

	starts, ends := map[string]int{}, map[string]int{}
	prev := head
	for i, e := range evs {
		if seq := e.seq(); seq != prev+1 {
			t.Fatalf("event %d has seq %d after %d: the stream skipped or reordered the chain", i, seq, prev)
		}
		prev = e.seq()
		if got := cursorSeqs(t, e.id); got[node] != e.seq() {
			t.Errorf("event %d: id %v, want %s at %d", i, got, node, e.seq())
		}
		id := e.str("id")
		if !want[id] {
			t.Errorf("event %d is of record %s, not one of the requests", i, id)
			continue
		}
		switch e.kind {
		case "":
			starts[id]++
			if e.rec["incomplete"] != true || e.rec["status"] != nil {
				t.Errorf("a start is sent in flight (incomplete, no status): %v", e.rec)
			}
		case "update":
			if starts[id] != 1 {
				t.Errorf("the update of %s came before its start", id)
			}
			ends[id]++
			if e.rec["incomplete"] != nil || e.rec["status"] != 200.0 {
				t.Errorf("an update carries the ended record: %v", e.rec)
			}
		default:
			t.Errorf("event kind %q", e.kind)
		}
	}
	for id := range want {
		if starts[id] != 1 || ends[id] != 1 {
			t.Errorf("record %s: %d starts and %d updates, want one each", id, starts[id], ends[id])
		}
	}
}

// TestLogStreamResume: a client that reconnects with the id of the last
// event it got (Last-Event-ID, or the cursor parameter) gets exactly what
// came after it, also what was committed while it was away.
func TestLogStreamResume(t *testing.T) {
	for _, how := range []string{"Last-Event-ID", "cursor"} {
		t.Run(how, func(t *testing.T) {
			n := startNode(t)
			tok := n.setup("stripe", nil)
			s, _ := n.stream(n.token, "proxy=stripe", "")
			s.first(t)
			rid := map[string]string{}
			for _, p := range []string{"a0", "a1", "a2"} {
				_, rid[p] = n.call("GET", "/stripe/v1/"+p, tok, nil, "")
			}
			evs := s.waitFor(t, "three records", func(evs []sseEvent) bool { return len(evs) == 6 })
			cut := evs[3] // the update of a1
			if cut.kind != "update" || cut.str("id") != rid["a1"] {
				t.Fatalf("event 3 is %q of %s, want the update of a1 (%s)", cut.kind, cut.str("id"), rid["a1"])
			}
			s.close()
			for _, p := range []string{"b0", "b1"} {
				_, rid[p] = n.call("GET", "/stripe/v1/"+p, tok, nil, "")
			}
			q, last := "proxy=stripe", cut.id
			if how == "cursor" {
				q, last = q+"&cursor="+url.QueryEscape(cut.id), ""
			}
			s2, code := n.stream(n.token, q, last)
			if code != 200 {
				t.Fatalf("resume → %d", code)
			}
			got := s2.waitFor(t, "what came after the cut", func(evs []sseEvent) bool { return len(evs) >= 6 })
			var seq []string
			for _, e := range got {
				name := e.str("path")[4:]
				if e.kind == "update" {
					name += "/end"
				}
				seq = append(seq, name)
			}
			if want := "a2 a2/end b0 b0/end b1 b1/end"; strings.Join(seq, " ") != want {
				t.Errorf("after the cut the stream sent %q, want %q", strings.Join(seq, " "), want)
			}
		})
	}
}

// TestLogStreamFilters: the filters of GET /logs apply to each record as it
// stands after the event; an update of a record sent is always sent.
func TestLogStreamFilters(t *testing.T) {
	n := startNode(t)
	tok := n.setup("stripe", nil)
	otherTok := n.setup("other", nil)
	// A proxy whose upstream is gone: its requests start "allow" and end
	// "error".
	n.must(201, "POST", "/secrets", map[string]any{"name": "down-key", "value": "sk_test_" + randAlnum(32)})
	n.must(201, "POST", "/proxies", map[string]any{"name": "down", "upstream": "http://" + freeAddr(t),
		"auth":  map[string]any{"type": "bearer", "secret": "down-key"},
		"rules": []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}}}})
	downTok, _ := n.must(201, "POST", "/agents/bot/tokens", map[string]any{"proxies": []string{"down"}, "ttl": "1h"})["token"].(string)

	type req struct{ proxy, path string }
	tests := []struct {
		name  string
		query string
		reqs  []req  // made in order; the last matches the filter
		want  string // the events sent: path, "/end" for an update
	}{
		{"proxy", "proxy=other", []req{{"stripe", "/v1/ok"}, {"other", "/v1/ok"}}, "/v1/ok /v1/ok/end"},
		{"decision", "decision=deny", []req{{"stripe", "/v1/ok"}, {"stripe", "/v2/no"}}, "/v2/no"},
		{"reason", "reason=no_rule_allows", []req{{"stripe", "/v1/ok"}, {"stripe", "/v2/no"}}, "/v2/no"},
		{"status: only the end has one", "status=502", []req{{"stripe", "/v1/ok"}, {"stripe", "/v1/fail"}}, "/v1/fail/end"},
		{"path", "q=%2Fv1%2Fok&proxy=stripe", []req{{"stripe", "/v1/fail"}, {"stripe", "/v1/ok"}}, "/v1/ok /v1/ok/end"},
		{"an update of a record sent is sent", "reason=allowed_by_rule&proxy=down", []req{{"stripe", "/v1/ok"}, {"down", "/x"}}, "/x /x/end"},
	}
	toks := map[string]string{"stripe": tok, "other": otherTok, "down": downTok}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, code := n.stream(n.token, tc.query, "")
			if code != 200 {
				t.Fatalf("stream ?%s → %d", tc.query, code)
			}
			s.first(t)
			for _, r := range tc.reqs {
				n.call("GET", "/"+r.proxy+r.path, toks[r.proxy], nil, "")
			}
			last := tc.reqs[len(tc.reqs)-1]
			evs := s.waitFor(t, "the last request's events", func(evs []sseEvent) bool {
				for _, e := range evs {
					if e.str("path") == last.path && e.str("proxy") == last.proxy && (e.kind == "update" || e.rec["incomplete"] == nil) {
						return true
					}
				}
				return false
			})
			var got []string
			for _, e := range evs {
				p := e.str("path")
				if e.kind == "update" {
					p += "/end"
				}
				got = append(got, p)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("?%s sent %q, want %q", tc.query, strings.Join(got, " "), tc.want)
			}
			if last.proxy == "down" && (evs[len(evs)-1].str("decision") != "error" || strings.HasPrefix(evs[len(evs)-1].str("reason"), "allowed_by_rule")) {
				t.Errorf("the ended record should no longer match the filter (decision error, an upstream reason): %v", evs[len(evs)-1].rec)
			}
		})
	}
}

// TestLogStreamViews: a viewer's stream has the viewer's view (header names
// without values, no query, no bodies); an admin's has headers and leaves
// bodies out as GET /logs does.
func TestLogStreamViews(t *testing.T) {
	n := startNode(t)
	tok := n.setup("stripe", nil)
	viewer, auditor := n.adminToken("viewer"), n.adminToken("auditor")
	streams := map[string]*sseConn{}
	for role, at := range map[string]string{"viewer": viewer, "auditor": auditor, "admin": n.token} {
		s, code := n.stream(at, "proxy=stripe", "")
		if code != 200 {
			t.Fatalf("%s stream → %d", role, code)
		}
		s.first(t)
		streams[role] = s
	}
	n.call("POST", "/stripe/v1/charge?amount=12", tok, http.Header{"X-Note": {"visible-to-auditors"}, "Content-Type": {"application/json"}}, `{"a":1}`)
	for role, s := range streams {
		evs := s.waitFor(t, "the record", func(evs []sseEvent) bool { return len(evs) == 2 })
		for _, e := range evs {
			hdrs, _ := e.rec["request_headers"].(map[string]any)
			note, _ := hdrs["X-Note"].([]any)
			js, _ := json.Marshal(e.rec)
			if role == "viewer" {
				if len(note) != 1 || note[0] != "[hidden]" || e.rec["query"] != nil || strings.Contains(string(js), "visible-to-auditors") ||
					strings.Contains(string(js), "amount=12") {
					t.Errorf("the viewer's stream shows values: %s", js)
				}
			} else if len(note) != 1 || note[0] != "visible-to-auditors" || e.rec["query"] != "amount=12" {
				t.Errorf("the %s stream lacks header values or the query: %s", role, js)
			}
			if body, ok := e.rec["request_body"]; role == "viewer" && body != nil || role != "viewer" && ok {
				t.Errorf("the %s stream carries bodies (GET /logs/{id} has them): %s", role, js)
			}
		}
	}
}

// TestLogStreamSince: since replays what came from then on, then follows.
func TestLogStreamSince(t *testing.T) {
	n := startNode(t)
	tok := n.setup("stripe", nil)
	n.call("GET", "/stripe/v1/before", tok, nil, "")
	s, _ := n.stream(n.token, "since=1h&proxy=stripe", "")
	n.call("GET", "/stripe/v1/after", tok, nil, "")
	evs := s.waitFor(t, "the replay and the new record", func(evs []sseEvent) bool { return len(evs) == 4 })
	if evs[0].str("path") != "/v1/before" || evs[3].str("path") != "/v1/after" {
		t.Errorf("since=1h sent %s … %s, want /v1/before first and /v1/after last", evs[0].str("path"), evs[3].str("path"))
	}
	s2, _ := n.stream(n.token, "since=2099-01-01T00:00:00Z", "")
	n.call("GET", "/stripe/v1/later", tok, nil, "")
	evs = s2.waitFor(t, "the new record", func(evs []sseEvent) bool { return len(evs) == 2 })
	if evs[0].str("path") != "/v1/later" {
		t.Errorf("a since after every record replays nothing; got %s", evs[0].str("path"))
	}
}

func TestLogStreamRefuses(t *testing.T) {
	n := startNode(t)
	tests := []struct {
		name, query, lastID string
		want                int
	}{
		{"a cursor it did not send", "cursor=djE6MDE5", "", 400},
		{"a Last-Event-ID it did not send", "", "garbage", 400},
		{"until", "until=1h", "", 400},
		{"order", "order=asc", "", 400},
		{"a bad filter", "decision=maybe", "", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, code := n.stream(n.token, tc.query, tc.lastID); code != tc.want {
				if s != nil {
					s.close()
				}
				t.Errorf("?%s (Last-Event-ID %q) → %d, want %d", tc.query, tc.lastID, code, tc.want)
			}
		})
	}
	if s, code := n.stream("kha_"+randAlnum(40), "", ""); code != 401 || s != nil {
		t.Errorf("an unknown token → %d, want 401", code)
	}
}

// TestLogStreamEndsOnShutdown: a node shutting down ends its streams
// rather than waiting for them until --shutdown-timeout (here far longer
// than the test's deadline for a hang).
func TestLogStreamEndsOnShutdown(t *testing.T) {
	n := startNode(t, func(c *server.Config) { c.ShutdownTimeout = 10 * time.Minute })
	s, _ := n.stream(n.token, "", "")
	s.first(t)
	stopped := make(chan struct{})
	go func() { n.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("the node did not stop while a stream was open")
	}
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the stream did not end")
	}
}
