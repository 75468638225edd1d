// Uses an MCP client configuration file of examples/mcp exactly as the
// client it is written for would, then lists and calls keyhole's tools
// through it with the official MCP TypeScript SDK:
//   FORMAT=claude-code     mcp.json: {"mcpServers":{"keyhole":{"type":"http","url","headers"}}}, ${VAR} from the environment
//   FORMAT=vscode          vscode-mcp.json: {"servers":{…}}, ${input:ID} from a prompt (here: KH_TOKEN)
//   FORMAT=claude-desktop  claude_desktop_config.json: a stdio server, mcp-remote bridging to keyhole
// The configurations name keyhole's default address; it is replaced by
// KEYHOLE_URL (the test node's) — the one change a user makes when keyhole
// listens elsewhere.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { env, out, main } from './lib.mjs';

const DEFAULT = 'http://127.0.0.1:8080';
const file = env('CONFIG');
const format = env('FORMAT');
const gateway = env('KEYHOLE_URL').replace(/\/$/, '');
const token = env('KH_TOKEN');
const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
const address = (u) => u.replace(DEFAULT, gateway);

function transportFor() {
  if (format === 'claude-code') {
    const s = cfg.mcpServers.keyhole;
    if (s.type !== 'http') throw new Error(`type ${s.type}, want http`);
    const vars = { KH_TOKEN: token };
    const expand = (v) => v.replace(/\$\{([A-Z_]+)\}/g, (_, k) => vars[k] ?? '');
    const headers = Object.fromEntries(Object.entries(s.headers).map(([k, v]) => [k, expand(v)]));
    return new StreamableHTTPClientTransport(new URL(address(s.url)), { requestInit: { headers } });
  }
  if (format === 'vscode') {
    const s = cfg.servers.keyhole;
    const answers = Object.fromEntries(cfg.inputs.map((i) => [i.id, token])); // what the user types at the prompt
    const expand = (v) => v.replace(/\$\{input:([^}]+)\}/g, (_, k) => answers[k] ?? '');
    const headers = Object.fromEntries(Object.entries(s.headers).map(([k, v]) => [k, expand(v)]));
    return new StreamableHTTPClientTransport(new URL(address(s.url)), { requestInit: { headers } });
  }
  if (format === 'claude-desktop') {
    const s = cfg.mcpServers.keyhole;
    // "npx -y mcp-remote@VERSION …": run the installed mcp-remote (the
    // version the configuration pins) without asking the registry.
    const [yes, pkg, ...rest] = s.args;
    const [name, version] = pkg.split('@');
    const require = createRequire(import.meta.url);
    const installed = JSON.parse(fs.readFileSync(require.resolve('mcp-remote/package.json'), 'utf8')).version;
    if (s.command !== 'npx' || yes !== '-y' || name !== 'mcp-remote' || version !== installed) {
      throw new Error(`want npx -y mcp-remote@${installed}; the configuration says ${s.command} ${s.args.join(' ')}`);
    }
    const bin = path.join(path.dirname(require.resolve('mcp-remote/package.json')), 'dist', 'proxy.js');
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mcp-remote-'));
    process.on('exit', () => fs.rmSync(home, { recursive: true, force: true }));
    const childEnv = { PATH: process.env.PATH, HOME: home };
    for (const [k, v] of Object.entries(s.env)) childEnv[k] = v.replace(/kh_REPLACE_WITH_THE_AGENT_TOKEN/, token);
    childEnv.MCP_REMOTE_CONFIG_DIR = childEnv.HOME;
    return new StdioClientTransport({ command: process.execPath, args: [bin, ...rest.map(address)], env: childEnv, stderr: 'pipe' });
  }
  throw new Error(`unknown FORMAT ${format}`);
}

main(async () => {
  const transport = transportFor();
  let bridgeLog = '';
  transport.stderr?.on('data', (d) => (bridgeLog += d));
  const client = new Client({ name: `keyhole-${format}`, version: '1.0.0' });
  try {
    await client.connect(transport);
    out('connected', { format, server: client.getServerVersion()?.name ?? null });
    const { tools } = await client.listTools();
    out('tools', { names: tools.map((t) => t.name) });
    const res = await client.callTool({ name: process.env.TOOL, arguments: JSON.parse(process.env.ARGS || '{}') });
    out('call', { is_error: Boolean(res.isError), text: res.content.map((c) => c.text ?? '').join('') });
    await client.close();
  } catch (err) {
    // The bridge's log, without the token it was given.
    out('bridge_log', { log: bridgeLog.split(token).join('kh_…').slice(-4000) });
    throw err;
  }
});
