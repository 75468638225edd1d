package server

// MCP (SPEC §8), from the Go side: keyhole's own MCP server at /-/mcp, and
// proxies whose upstream is itself an MCP server. The official TypeScript
// client runs the same paths in sdk_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// seeingTransport records every answer keyhole gives an MCP client in the
// node's leak checks, and adds the agent's token (when set) to every
// request, as MCP clients' configured headers do.
type seeingTransport struct {
	n   *testNode
	tok string
	hdr string // the header carrying tok ("" = Authorization: Bearer)
}

func (s *seeingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	switch {
	case s.tok == "":
	case s.hdr == "":
		r.Header.Set("Authorization", "Bearer "+s.tok)
	default:
		r.Header.Set(s.hdr, s.tok)
	}
	res, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		res.Body = &seeingBody{ReadCloser: res.Body, n: s.n, where: "mcp client " + r.Method + " " + r.URL.Path}
		return res, nil
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var hb bytes.Buffer
	res.Header.Write(&hb)
	s.n.see("mcp client "+r.Method+" "+r.URL.Path, fmt.Sprintf("%d\n%s\n%s", res.StatusCode, hb.String(), b), false)
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res, nil
}

// seeingBody records a streamed answer as it is read.
type seeingBody struct {
	io.ReadCloser
	n     *testNode
	where string
}

func (s *seeingBody) Read(p []byte) (int, error) {
	k, err := s.ReadCloser.Read(p)
	if k > 0 {
		s.n.see(s.where, string(p[:k]), false)
	}
	return k, err
}

// mcpConnect connects the Go SDK's client to endpoint (a URL on the
// gateway) with the token in Authorization: Bearer.
func (n *testNode) mcpConnect(endpoint, tok string) (*sdk.ClientSession, error) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := sdk.NewClient(&sdk.Implementation{Name: "keyhole-test", Version: "1"}, nil)
	tr := &sdk.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &seeingTransport{n: n, tok: tok}}}
	s, err := c.Connect(ctx, tr, nil)
	if err == nil {
		n.t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// toolResult is a call_<proxy> tool's structured result.
type toolResult struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding"`
	Truncated    bool              `json:"truncated"`
	RequestID    string            `json:"request_id"`
	Error        *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func callTool(t *testing.T, s *sdk.ClientSession, name string, args map[string]any) (*sdk.CallToolResult, toolResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s %v: %v", name, args, err)
	}
	var tr toolResult
	if len(res.Content) != 1 {
		t.Fatalf("tools/call %s: want one content item, got %d", name, len(res.Content))
	}
	text, ok := res.Content[0].(*sdk.TextContent)
	if !ok || json.Unmarshal([]byte(text.Text), &tr) != nil {
		t.Fatalf("tools/call %s: the text content is not the JSON result: %#v", name, res.Content[0])
	}
	sc, _ := json.Marshal(res.StructuredContent)
	var st toolResult
	if json.Unmarshal(sc, &st) != nil || st.Status != tr.Status || st.Body != tr.Body {
		t.Errorf("tools/call %s: structuredContent %s differs from the text content %s", name, sc, text.Text)
	}
	return res, tr
}

func TestMCPServerListsAndCallsThroughThePipeline(t *testing.T) {
	n := startNode(t)
	secret := canary()
	n.secret("billing-key", secret)
	up := n.upstream()
	up.on("/", echoAll)
	n.proxy("billing", up, map[string]any{
		"description": "Billing API: customers and charges.",
		"auth":        map[string]any{"type": "bearer", "secret": "billing-key"},
		"rules": []any{
			rule("read-customers", "allow", "GET /v1/customers,/v1/customers/**"),
			map[string]any{"name": "small-charges", "effect": "allow", "methods": []string{"POST"}, "paths": []string{"/v1/charges"},
				"when": "request.json.amount <= 100"},
			rule("no-admin", "deny", "* /v1/admin/**"),
			map[string]any{"name": "report-all", "effect": "allow", "mode": "report", "paths": []string{"/**"}},
		},
	})
	labs := n.upstream()
	n.proxy("labs", labs, map[string]any{"auth": map[string]any{"type": "none"},
		"rules": []any{map[string]any{"name": "others-only", "effect": "allow", "agents": []string{"someone-else"}, "paths": []string{"/**"}}}})
	n.proxy("hidden", n.upstream(), map[string]any{"auth": map[string]any{"type": "none"}, "rules": []any{allowAll}})
	n.agent("bot")
	tok, tokID := n.token("bot", "1h", "billing", "labs")
	endpoint := "http://" + n.gw + "/-/mcp"

	// Without a token, or with a bad one, /-/mcp is 401 (SPEC §3.2).
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	mcpHdr := []string{"Content-Type", "application/json", "Accept", "application/json, text/event-stream"}
	wantErr(t, "POST /-/mcp without a token", n.call("POST", "/-/mcp", "", init, mcpHdr...), http.StatusUnauthorized, "no_token")
	wantErr(t, "POST /-/mcp with a bad token", n.call("POST", "/-/mcp", "kh_"+randString(40), init, mcpHdr...), http.StatusUnauthorized, "bad_token")
	if _, err := n.mcpConnect(endpoint, ""); err == nil {
		t.Errorf("the MCP client connected without a token")
	}
	// X-Keyhole-Token is the other place a token goes.
	if r := n.call("POST", "/-/mcp", "", init, append(mcpHdr, "X-Keyhole-Token", tok)...); r.status != http.StatusOK || !strings.Contains(string(r.body), `"serverInfo"`) {
		t.Errorf("initialize with X-Keyhole-Token → want 200 and serverInfo, got %s", r)
	}

	s, err := n.mcpConnect(endpoint, tok)
	if err != nil {
		t.Fatalf("the MCP client cannot connect to /-/mcp: %v", err)
	}
	if got := s.InitializeResult().ServerInfo.Name; got != "keyhole" {
		t.Errorf("serverInfo.name = %q, want keyhole", got)
	}
	lt, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*sdk.Tool{}
	var names []string
	for _, tl := range lt.Tools {
		tools[tl.Name] = tl
		names = append(names, tl.Name)
	}
	if !slices.Equal(names, []string{"call_billing", "call_labs"}) {
		t.Fatalf("tools/list → %v, want [call_billing call_labs] (one per proxy in the token's scope)", names)
	}
	bt := tools["call_billing"]
	for _, want := range []string{"Billing API: customers and charges.", "allow GET /v1/customers, /v1/customers/**",
		"allow POST /v1/charges when request.json.amount <= 100", "deny any method /v1/admin/**"} {
		if !strings.Contains(bt.Description, want) {
			t.Errorf("call_billing's description lacks %q:\n%s", want, bt.Description)
		}
	}
	if strings.Contains(bt.Description, "report-all") {
		t.Errorf("call_billing's description shows a report-mode rule:\n%s", bt.Description)
	}
	schema, _ := json.Marshal(bt.InputSchema)
	var sch struct {
		Properties map[string]struct {
			Enum []string `json:"enum"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	json.Unmarshal(schema, &sch)
	if !slices.Equal(sch.Properties["method"].Enum, []string{"GET", "POST"}) {
		t.Errorf("call_billing's method enum = %v, want [GET POST] (what its rules allow)", sch.Properties["method"].Enum)
	}
	for _, p := range []string{"method", "path", "query", "headers", "body"} {
		if _, ok := sch.Properties[p]; !ok {
			t.Errorf("call_billing's input schema lacks %q: %s", p, schema)
		}
	}
	if !strings.Contains(tools["call_labs"].Description, "No rule of this proxy applies to you") {
		t.Errorf("call_labs's description should say no rule applies to this agent:\n%s", tools["call_labs"].Description)
	}

	// An allowed call: through the pipeline, credential injected, the
	// echoed secret scrubbed, the agent's token never upstream.
	res, tr := callTool(t, s, "call_billing", map[string]any{"method": "GET", "path": "/v1/customers/cus_1",
		"query": map[string]any{"limit": "3", "expand": []string{"a", "b"}}, "headers": map[string]string{"Stripe-Version": "2024-06-20"}})
	if res.IsError || tr.Status != 200 {
		t.Fatalf("an allowed call → want status 200, got %+v", tr)
	}
	last := up.last()
	if last.RequestURI != "/v1/customers/cus_1?expand=a&expand=b&limit=3" || last.Header.Get("Authorization") != "Bearer "+secret ||
		last.Header.Get("Stripe-Version") != "2024-06-20" {
		t.Errorf("the upstream saw %s with headers %v", last.RequestURI, last.Header)
	}
	if strings.Contains(tr.Body, secret) || !strings.Contains(tr.Body, "[REDACTED]") {
		t.Errorf("the echoed credential must come back as [REDACTED]; body: %s", tr.Body)
	}
	if tr.Headers["content-type"] != "application/json" || tr.RequestID == "" {
		t.Errorf("result headers %v, request_id %q", tr.Headers, tr.RequestID)
	}
	rec := n.record(tr.RequestID)
	if str(rec, "proxy") != "billing" || str(rec, "path") != "/v1/customers/cus_1" || str(rec, "agent") != "bot" ||
		str(rec, "token_id") != tokID || str(rec, "decision") != "allow" || str(rec, "rule") != "read-customers" {
		t.Errorf("the call's audit record: %v", rec)
	}

	// A JSON body rule: the body reaches the rules and the upstream as sent.
	_, tr = callTool(t, s, "call_billing", map[string]any{"method": "POST", "path": "/v1/charges", "body": map[string]any{"amount": 50}})
	if tr.Status != 200 || string(up.last().Body) != `{"amount":50}` || up.last().Header.Get("Content-Type") != "application/json" {
		t.Errorf("POST /v1/charges amount 50 → %+v; upstream got %q (%s)", tr, up.last().Body, up.last().Header.Get("Content-Type"))
	}
	count := up.count()
	res, tr = callTool(t, s, "call_billing", map[string]any{"method": "POST", "path": "/v1/charges", "body": map[string]any{"amount": 500}})
	if !res.IsError || tr.Status != 403 || tr.Error == nil || tr.Error.Code != "no_rule_allows" {
		t.Errorf("POST /v1/charges amount 500 → want isError, 403 no_rule_allows; got %+v", tr)
	}
	res, tr = callTool(t, s, "call_billing", map[string]any{"method": "DELETE", "path": "/v1/admin/users"})
	if !res.IsError || tr.Error == nil || tr.Error.Code != "denied_by_rule" || !strings.Contains(tr.Error.Message, "no-admin") {
		t.Errorf("DELETE /v1/admin/users → want denied_by_rule naming no-admin; got %+v", tr)
	}
	if r := n.record(tr.RequestID); str(r, "decision") != "deny" || str(r, "reason") != "denied_by_rule:no-admin" || str(r, "proxy") != "billing" {
		t.Errorf("the denied call's record: %v", r)
	}
	// The path is checked like any other (SPEC §3.4).
	_, tr = callTool(t, s, "call_billing", map[string]any{"method": "GET", "path": "/v1/customers/../admin"})
	if tr.Status != 400 || tr.Error == nil || tr.Error.Code != "bad_path" {
		t.Errorf("a dot-segment path → want 400 bad_path; got %+v", tr)
	}
	if up.count() != count {
		t.Errorf("refused calls reached the upstream")
	}
	// Arguments keyhole refuses before the pipeline.
	for _, args := range []map[string]any{
		{"method": "GET", "path": "/v1/customers", "headers": map[string]string{"Authorization": "Bearer " + tok}},
		{"method": "GET", "path": "https://evil.example/v1/customers"},
		{"method": "GET", "path": "/v1/customers?limit=1"},
		{"method": "GET", "path": "/v1/customers", "extra": 1},
	} {
		res, tr := callTool(t, s, "call_billing", args)
		if !res.IsError || tr.Error == nil || tr.Error.Code != "invalid_arguments" {
			t.Errorf("arguments %v → want isError invalid_arguments; got %+v", args, tr)
		}
	}
	// A proxy in scope whose rules allow nothing for this agent.
	_, tr = callTool(t, s, "call_labs", map[string]any{"method": "GET", "path": "/"})
	if tr.Error == nil || tr.Error.Code != "no_rule_allows" {
		t.Errorf("call_labs → want no_rule_allows; got %+v", tr)
	}
	if labs.count() != 0 {
		t.Errorf("labs' upstream was reached")
	}
	// A tool that is not offered.
	if r, err := s.CallTool(context.Background(), &sdk.CallToolParams{Name: "call_hidden", Arguments: map[string]any{"method": "GET", "path": "/"}}); err == nil && !r.IsError {
		t.Errorf("call_hidden (a proxy outside the token's scope) answered %+v", r)
	}

	// Every /-/mcp request is recorded too, as keyhole's own endpoint.
	mcpRecs := n.logs("proxy=-keyhole")
	seenTools := false
	for _, r := range mcpRecs {
		if str(r, "path") == "/-/mcp" && str(r, "agent") == "bot" && str(r, "decision") == "allow" && str(r, "status") == "200" && strings.Contains(str(n.record(str(r, "id")), "request_body"), `"tools/call"`) {
			seenTools = true
		}
	}
	if !seenTools {
		t.Errorf("no /-/mcp audit record of agent bot with its tools/call body among %d records", len(mcpRecs))
	}

	// A child token's own rules narrow the tools.
	child, _ := n.mint(tok, map[string]any{"proxies": []string{"billing"}, "rules": []any{rule("get-only", "allow", "GET /v1/customers/**")}})
	cs, err := n.mcpConnect(endpoint, child)
	if err != nil {
		t.Fatal(err)
	}
	lt, err = cs.ListTools(context.Background(), nil)
	if err != nil || len(lt.Tools) != 1 || lt.Tools[0].Name != "call_billing" {
		t.Fatalf("the child's tools/list → %v, %v", lt, err)
	}
	schema, _ = json.Marshal(lt.Tools[0].InputSchema)
	json.Unmarshal(schema, &sch)
	if !slices.Equal(sch.Properties["method"].Enum, []string{"GET"}) || !strings.Contains(lt.Tools[0].Description, "Your token adds its own rules") {
		t.Errorf("the child's call_billing: enum %v, description:\n%s", sch.Properties["method"].Enum, lt.Tools[0].Description)
	}
	_, tr = callTool(t, cs, "call_billing", map[string]any{"method": "POST", "path": "/v1/charges", "body": map[string]any{"amount": 5}})
	if tr.Status != 403 {
		t.Errorf("the child's POST → want 403 (its own rules allow GET only), got %+v", tr)
	}

	// Revocation applies to the very next request of a live session.
	n.must(http.StatusOK, "DELETE", "/tokens/"+tokID, nil)
	if _, err := s.CallTool(context.Background(), &sdk.CallToolParams{Name: "call_billing", Arguments: map[string]any{"method": "GET", "path": "/v1/customers"}}); err == nil {
		t.Errorf("a revoked token's session still calls tools")
	}
}

// mcpUpstream is an MCP server (the official Go SDK, streamable HTTP at
// /mcp) behind an httptest server that checks the credential keyhole
// injects. Its tools: list_issues, create_issue, delete_repo, and whoami,
// which answers with the credential it received (the canary).
func mcpUpstream(t *testing.T, n *testNode, header, want string, jsonResponse bool) *upstream {
	t.Helper()
	srv := sdk.NewServer(&sdk.Implementation{Name: "issues", Version: "1"}, nil)
	obj := map[string]any{"type": "object"}
	text := func(s string) *sdk.CallToolResult {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
	}
	srv.AddTool(&sdk.Tool{Name: "list_issues", Description: "List issues.", InputSchema: obj}, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text(`[{"id":1,"title":"bug"}]`), nil
	})
	srv.AddTool(&sdk.Tool{Name: "create_issue", Description: "Create an issue.", InputSchema: obj}, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text("created in " + string(r.Params.Arguments)), nil
	})
	srv.AddTool(&sdk.Tool{Name: "delete_repo", Description: "Delete a repository.", InputSchema: obj}, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text("deleted"), nil
	})
	srv.AddTool(&sdk.Tool{Name: "whoami", Description: "The credential the server got.", InputSchema: obj}, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text("you are " + r.Extra.Header.Get(header)), nil
	})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, &sdk.StreamableHTTPOptions{JSONResponse: jsonResponse})
	up := n.upstream()
	up.on("/mcp", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(header) != want {
			http.Error(w, "bad credential", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
	return up
}

// mcpUpstreamRules are a typical MCP upstream's rules: the protocol's own
// messages, the session stream, and tools/call for some tools only (one
// of them only for one repository, a condition on the arguments).
var mcpUpstreamRules = []any{
	map[string]any{"name": "session", "effect": "allow", "methods": []string{"GET", "DELETE"}, "paths": []string{"/mcp"}},
	map[string]any{"name": "protocol", "effect": "allow", "methods": []string{"POST"}, "paths": []string{"/mcp"},
		"when": "request.json.method != 'tools/call'"},
	map[string]any{"name": "some-tools", "effect": "allow", "methods": []string{"POST"}, "paths": []string{"/mcp"},
		"when": "request.json.method == 'tools/call' && request.json.params.name in ['list_issues', 'whoami']"},
	map[string]any{"name": "create-in-web", "effect": "allow", "methods": []string{"POST"}, "paths": []string{"/mcp"},
		"when": "request.json.method == 'tools/call' && request.json.params.name == 'create_issue' && request.json.params.arguments.repo == 'acme/web'"},
	map[string]any{"name": "never-delete", "effect": "deny", "methods": []string{"POST"}, "paths": []string{"/mcp"},
		"when": "request.json.method == 'tools/call' && request.json.params.name.startsWith('delete_')"},
}

func TestMCPUpstreamToolLevelRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		json bool
		auth func(secret string) (spec map[string]any, header, want string)
	}{
		{"sse-bearer", false, func(s string) (map[string]any, string, string) {
			return map[string]any{"type": "bearer", "secret": "mcp-key"}, "Authorization", "Bearer " + s
		}},
		{"json-header", true, func(s string) (map[string]any, string, string) {
			return map[string]any{"type": "header", "secret": "mcp-key", "headers": map[string]string{"X-Api-Key": "{{secret}}"}}, "X-Api-Key", s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t)
			secret := canary()
			n.secret("mcp-key", secret)
			auth, header, want := tc.auth(secret)
			up := mcpUpstream(t, n, header, want, tc.json)
			n.proxy("issues", up, map[string]any{"auth": auth, "rules": mcpUpstreamRules})
			n.agent("bot")
			tok, _ := n.token("bot", "1h", "issues")

			s, err := n.mcpConnect("http://"+n.gw+"/issues/mcp", tok)
			if err != nil {
				t.Fatalf("the MCP client cannot reach the upstream MCP server through keyhole: %v", err)
			}
			lt, err := s.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range lt.Tools {
				names = append(names, tl.Name)
			}
			slices.Sort(names)
			// create_issue stays: its rule depends on the arguments, which
			// only the call has. delete_repo is denied, never listed.
			if !slices.Equal(names, []string{"create_issue", "list_issues", "whoami"}) {
				t.Errorf("tools/list through keyhole → %v, want [create_issue list_issues whoami]", names)
			}
			// Spelling the method with JSON escapes, or padding the body,
			// does not get the unfiltered list: the filter reads the body
			// the rules parsed.
			for _, body := range []string{`{"jsonrpc":"2.0","id":91,"method":"tools\/list"}`,
				`{"jsonrpc":"2.0","id":92,"method":"\u0074ools/list","params":{}}` + strings.Repeat(" ", 70000)} {
				r := n.call("POST", "/issues/mcp", tok, body, "Content-Type", "application/json", "Accept", "application/json, text/event-stream",
					"Mcp-Session-Id", s.ID(), "Mcp-Protocol-Version", s.InitializeResult().ProtocolVersion)
				if r.status != 200 || !strings.Contains(string(r.body), "list_issues") || strings.Contains(string(r.body), "delete_repo") {
					t.Errorf("an escaped tools/list → %s; want the filtered list", r)
				}
			}
			call := func(name string, args map[string]any) (*sdk.CallToolResult, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				return s.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
			}
			r, err := call("whoami", nil)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Content[0].(*sdk.TextContent).Text
			if strings.Contains(got, secret) || got != "you are "+strings.TrimPrefix(strings.Replace(want, secret, "[REDACTED]", 1), "") {
				t.Errorf("whoami through keyhole → %q; want the credential scrubbed", got)
			}
			if r, err := call("create_issue", map[string]any{"repo": "acme/web", "title": "x"}); err != nil || r.IsError {
				t.Errorf("create_issue in acme/web → %v %v, want allowed", r, err)
			}
			calls := func() int { // tools/call requests that reached the upstream
				k := 0
				for _, r := range up.requests() {
					if bytes.Contains(r.Body, []byte(`"tools/call"`)) {
						k++
					}
				}
				return k
			}
			before := calls()
			for _, c := range []struct {
				name string
				args map[string]any
			}{{"create_issue", map[string]any{"repo": "acme/infra"}}, {"delete_repo", map[string]any{"repo": "acme/web"}}, {"create_issue", nil}} {
				// keyhole refuses with HTTP 403 and its own error body
				// (SPEC §3.3); the Go SDK's client then ends the session,
				// so each refusal gets a session of its own.
				s2, err := n.mcpConnect("http://"+n.gw+"/issues/mcp", tok)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				r, err := s2.CallTool(ctx, &sdk.CallToolParams{Name: c.name, Arguments: c.args})
				cancel()
				if err == nil && !r.IsError {
					t.Errorf("%s %v through keyhole succeeded; want refused", c.name, c.args)
				}
			}
			if calls() != before {
				t.Errorf("refused tools/call requests reached the MCP upstream")
			}
			recs := n.logs("proxy=issues&decision=deny")
			denied := map[string]bool{}
			for _, rec := range recs {
				denied[str(rec, "reason")] = true
			}
			if !denied["denied_by_rule:never-delete"] || !denied["no_rule_allows"] {
				t.Errorf("denied records' reasons: %v", denied)
			}
			// The listing's record notes that a filter applied; the
			// agent's requests never carried its token upstream (checked
			// by the harness at cleanup).
			filtered := false
			for _, rec := range n.logs("proxy=issues&decision=allow") {
				full := n.record(str(rec, "id"))
				if strings.Contains(str(full, "request_body"), `"tools/list"`) && full["response_filtered"] == true {
					filtered = true
				}
			}
			if !filtered {
				t.Errorf("no tools/list record with filtered: true")
			}
		})
	}
}

// TestMCPTypeScriptClient runs the official MCP TypeScript SDK's client
// (sdktest/mcp.mjs: StreamableHTTPClientTransport with the token in
// requestInit.headers) against keyhole's /-/mcp and against an MCP
// upstream behind a proxy.
func TestMCPTypeScriptClient(t *testing.T) {
	dir := nodeProject(t, "sdktest")
	n := startNode(t)
	secret := canary()
	n.secret("api-key", secret)
	api := n.upstream()
	api.on("/", echoAll)
	n.proxy("billing", api, map[string]any{
		"description": "Billing API.",
		"auth":        map[string]any{"type": "bearer", "secret": "api-key"},
		"rules":       []any{rule("read", "allow", "GET /v1/**"), rule("no-admin", "deny", "* /v1/admin/**")},
	})
	n.agent("bot")

	t.Run("keyhole", func(t *testing.T) {
		tok, _ := n.token("bot", "1h", "billing")
		st := n.runNode(dir, "mcp.mjs", "MODE", "keyhole", "ENDPOINT", "http://"+n.gw+"/-/mcp", "KH_TOKEN", tok,
			"TOOL", "call_billing", "ARGS", `{"method":"GET","path":"/v1/customers/cus_1","query":{"limit":"3"}}`,
			"REFUSED", "call_billing", "REFUSED_ARGS", `{"method":"GET","path":"/v1/admin/users"}`)
		if nt := st["no_token"]; nt.str("code") != "401" || !strings.Contains(nt.str("error"), "no_token") {
			t.Errorf("connecting without a token → %v; want a 401", nt)
		}
		if c := st["connected"]; c.str("server") != "keyhole" {
			t.Errorf("connected → %v", c)
		}
		tools, _ := st["tools"]["tools"].([]any)
		if len(tools) != 1 {
			t.Fatalf("tools/list → %v", st["tools"])
		}
		tl := tools[0].(map[string]any)
		if str(tl, "name") != "call_billing" || !strings.Contains(str(tl, "description"), "Billing API.") ||
			fmt.Sprint(tl["methods"]) != "[GET]" || fmt.Sprint(tl["properties"]) != "[body headers method path query]" {
			t.Errorf("the tool as the TypeScript client sees it: %v", tl)
		}
		call := st["call call_billing"]
		var tr toolResult
		json.Unmarshal([]byte(call.str("text")), &tr)
		if fmt.Sprint(call["is_error"]) != "false" || tr.Status != 200 || !strings.Contains(tr.Body, `"uri":"/v1/customers/cus_1?limit=3"`) ||
			!strings.Contains(tr.Body, "Bearer [REDACTED]") {
			t.Errorf("call_billing GET /v1/customers/cus_1 → %v", call)
		}
		ref := st["refused"]
		json.Unmarshal([]byte(ref.str("text")), &tr)
		if fmt.Sprint(ref["is_error"]) != "true" || tr.Error == nil || tr.Error.Code != "denied_by_rule" {
			t.Errorf("a refused call → want isError with denied_by_rule; got %v", ref)
		}
		if st["after_refusal"].str("tools") != "1" || st["closed"] == nil {
			t.Errorf("the session must go on after a refusal: %v %v", st["after_refusal"], st["closed"])
		}
	})

	t.Run("upstream", func(t *testing.T) {
		up := mcpUpstream(t, n, "X-Api-Key", secret, false)
		n.proxy("issues", up, map[string]any{"auth": map[string]any{"type": "header", "secret": "api-key",
			"headers": map[string]string{"X-Api-Key": "{{secret}}"}}, "rules": mcpUpstreamRules})
		tok, _ := n.token("bot", "1h", "issues")
		st := n.runNode(dir, "mcp.mjs", "MODE", "upstream", "ENDPOINT", "http://"+n.gw+"/issues/mcp", "KH_TOKEN", tok,
			"TOOL", "whoami", "TOOL2", "create_issue", "ARGS2", `{"repo":"acme/web","title":"x"}`,
			"REFUSED", "create_issue", "REFUSED_ARGS", `{"repo":"acme/infra"}`)
		if st["connected"].str("session") != "yes" {
			t.Errorf("the upstream's Mcp-Session-Id did not come back through keyhole: %v", st["connected"])
		}
		tools, _ := st["tools"]["tools"].([]any)
		var names []string
		for _, tl := range tools {
			names = append(names, str(tl.(map[string]any), "name"))
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"create_issue", "list_issues", "whoami"}) {
			t.Errorf("tools/list through keyhole → %v, want [create_issue list_issues whoami] (delete_repo filtered out)", names)
		}
		if c := st["call whoami"]; c.str("text") != "you are [REDACTED]" || fmt.Sprint(c["is_error"]) != "false" {
			t.Errorf("whoami (the upstream echoes the credential it got) → %v; want it scrubbed", c)
		}
		if c := st["call create_issue"]; fmt.Sprint(c["is_error"]) != "false" || !strings.Contains(c.str("text"), "acme/web") {
			t.Errorf("create_issue in acme/web → %v", c)
		}
		ref := st["refused"]
		if fmt.Sprint(ref["thrown"]) != "true" || ref.str("code") != "403" || !strings.Contains(ref.str("error"), "no_rule_allows") {
			t.Errorf("create_issue in acme/infra → want the client's error for keyhole's 403; got %v", ref)
		}
		if st["after_refusal"].str("tools") != "3" || st["closed"] == nil {
			t.Errorf("the session must go on after a refusal: %v %v", st["after_refusal"], st["closed"])
		}
	})
}
