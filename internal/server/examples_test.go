package server

// examples/ is run against a test node, so what the documentation shows
// keeps working: the curl script, the TypeScript examples (compiled with
// tsc, then run), and each MCP client configuration (read and used as its
// client would). The Python example cannot run here (PyPI is not
// reachable); it is at least compiled.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// exampleNode is a node with the proxies the examples use — openai,
// anthropic and stripe (from their templates, with host routing under
// .localhost), in front of upstreams that speak each API and echo the
// credential they receive — and an agent token scoped to all three.
func exampleNode(t *testing.T) (n *testNode, tok string, secrets []string) {
	t.Helper()
	n = startNode(t, func(c *Config) { c.HostSuffix = ".localhost" })
	var zipped atomic.Int32
	for _, p := range []struct {
		name string
		up   *upstream
		rule map[string]any
	}{
		{"openai", openAIUpstream(n, &zipped), rule("chat", "allow", "POST /v1/chat/completions")},
		{"anthropic", anthropicUpstream(n, &zipped), rule("messages", "allow", "POST /v1/messages")},
		{"stripe", stripeUpstream(n, &zipped), rule("customers", "allow", "GET,POST /v1/customers,/v1/customers/*")},
	} {
		s := canary()
		secrets = append(secrets, s)
		n.secret(p.name+"-key", s)
		n.templateProxy(p.name, p.name, p.up, p.name+"-key", p.rule)
	}
	n.agent("example-bot")
	tok, _ = n.token("example-bot", "1h", "openai", "anthropic", "stripe")
	return n, tok, secrets
}

func TestExampleCurlScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipped: curl is not on PATH")
	}
	n, tok, _ := exampleNode(t)
	script := filepath.Join(repoRoot(t), "examples", "curl", "keyhole.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = sdkEnv("KEYHOLE_URL", "http://"+n.gw, "KH_TOKEN", tok)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	n.see("examples/curl/keyhole.sh stdout", stdout.String(), false)
	n.see("examples/curl/keyhole.sh stderr", stderr.String(), false)
	if err != nil {
		t.Fatalf("keyhole.sh: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{
		`"agent":"example-bot"`,                    // whoami
		`"content":"Hello; key=Bearer [REDACTED]"`, // openai
		`"text":"Hello; key=[REDACTED]"`,           // anthropic, token in x-api-key
		`"email":"jenny@example.com"`,              // stripe, form-encoded, by path
		`"description":"key=Bearer [REDACTED]"`,
		`"name":"call_anthropic"`, `"name":"call_openai"`, `"name":"call_stripe"`, // MCP tools/list
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("keyhole.sh's output lacks %s:\n%s", want, stdout.String())
		}
	}
	if strings.Count(stdout.String(), `"id":"cus_123"`) != 2 {
		t.Errorf("keyhole.sh: want the customer from both Stripe sections (by path and by host):\n%s", stdout.String())
	}
}

func TestExampleTypeScript(t *testing.T) {
	dir := nodeProject(t, "examples/typescript")
	n, tok, _ := exampleNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tsc := exec.CommandContext(ctx, "node", filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", ".")
	tsc.Dir = dir
	if out, err := tsc.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	for _, tc := range []struct{ script, want string }{
		{"dist/openai.js", "Hello; key=Bearer [REDACTED]\nHello key=Bearer [REDACTED]\n"},
		{"dist/anthropic.js", "Hello; key=[REDACTED]\nHello; key=[REDACTED]\n"},
	} {
		cmd := exec.CommandContext(ctx, "node", tc.script)
		cmd.Dir = dir
		cmd.Env = sdkEnv("KEYHOLE_URL", "http://"+n.gw, "KH_TOKEN", tok)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		n.see("examples/typescript/"+tc.script, stdout.String()+stderr.String(), false)
		if err != nil || stdout.String() != tc.want {
			t.Errorf("node %s: %v\nstdout %q, want %q\nstderr: %s", tc.script, err, stdout.String(), tc.want, stderr.String())
		}
	}
}

func TestExampleMCPConfigs(t *testing.T) {
	dir := nodeProject(t, "sdktest")
	n, tok, _ := exampleNode(t)
	for _, tc := range []struct{ file, format string }{
		{"mcp.json", "claude-code"},
		{"vscode-mcp.json", "vscode"},
		{"claude_desktop_config.json", "claude-desktop"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			st := n.runNode(dir, "mcp-config.mjs", "CONFIG", filepath.Join(repoRoot(t), "examples", "mcp", tc.file), "FORMAT", tc.format,
				"KEYHOLE_URL", "http://"+n.gw, "KH_TOKEN", tok,
				"TOOL", "call_stripe", "ARGS", `{"method":"GET","path":"/v1/customers/cus_123"}`)
			if st["connected"].str("server") != "keyhole" {
				t.Errorf("%s: connected → %v", tc.file, st["connected"])
			}
			if got := fmt.Sprint(st["tools"]["names"]); got != "[call_anthropic call_openai call_stripe]" {
				t.Errorf("%s: tools → %s", tc.file, got)
			}
			if c := st["call"]; fmt.Sprint(c["is_error"]) != "false" || !strings.Contains(c.str("text"), `cus_123`) ||
				!strings.Contains(c.str("text"), `key=Bearer [REDACTED]`) {
				t.Errorf("%s: call_stripe → %v", tc.file, c)
			}
		})
	}
}

// TestExamplePythonCompiles: the Python example is not run (its package
// cannot be installed from here), but it must at least be valid Python.
func TestExamplePythonCompiles(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("skipped: python3 is not on PATH")
	}
	src := filepath.Join(repoRoot(t), "examples", "python", "openai_example.py")
	out, err := exec.Command(py, "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])", src).CombinedOutput()
	if err != nil {
		t.Errorf("examples/python/openai_example.py does not parse: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(src)
	for _, want := range []string{`base_url=f"{gateway}/openai/v1"`, `api_key=os.environ["KH_TOKEN"]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("the Python example lacks %s", want)
		}
	}
}
