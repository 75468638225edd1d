// Package mcp is keyhole's Model Context Protocol support (SPEC §8), both
// ways round:
//
//   - the MCP server at /-/mcp: an agent adds one MCP server (streamable
//     HTTP, authenticated by its kh_ token) and gets one tool per proxy in
//     its token's scope, call_<proxy>, whose description and input schema are
//     built from the proxy's description and the rules that apply to the
//     agent. A tool call is an HTTP request that runs through the gateway's
//     own handler in-process, with the agent's token: the same scope check,
//     rules, credential injection, scrubbing and audit record as any HTTP
//     call (mcp.go, tools.go, call.go);
//   - MCP upstreams: a proxy whose upstream is itself an MCP server. Rules
//     already read JSON-RPC bodies (request.json.method,
//     request.json.params.name); this package recognises a tools/list
//     request in a body the rules parsed and filters the upstream's answer
//     (JSON or an SSE stream) down to the tools that the agent's rules would
//     let it call (upstream.go).
//
// The package never imports the gateway: the gateway hands it an
// http.Handler (itself) to run tool calls through.
package mcp

import (
	"context"
	"log/slog"
	"net/http"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/keyhole-gw/keyhole/internal/catalog"
)

// DefaultMaxResultBytes bounds the body a tool call returns to the agent;
// a longer body is cut and the result says "truncated": true. (The audit
// record of the call keeps what its proxy's capture settings say.)
const DefaultMaxResultBytes = 1 << 20

// Options configure the MCP server of one agent request to /-/mcp.
type Options struct {
	// Snapshot is the configuration the request was authenticated against.
	Snapshot *catalog.Snapshot
	// Token is the calling agent's authenticated token; Agent its agent
	// (nil when the agent has been deleted meanwhile).
	Token *catalog.Token
	Agent *catalog.Agent
	// RawToken is the token as the agent presented it: tool calls carry it
	// to Pipeline, which authenticates each call again (so a revocation
	// applies to the very next call).
	RawToken string
	// Pipeline is the gateway's agent-facing handler: each tool call is
	// one request through it.
	Pipeline http.Handler
	// Version is keyhole's version, shown to MCP clients.
	Version string
	// MaxResultBytes bounds a tool result's body (0: DefaultMaxResultBytes).
	MaxResultBytes int
	// Logger receives the MCP SDK's warnings (nil: none).
	Logger *slog.Logger
}

// Handler serves one HTTP request to /-/mcp: the MCP streamable HTTP
// transport of the official Go SDK, in its stateless mode with JSON
// responses.
//
// Stateless because keyhole nodes keep no state that another node needs
// (SPEC §10): any node can answer any MCP request of a session, and each
// request carries the agent's token, which is checked on every request (a
// revoked token stops at once, mid-session). keyhole's tools never call back
// into the client (no sampling, no elicitation), so nothing needs a session.
func Handler(o Options) http.Handler {
	if o.MaxResultBytes <= 0 {
		o.MaxResultBytes = DefaultMaxResultBytes
	}
	var srv *sdk.Server
	get := func(*http.Request) *sdk.Server {
		// The SDK asks twice per request (protocol version check, then
		// the session); the server is built once.
		if srv == nil {
			srv = newServer(o)
		}
		return srv
	}
	return sdk.NewStreamableHTTPHandler(get, &sdk.StreamableHTTPOptions{
		Stateless:    true,
		JSONResponse: true,
		// The SDK refuses a non-loopback Host on a loopback listener
		// (DNS rebinding protection for unauthenticated local servers).
		// /-/mcp answers nothing without a keyhole token, which a page
		// that rebinds a name cannot present, and keyhole is commonly
		// reached through a loopback reverse proxy under its public name.
		DisableLocalhostProtection: true,
		Logger:                     warnings(o.Logger),
	})
}

func newServer(o Options) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "keyhole", Title: "keyhole", Version: o.Version}, &sdk.ServerOptions{
		Instructions: instructions,
		// No logging capability: keyhole sends no log messages. Tools
		// are listed per request (stateless), so the list never changes
		// within one.
		Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		Logger:       warnings(o.Logger),
	})
	for _, t := range buildTools(o.Snapshot, o.Token, o.Agent) {
		s.AddTool(t.tool, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return call(ctx, o, t, req.Params.Arguments), nil
		})
	}
	return s
}

const instructions = "keyhole is a gateway between you and third-party APIs. Each tool call_<api> sends one HTTP request to that API; " +
	"keyhole adds the API's credential (you never hold it), checks the request against the rules described in the tool, " +
	"and records it. Give the API's own path (such as /v1/customers), never a full URL. A refused request comes back as an " +
	"error with a code such as no_rule_allows or denied_by_rule; do not retry it unchanged."

// warnings passes the SDK's records of level Warn and above to l: its
// debug output is not wanted in keyhole's log.
func warnings(l *slog.Logger) *slog.Logger {
	if l == nil {
		return nil
	}
	return slog.New(minLevel{l.Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.Handler.WithGroup(name), m.min}
}
