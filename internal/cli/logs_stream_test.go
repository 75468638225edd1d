package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLogsFollowStreamMany: `logs --follow --json` connected to a node
// prints every one of 100 concurrent requests exactly once, complete.
func TestLogsFollowStreamMany(t *testing.T) {
	n := startNode(t)
	up := newUpstream(t)
	tok := quickstart(t, n, up, canary())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, n.env(), strings.NewReader(""), &out, &errb, "logs", "--follow", "--json", "--proxy", "stripe")
	}()
	// The follower is connected once it printed the latest page (a marker
	// request made before).
	n.call("GET", "/stripe/v1/customers/marker", tok)
	if !eventually(20*time.Second, func() bool { return strings.Contains(out.String(), "/v1/customers/marker") }) {
		t.Fatalf("follow did not print the marker:\n%s\n%s", out.String(), errb.String())
	}
	const N = 100
	var wg sync.WaitGroup
	for i := range N {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.call("GET", fmt.Sprintf("/stripe/v1/customers/c%d", i), tok)
		}()
	}
	wg.Wait()
	count := func() map[string]int {
		seen := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var r logRecord
			if json.Unmarshal([]byte(line), &r) == nil && strings.HasPrefix(r.Path, "/v1/customers/c") {
				seen[r.Path]++
				if r.Incomplete || r.Status == nil || *r.Status != 200 {
					t.Errorf("a record printed before it completed: %s", line)
				}
			}
		}
		return seen
	}
	if !eventually(30*time.Second, func() bool { return len(count()) == N }) {
		t.Fatalf("follow printed %d of %d records:\n%s", len(count()), N, errb.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("follow exited %d: %s", code, errb.String())
	}
	for p, c := range count() {
		if c != 1 {
			t.Errorf("%s printed %d times", p, c)
		}
	}
}

// fakeStream is an admin API with a scripted log stream, one script per
// connection; it keeps the Last-Event-ID each connection sent.
type fakeStream struct {
	mu      sync.Mutex
	lastIDs []string
	conns   atomic.Int32
	scripts []string // what connection i writes (then it ends, or the last one waits)
	page    string   // GET /api/v1/logs
	status  int      // for the stream, when not 200
}

func (f *fakeStream) server(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/logs":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, f.page)
		case "/api/v1/logs/stream":
			if f.status != 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(f.status)
				io.WriteString(w, `{"error":{"code":"not_found","message":"record stream does not exist","request_id":"x"}}`)
				return
			}
			i := int(f.conns.Add(1)) - 1
			f.mu.Lock()
			f.lastIDs = append(f.lastIDs, r.Header.Get("Last-Event-ID"))
			f.mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			if i < len(f.scripts) {
				io.WriteString(w, f.scripts[i])
			}
			w.(http.Flusher).Flush()
			if i >= len(f.scripts)-1 {
				<-r.Context().Done()
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func rec(id, path string, status int) string {
	m := map[string]any{"id": id, "time": "2026-11-26T07:20:05.123456Z", "method": "GET", "proxy": "p", "path": path}
	if status == 0 {
		m["incomplete"] = true
		m["status"] = nil
	} else {
		m["status"] = status
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestLogsFollowReconnects: when the stream drops, follow reconnects with
// the id of the last event it got (Last-Event-ID) and goes on; a record in
// flight is printed once, when its end arrives on the next connection.
func TestLogsFollowReconnects(t *testing.T) {
	f := &fakeStream{
		page: `{"records":[],"next_cursor":""}`,
		scripts: []string{
			"retry: 1000\nid: c0\n\n" +
				"id: c1\ndata: " + rec("01", "/a", 0) + "\n\n" +
				": keep-alive\n\n" +
				"id: c2\ndata: " + rec("02", "/b", 200) + "\n\n",
			"event: update\nid: c3\ndata: " + rec("01", "/a", 201) + "\n\n",
		},
	}
	srv := f.server(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, map[string]string{"KEYHOLE_ADDR": srv.URL, "KEYHOLE_ADMIN_TOKEN": "kha_x"}, strings.NewReader(""), &out, &errb, "logs", "--follow", "--json")
	}()
	if !eventually(20*time.Second, func() bool { return strings.Contains(out.String(), `"/a"`) }) {
		t.Fatalf("follow did not print /a after reconnecting:\n%s\n%s", out.String(), errb.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"/b"`) || !strings.Contains(lines[1], `"status":201`) {
		t.Errorf("want /b, then /a complete, once each; got\n%s", out.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lastIDs) < 2 || f.lastIDs[0] != "" || f.lastIDs[1] != "c2" {
		t.Errorf("Last-Event-ID of each connection: %q, want \"\" then c2", f.lastIDs)
	}
	if !strings.Contains(errb.String(), "reconnecting") {
		t.Errorf("follow did not say it reconnects: %q", errb.String())
	}
}

// TestLogsFollowOlderNode: a node without the stream (404) is polled.
func TestLogsFollowOlderNode(t *testing.T) {
	f := &fakeStream{status: 404, page: `{"records":[` + rec("01", "/polled", 200) + `],"next_cursor":""}`}
	srv := f.server(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, map[string]string{"KEYHOLE_ADDR": srv.URL, "KEYHOLE_ADMIN_TOKEN": "kha_x"}, strings.NewReader(""), &out, &errb, "logs", "--follow")
	}()
	if !eventually(10*time.Second, func() bool { return strings.Contains(out.String(), "/polled") }) {
		t.Fatalf("follow did not fall back to polling:\n%s\n%s", out.String(), errb.String())
	}
	cancel()
	<-done
}

// streamFollower prints each record once, when complete: records of the
// latest page are not printed again from the stream, one in flight waits
// for its update, and one in flight for holdFor is printed without status.
func TestStreamFollower(t *testing.T) {
	var out bytes.Buffer
	f := &streamFollower{out: &followWriter{w: &out, json: true}, printed: map[string]bool{}, held: map[string]heldRecord{}, holdFor: 30 * time.Second}
	now := time.Now()
	raw := func(id string, status int) json.RawMessage { return json.RawMessage(rec(id, "/"+id, status)) }
	steps := []struct {
		name string
		do   func() error
		want string // the ids printed so far, with status
	}{
		{"the page: complete printed, in flight held", func() error {
			f.page(raw("01", 200), now)
			return f.page(raw("02", 0), now)
		}, "01:200"},
		{"the stream repeats a page record", func() error {
			f.event("", raw("01", 0), now)
			return f.event("update", raw("01", 200), now)
		}, "01:200"},
		{"a held page record completes", func() error { return f.event("update", raw("02", 204), now) }, "01:200 02:204"},
		{"a start is held, a whole record printed", func() error {
			f.event("", raw("03", 0), now)
			return f.event("", raw("04", 403), now)
		}, "01:200 02:204 04:403"},
		{"before holdFor nothing is due", func() error { return f.expire(now.Add(10 * time.Second)) }, "01:200 02:204 04:403"},
		{"after holdFor the record in flight is printed", func() error { return f.expire(now.Add(31 * time.Second)) }, "01:200 02:204 04:403 03:-"},
		{"and its late end is not", func() error { return f.event("update", raw("03", 200), now) }, "01:200 02:204 04:403 03:-"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var r logRecord
			json.Unmarshal([]byte(line), &r)
			st := "-"
			if r.Status != nil {
				st = fmt.Sprint(*r.Status)
			}
			got = append(got, r.ID+":"+st)
		}
		if strings.Join(got, " ") != s.want {
			t.Fatalf("%s: printed %q, want %q", s.name, strings.Join(got, " "), s.want)
		}
	}
	if len(f.held) != 0 || len(f.printed) != 0 {
		t.Errorf("left held %v, printed %v", f.held, f.printed)
	}
}

// TestAuditHashAndSearch: `audit hash` reads the value from stdin and
// prints the hash that a redact_mode hmac proxy stores in its place;
// `logs --search HASH` finds the record; the value never appears in output.
func TestAuditHashAndSearch(t *testing.T) {
	n := startNode(t)
	up := newUpstream(t)
	key := canary()
	n.plant(key)
	n.ok(t, key, "secret", "set", "cards-key")
	spec := map[string]any{"name": "cards", "upstream": up.URL, "auth": map[string]any{"type": "bearer", "secret": "cards-key"},
		"capture": map[string]any{"redact_mode": "hmac", "redact_headers": []string{"X-Card"}},
		"rules":   []any{map[string]any{"name": "all", "effect": "allow", "paths": []string{"/**"}}}}
	b, _ := json.Marshal(spec)
	file := filepath.Join(t.TempDir(), "cards.json")
	os.WriteFile(file, b, 0o600)
	n.ok(t, "", "proxy", "create", "cards", "--from-file", file)
	n.ok(t, "", "agent", "create", "shop")
	tok := strings.TrimSpace(n.ok(t, "", "token", "issue", "shop", "--proxy", "cards"))

	card := "4111-" + randAlnum(16)
	n.plant(card)
	req, _ := http.NewRequest("GET", n.gw+"/cards/v1/pay", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Card", card)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request: %v %v", resp, err)
	}
	resp.Body.Close()

	r := n.run(card+"\n", "audit", "hash")
	h := strings.TrimSpace(r.out)
	if r.code != 0 || !strings.HasPrefix(h, "hmac-sha256:") || strings.Count(r.out, "\n") != 1 || !strings.Contains(r.err, "keyhole logs --search "+h) {
		t.Fatalf("audit hash: exit %d\nstdout %q\nstderr %q", r.code, r.out, r.err)
	}
	if again := n.run(card, "audit", "hash"); strings.TrimSpace(again.out) != h {
		t.Errorf("the same value (without its newline) hashes to %q, want %q", again.out, h)
	}
	out := n.ok(t, "", "logs", "--search", h, "--since", "1h")
	if !strings.Contains(out, "/v1/pay") {
		t.Errorf("logs --search %s did not find the record:\n%s", h, out)
	}
	if out := n.ok(t, "", "logs", "--search", "hmac-sha256:00000000000000000000000000000000"); strings.Contains(out, "/v1/pay") {
		t.Errorf("another hash found the record:\n%s", out)
	}
	if show := n.ok(t, "", "logs", "--proxy", "cards", "--json"); !strings.Contains(show, h) {
		t.Errorf("the record does not hold the hash:\n%s", show)
	}

	tests := []struct {
		name     string
		env      map[string]string
		stdin    string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"the value as an argument", n.env(), "", []string{"audit", "hash", card}, 2, "never from an argument"},
		{"an empty value", n.env(), "", []string{"audit", "hash"}, 1, "empty"},
		{"--search with --follow", n.env(), "", []string{"logs", "--search", h, "--follow"}, 2, "cannot be combined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := n.runEnv(tc.env, tc.stdin, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.err, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.err, tc.wantCode, tc.wantErr)
			}
		})
	}
	viewer := n.ok(t, "", "admin-token", "issue", "--name", "v", "--role", "viewer")
	env := n.env()
	env["KEYHOLE_ADMIN_TOKEN"] = strings.TrimSpace(viewer)
	if r := n.runEnv(env, card, "audit", "hash"); r.code != 1 || !strings.Contains(r.err, "forbidden") {
		t.Errorf("a viewer's audit hash: exit %d, %q", r.code, r.err)
	}
}
