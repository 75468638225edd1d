// The official openai SDK through keyhole. Two settings change: baseURL
// (GATEWAY/openai/v1) and apiKey (the agent's keyhole token); keyhole adds
// the real OpenAI key on the way out.
//
//   npm ci && npm run build
//   KEYHOLE_URL=http://127.0.0.1:8080 KH_TOKEN=kh_… node dist/openai.js
import OpenAI from 'openai';

const gateway = (process.env.KEYHOLE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');

const client = new OpenAI({
  baseURL: `${gateway}/openai/v1`, // was: the default, https://api.openai.com/v1
  apiKey: process.env.KH_TOKEN, // was: the OpenAI key (sk-…)
});

async function main(): Promise<void> {
  const completion = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello.' }],
  });
  console.log(completion.choices[0].message.content);

  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Count to five.' }],
    stream: true,
  });
  for await (const chunk of stream) {
    process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  }
  process.stdout.write('\n');
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
