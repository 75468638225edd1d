// The official MCP TypeScript SDK client through keyhole, with the keyhole
// token in the transport's request headers:
//   MODE=keyhole   keyhole's own MCP server, ENDPOINT = GATEWAY/-/mcp
//   MODE=upstream  an MCP server behind a keyhole proxy, ENDPOINT = GATEWAY/<proxy>/mcp
// TOOL, ARGS (JSON) and TOOL2, ARGS2 name the calls to make; REFUSED and
// REFUSED_ARGS one that keyhole must refuse.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { env, out, main } from './lib.mjs';

const endpoint = env('ENDPOINT');
const token = process.env.KH_TOKEN || '';
const mode = process.env.MODE || 'keyhole';

function connect(tok) {
  const headers = tok ? { Authorization: `Bearer ${tok}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(endpoint), { requestInit: { headers } });
  const client = new Client({ name: 'keyhole-sdktest', version: '1.0.0' });
  return { client, transport };
}

function summary(res) {
  return {
    is_error: Boolean(res.isError),
    text: (res.content || []).map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n'),
    structured: res.structuredContent ?? null,
  };
}

main(async () => {
  // Without a token keyhole answers 401 before any MCP is spoken.
  if (mode === 'keyhole') {
    const { client, transport } = connect('');
    try {
      await client.connect(transport);
      out('no_token', { unexpected: 'connected' });
    } catch (err) {
      out('no_token', { error: String(err.message || err), code: err.code ?? null });
    }
  }

  const { client, transport } = connect(token);
  await client.connect(transport);
  out('connected', { mode, server: client.getServerVersion()?.name ?? null, session: transport.sessionId ? 'yes' : 'no' });

  const { tools } = await client.listTools();
  out('tools', {
    tools: tools.map((t) => ({
      name: t.name,
      description: t.description,
      methods: t.inputSchema?.properties?.method?.enum ?? null,
      properties: Object.keys(t.inputSchema?.properties ?? {}),
      required: t.inputSchema?.required ?? [],
    })),
  });

  for (const [tool, args] of [
    [process.env.TOOL, process.env.ARGS],
    [process.env.TOOL2, process.env.ARGS2],
  ]) {
    if (!tool) continue;
    const res = await client.callTool({ name: tool, arguments: JSON.parse(args || '{}') });
    out(`call ${tool}`, { tool, ...summary(res) });
  }

  // A call keyhole refuses. keyhole's own server answers with a tool error
  // (isError, keyhole's code); a refused call to an MCP upstream is an HTTP
  // 403 that the client raises — and the session goes on.
  if (process.env.REFUSED) {
    try {
      const res = await client.callTool({ name: process.env.REFUSED, arguments: JSON.parse(process.env.REFUSED_ARGS || '{}') });
      out('refused', { tool: process.env.REFUSED, ...summary(res) });
    } catch (err) {
      out('refused', { tool: process.env.REFUSED, thrown: true, error: String(err.message || err), code: err.code ?? null });
    }
    const again = await client.listTools();
    out('after_refusal', { tools: again.tools.length });
  }
  await client.close();
  out('closed', {});
});
