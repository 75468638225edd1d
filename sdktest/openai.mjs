// The official openai SDK through keyhole: base URL GATEWAY/openai/v1,
// API key = the keyhole token. Nothing else changes.
import OpenAI from 'openai';
import { env, out, main } from './lib.mjs';

const gateway = env('KEYHOLE_URL');
const token = env('KH_TOKEN');
const messages = [{ role: 'user', content: 'Say hello.' }];

main(async () => {
  const client = new OpenAI({ baseURL: `${gateway}/openai/v1`, apiKey: token, maxRetries: 2 });

  // Chat completion.
  const { data: c, response } = await client.chat.completions
    .create({ model: 'gpt-test', messages, temperature: 0.5 })
    .withResponse();
  out('chat', {
    id: c.id,
    object: c.object,
    content: c.choices[0].message.content,
    finish_reason: c.choices[0].finish_reason,
    total_tokens: c.usage.total_tokens,
    keyhole_request_id: response.headers.get('x-keyhole-request-id'),
    upstream_request_id: response.headers.get('x-request-id'),
    content_encoding: response.headers.get('content-encoding'),
  });

  // Streaming: server-sent events, data: chunks ending with [DONE].
  const stream = await client.chat.completions.create({ model: 'gpt-test', messages, stream: true });
  let text = '';
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  out('stream', { chunks, content: text, finish_reason: finish });

  // The upstream answers 429 with retry-after-ms once: the SDK waits and
  // retries on its own, which it can only do if the hint came back.
  const retried = await client.chat.completions.create({ model: 'rate-limited-once', messages });
  out('retry', { content: retried.choices[0].message.content });

  // A 429 with no retries left surfaces the upstream's hints unchanged.
  try {
    await client.chat.completions.create({ model: 'always-rate-limited', messages }, { maxRetries: 0 });
    out('rate_limit', { unexpected: 'success' });
  } catch (err) {
    out('rate_limit', {
      status: err.status,
      type: err.type,
      retry_after: err.headers?.get('retry-after'),
      ratelimit_remaining: err.headers?.get('x-ratelimit-remaining-requests'),
    });
  }

  // No code at all: the SDK reads OPENAI_BASE_URL and OPENAI_API_KEY.
  if (process.env.OPENAI_BASE_URL) {
    const fromEnv = await new OpenAI().chat.completions.create({ model: 'gpt-test', messages });
    out('env', { content: fromEnv.choices[0].message.content });
  }

  // A call keyhole's rules refuse: the SDK raises its PermissionDeniedError
  // with keyhole's error code.
  try {
    await client.embeddings.create({ model: 'text-embedding-test', input: 'x' });
    out('refused', { unexpected: 'success' });
  } catch (err) {
    out('refused', { status: err.status, code: err.code, message: err.message, keyhole_request_id: err.headers?.get('x-keyhole-request-id') });
  }
});
