// The official @anthropic-ai/sdk through keyhole. Two settings change:
// baseURL (GATEWAY/anthropic) and apiKey (the agent's keyhole token);
// keyhole adds the real Anthropic key on the way out.
//
//   npm ci && npm run build
//   KEYHOLE_URL=http://127.0.0.1:8080 KH_TOKEN=kh_… node dist/anthropic.js
import Anthropic from '@anthropic-ai/sdk';

const gateway = (process.env.KEYHOLE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');

const client = new Anthropic({
  baseURL: `${gateway}/anthropic`, // was: the default, https://api.anthropic.com
  apiKey: process.env.KH_TOKEN, // was: the Anthropic key (sk-ant-…)
});

async function main(): Promise<void> {
  const message = await client.messages.create({
    model: 'claude-sonnet-4-5',
    max_tokens: 256,
    messages: [{ role: 'user', content: 'Say hello.' }],
  });
  for (const block of message.content) {
    if (block.type === 'text') console.log(block.text);
  }

  const stream = client.messages.stream({
    model: 'claude-sonnet-4-5',
    max_tokens: 256,
    messages: [{ role: 'user', content: 'Count to five.' }],
  });
  stream.on('text', (text) => process.stdout.write(text));
  await stream.finalMessage();
  process.stdout.write('\n');
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
