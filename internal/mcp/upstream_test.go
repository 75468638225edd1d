package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

func mustRules(t testing.TB, rs ...spec.Rule) *rules.Set {
	t.Helper()
	s, err := rules.Compile(rs, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func post(name, when string) spec.Rule {
	return spec.Rule{Name: name, Effect: "allow", Methods: []string{"POST"}, Paths: []string{"/mcp"}, When: when}
}

// upstreamRules: the protocol's own methods, two tools by name, one tool
// only with some arguments, and a deny by name prefix.
func upstreamRules(t testing.TB) *rules.Set {
	t.Helper()
	return mustRules(t,
		post("protocol", "request.json.method != 'tools/call'"),
		post("read", "request.json.method == 'tools/call' && request.json.params.name in ['list_issues', 'get_issue']"),
		post("create-in-web", "request.json.method == 'tools/call' && request.json.params.name == 'create_issue' && request.json.params.arguments.repo == 'acme/web'"),
		spec.Rule{Name: "never-delete", Effect: "deny", Methods: []string{"POST"}, Paths: []string{"/mcp"}, When: "request.json.params.name.startsWith('delete_')"},
	)
}

func TestToolAllowed(t *testing.T) {
	set := upstreamRules(t)
	in := rules.Input{Method: "POST", Path: "/mcp", Header: http.Header{}, Agent: "bot"}
	for _, tc := range []struct {
		tool string
		want bool
	}{
		{"list_issues", true},
		{"get_issue", true},
		{"create_issue", true}, // decided by its arguments, which only the call has
		{"delete_repo", false}, // a deny by name
		{"delete_issue", false},
		{"merge_pr", false}, // no rule allows it
	} {
		if got := ToolAllowed(in, "application/json", int64(1), tc.tool, set); got != tc.want {
			t.Errorf("ToolAllowed(%s) = %v, want %v", tc.tool, got, tc.want)
		}
	}
	// A second set (a child token's own rules) must allow too.
	tok := mustRules(t, spec.Rule{Name: "only-get", Effect: "allow", Paths: []string{"/mcp"},
		When: "request.json.params.name == 'get_issue'"})
	if ToolAllowed(in, "application/json", 1, "list_issues", set, tok) || !ToolAllowed(in, "application/json", 1, "get_issue", set, nil, tok) {
		t.Errorf("a child token's rules must narrow the listing")
	}
	// A deny whose condition reads the arguments does not hide the tool.
	d := mustRules(t, post("all", "true"), spec.Rule{Name: "no-force", Effect: "deny", Paths: []string{"/mcp"}, When: "request.json.params.arguments.force == true"})
	if !ToolAllowed(in, "application/json", 1, "push", d) {
		t.Errorf("a deny that depends on the arguments hid the tool")
	}
	// Report-mode rules never decide.
	rep := mustRules(t, spec.Rule{Name: "rep", Effect: "allow", Mode: "report", Paths: []string{"/**"}})
	if ToolAllowed(in, "application/json", 1, "anything", rep) {
		t.Errorf("a report-mode allow listed a tool")
	}
	// Agent selectors apply.
	agent := mustRules(t, spec.Rule{Name: "ops", Effect: "allow", Agents: []string{"ops-bot"}, Paths: []string{"/**"}})
	if ToolAllowed(in, "application/json", 1, "anything", agent) {
		t.Errorf("a rule for another agent listed a tool")
	}
}

func listing(t *testing.T, body string, allowed ...string) *Listing {
	t.Helper()
	v, err := rules.ParseJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return NewListing(v, func(id any, tool string) bool {
		for _, a := range allowed {
			if a == tool {
				return true
			}
		}
		return false
	})
}

const toolsResult = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a","description":"A & <b>","inputSchema":{"type":"object","properties":{"n":{"type":"number","default":1.50}}}},{"name":"b"},{"name":"c"},{"description":"no name"}],"nextCursor":"x"}}`

func TestListingFiltersJSON(t *testing.T) {
	if NewListing(map[string]any{"jsonrpc": "2.0", "id": int64(1), "method": "tools/call"}, nil) != nil {
		t.Errorf("a tools/call is not a listing")
	}
	if NewListing(map[string]any{"jsonrpc": "2.0", "method": "tools/list"}, nil) != nil {
		t.Errorf("a notification has no answer to filter")
	}
	l := listing(t, `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`, "a", "c")
	removed := 0
	l.OnFilter = func() { removed++ }
	out, n, wrapped, err := l.Filter("application/json; charset=utf-8", io.NopCloser(strings.NewReader(toolsResult)), 1<<20)
	if err != nil || !wrapped {
		t.Fatal(err, wrapped)
	}
	got, _ := io.ReadAll(out)
	if int64(len(got)) != n {
		t.Errorf("length %d, body %d bytes", n, len(got))
	}
	var m struct {
		ID     int `json:"id"`
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			NextCursor string `json:"nextCursor"`
		} `json:"result"`
	}
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Result.Tools) != 2 || m.Result.Tools[0].Name != "a" || m.Result.Tools[1].Name != "c" || m.Result.NextCursor != "x" || m.ID != 7 {
		t.Errorf("filtered result: %s", got)
	}
	if removed != 2 {
		t.Errorf("OnFilter called %d times, want 2 (b, and the tool without a name)", removed)
	}
	// What is kept is kept byte for byte (no HTML escaping, numbers as sent).
	if !bytes.Contains(got, []byte(`"description":"A & <b>"`)) || !bytes.Contains(got, []byte(`"default":1.50`)) {
		t.Errorf("kept tools were rewritten: %s", got)
	}

	// Another id, an error answer, a non-JSON body: unchanged.
	for _, body := range []string{
		strings.Replace(toolsResult, `"id":7`, `"id":8`, 1),
		`{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"x"}}`,
		`not json`,
	} {
		out, _, _, _ := l.Filter("application/json", io.NopCloser(strings.NewReader(body)), 1<<20)
		if got, _ := io.ReadAll(out); string(got) != body {
			t.Errorf("%s was changed to %s", body, got)
		}
	}
	// Other content types pass as they are.
	if _, _, wrapped, _ := l.Filter("text/plain", io.NopCloser(strings.NewReader("x")), 10); wrapped {
		t.Errorf("text/plain was wrapped")
	}
	// Too large to filter: withheld.
	if _, _, _, err := l.Filter("application/json", io.NopCloser(strings.NewReader(toolsResult)), 20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a large answer → %v, want ErrTooLarge", err)
	}
}

func TestListingFiltersBatchAndStringIDs(t *testing.T) {
	l := listing(t, `[{"jsonrpc":"2.0","id":"x1","method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, "b")
	body := `[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":"x1","result":{"tools":[{"name":"a"},{"name":"b"}]}}]`
	out, _, _, err := l.Filter("application/json", io.NopCloser(strings.NewReader(body)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	if !bytes.Contains(got, []byte(`"tools":[{"name":"b"}]`)) || !bytes.Contains(got, []byte(`{"jsonrpc":"2.0","id":2,"result":{}}`)) {
		t.Errorf("batch: %s", got)
	}
}

func TestListingFiltersEventStream(t *testing.T) {
	l := listing(t, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, "a")
	stream := ": comment\n\nevent: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
		"event: message\nid: 2\ndata: " + toolsResult + "\r\n\r\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":7,\ndata: \"result\":{\"tools\":[{\"name\":\"z\"}]}}\n\n" +
		"data: tail without a blank line"
	out, n, wrapped, err := l.Filter("text/event-stream", io.NopCloser(strings.NewReader(stream)), 1<<20)
	if err != nil || !wrapped || n != -1 {
		t.Fatal(err, wrapped, n)
	}
	got, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	want := ": comment\n\nevent: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
		"event: message\nid: 2\ndata: {\"id\":7,\"jsonrpc\":\"2.0\",\"result\":{\"nextCursor\":\"x\",\"tools\":[{\"name\":\"a\",\"description\":\"A & <b>\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"default\":1.50}}}}]}}\n\r\n" +
		"data: {\"id\":7,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[]}}\n\n" +
		"data: tail without a blank line"
	if string(got) != want {
		t.Errorf("event stream:\n got %q\nwant %q", got, want)
	}
	// An event longer than the limit is withheld, never passed unfiltered.
	big := "data: " + strings.Repeat("x", 200) + "\n\n"
	out, _, _, _ = l.Filter("text/event-stream", io.NopCloser(strings.NewReader(big)), 100)
	if _, err := io.ReadAll(out); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a large event → %v, want ErrTooLarge", err)
	}
}

// FuzzListingFilter: whatever an upstream sends, the filter never panics,
// and a stream without an answer to the listing passes byte for byte.
func FuzzListingFilter(f *testing.F) {
	f.Add([]byte(toolsResult), true)
	f.Add([]byte("data: "+toolsResult+"\n\n"), false)
	f.Add([]byte("data: {\"id\":7,\"result\":{\"tools\":null}}\n\n"), false)
	f.Add([]byte("data:\n\n\n\r\n"), false)
	f.Add([]byte(`[{"id":7,"result":{"tools":[1,{"name":2}]}}]`), true)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		v, _ := rules.ParseJSON([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
		l := NewListing(v, func(id any, tool string) bool { return tool == "a" })
		ct := "text/event-stream"
		if isJSON {
			ct = "application/json"
		}
		out, _, _, err := l.Filter(ct, io.NopCloser(bytes.NewReader(body)), 1<<16)
		if err != nil {
			return
		}
		got, err := io.ReadAll(out)
		if err != nil {
			return
		}
		if !bytes.Contains(body, []byte("result")) && !bytes.Equal(got, body) {
			t.Errorf("a body without a result was changed:\n%q\n%q", body, got)
		}
	})
}

// TestDocsExampleRules pins the MCP-upstream rules that docs/agents.md
// shows: the protocol's own messages pass, tools are allowed by name, and a
// deny on an argument refuses calls (failing closed when the argument is
// missing) without hiding the tool from the listing.
func TestDocsExampleRules(t *testing.T) {
	set := mustRules(t,
		spec.Rule{Name: "session", Effect: "allow", Methods: []string{"GET", "DELETE"}, Paths: []string{"/mcp/"}},
		spec.Rule{Name: "protocol", Effect: "allow", Methods: []string{"POST"}, Paths: []string{"/mcp/"}, When: "request.json.method != 'tools/call'"},
		spec.Rule{Name: "issues", Effect: "allow", Methods: []string{"POST"}, Paths: []string{"/mcp/"},
			When: "request.json.method == 'tools/call' && request.json.params.name in ['list_issues', 'get_issue', 'create_issue']"},
		spec.Rule{Name: "web-only", Effect: "deny", Methods: []string{"POST"}, Paths: []string{"/mcp/"},
			When: "request.json.method == 'tools/call' && request.json.params.name == 'create_issue' && request.json.params.arguments.repo != 'web'"},
	)
	decide := func(method, body string) bool {
		in := &rules.Input{Method: method, Path: "/mcp/", Header: http.Header{}, Agent: "bot"}
		if body != "" {
			in.Body = rules.NewBody([]byte(body), "application/json")
		}
		return set.Decide(in).Allow
	}
	for _, tc := range []struct {
		method, body string
		want         bool
	}{
		{"POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`, true},
		{"POST", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, true},
		{"POST", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, true},
		{"GET", "", true},
		{"POST", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"web"}}}`, true},
		{"POST", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_issue","arguments":{"repo":"infra"}}}`, false},
		{"POST", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_issue","arguments":{}}}`, false},
		{"POST", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}`, false},
		{"POST", `[{"jsonrpc":"2.0","id":4,"method":"tools/list"}]`, false}, // a batch: fails closed
	} {
		if got := decide(tc.method, tc.body); got != tc.want {
			t.Errorf("%s %s → allow %v, want %v", tc.method, tc.body, got, tc.want)
		}
	}
	in := rules.Input{Method: "POST", Path: "/mcp/", Header: http.Header{}, Agent: "bot"}
	for tool, want := range map[string]bool{"list_issues": true, "create_issue": true, "delete_repo": false} {
		if got := ToolAllowed(in, "application/json", 1, tool, set); got != want {
			t.Errorf("listing %s: %v, want %v", tool, got, want)
		}
	}
}
