// The official @anthropic-ai/sdk through keyhole: base URL GATEWAY/anthropic,
// API key = the keyhole token. This SDK version sends the key as
// Authorization: Bearer; with MODE=x-api-key the token goes in x-api-key
// instead, as older versions of the SDK (and curl examples) send it — the
// anthropic template's agent_token_header.
import Anthropic from '@anthropic-ai/sdk';
import { env, out, main } from './lib.mjs';

const gateway = env('KEYHOLE_URL');
const token = env('KH_TOKEN');
const mode = process.env.MODE || 'sdk';

main(async () => {
  const opts = { baseURL: `${gateway}/anthropic`, maxRetries: 2, defaultHeaders: { 'anthropic-beta': 'test-beta-2025-01-01' } };
  const client =
    mode === 'x-api-key'
      ? new Anthropic({ ...opts, apiKey: null, authToken: null, defaultHeaders: { ...opts.defaultHeaders, 'x-api-key': token } })
      : new Anthropic({ ...opts, apiKey: token });

  const params = { model: 'claude-test', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello.' }] };
  const { data: msg, response } = await client.messages.create(params).withResponse();
  out('message', {
    mode,
    id: msg.id,
    type: msg.type,
    text: msg.content.map((b) => b.text).join(''),
    stop_reason: msg.stop_reason,
    output_tokens: msg.usage.output_tokens,
    upstream_request_id: response.headers.get('request-id'),
    keyhole_request_id: response.headers.get('x-keyhole-request-id'),
  });

  // Streaming: message_start, content_block_*, message_delta, message_stop.
  const events = [];
  let text = '';
  const stream = client.messages.stream(params);
  stream.on('streamEvent', (e) => events.push(e.type));
  stream.on('text', (t) => (text += t));
  const final = await stream.finalMessage();
  out('stream', { mode, text, final_text: final.content.map((b) => b.text).join(''), stop_reason: final.stop_reason, events });

  // No code at all: the SDK reads ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY.
  if (process.env.ANTHROPIC_BASE_URL) {
    const fromEnv = await new Anthropic().messages.create({ ...params, model: 'claude-env' });
    out('env', { mode, text: fromEnv.content.map((b) => b.text).join('') });
  }

  // An overloaded upstream (529 with retry-after) is retried by the SDK.
  const retried = await client.messages.create({ ...params, model: 'overloaded-once' });
  out('retry', { mode, text: retried.content.map((b) => b.text).join('') });
});
