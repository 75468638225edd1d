"""The official openai Python SDK through keyhole.

The two lines that change from an ordinary OpenAI program are base_url and
api_key: base_url is GATEWAY/openai/v1 and api_key is the agent's keyhole
token. keyhole adds the real OpenAI key on the way out.

    pip install -r requirements.txt
    KEYHOLE_URL=http://127.0.0.1:8080 KH_TOKEN=kh_… python openai_example.py

(Not run in keyhole's CI: the CI machines reach npm but not PyPI, so the
package cannot be installed there. The same calls run in CI through the
TypeScript SDK: ../typescript and sdktest/.)
"""

import os

from openai import OpenAI

gateway = os.environ.get("KEYHOLE_URL", "http://127.0.0.1:8080").rstrip("/")

client = OpenAI(
    base_url=f"{gateway}/openai/v1",  # was: the default, https://api.openai.com/v1
    api_key=os.environ["KH_TOKEN"],  # was: the OpenAI key (sk-…)
)

completion = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello."}],
)
print(completion.choices[0].message.content)

stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Count to five."}],
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
