#!/usr/bin/env bash
# Calling APIs through keyhole with curl: the only changes from each API's
# own curl examples are the URL (GATEWAY/<proxy>/… instead of the API's
# host) and the key (the agent's kh_ token instead of the API key).
#
#   KH_TOKEN=kh_… ./keyhole.sh                      # every section
#   KH_TOKEN=kh_… ./keyhole.sh openai mcp           # some of them
#
# KEYHOLE_URL is the gateway (default http://127.0.0.1:8080). The proxies
# are named after their templates (keyhole proxy create openai --template
# openai …). The "stripe-host" section needs `keyhole serve --host-suffix
# .localhost` (curl resolves *.localhost to the loopback address by itself).
set -euo pipefail

: "${KH_TOKEN:?set KH_TOKEN to the keyhole token of the agent (kh_…)}"
GATEWAY="${KEYHOLE_URL:-http://127.0.0.1:8080}"
GATEWAY="${GATEWAY%/}"
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(whoami openai anthropic stripe stripe-host mcp)

say() { printf '\n== %s\n' "$*"; }
# --fail-with-body: exit non-zero on an HTTP error but still print the body
# (keyhole's refusals are JSON that says why); -sS: quiet, but show errors.
kcurl() { curl -sS --fail-with-body "$@"; echo; }

for s in "${sections[@]}"; do
  case "$s" in
  whoami)
    say "whoami: the token's agent and scope"
    kcurl -H "Authorization: Bearer $KH_TOKEN" "$GATEWAY/-/whoami"
    ;;
  openai)
    say "OpenAI chat completion (https://api.openai.com/v1/… → $GATEWAY/openai/v1/…)"
    kcurl "$GATEWAY/openai/v1/chat/completions" \
      -H "Authorization: Bearer $KH_TOKEN" \
      -H "Content-Type: application/json" \
      -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
    ;;
  anthropic)
    # x-api-key is the anthropic template's agent_token_header;
    # Authorization: Bearer works as well.
    say "Anthropic message (https://api.anthropic.com/v1/… → $GATEWAY/anthropic/v1/…)"
    kcurl "$GATEWAY/anthropic/v1/messages" \
      -H "x-api-key: $KH_TOKEN" \
      -H "anthropic-version: 2023-06-01" \
      -H "content-type: application/json" \
      -d '{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}'
    ;;
  stripe)
    # Stripe's own examples use -u sk_…: (Basic auth); keyhole takes
    # agent tokens as a Bearer header, so send it as one.
    say "Stripe, form-encoded, by path (https://api.stripe.com/v1/… → $GATEWAY/stripe/v1/…)"
    kcurl "$GATEWAY/stripe/v1/customers" \
      -H "Authorization: Bearer $KH_TOKEN" \
      -H "Idempotency-Key: keyhole-example-$(date +%s)" \
      -d email=jenny@example.com \
      --data-urlencode "name=Jenny Rosen"
    ;;
  stripe-host)
    hostport="${GATEWAY#*://}"
    port="${hostport##*:}"
    [ "$port" != "$hostport" ] || port=80
    say "Stripe by host routing (keyhole serve --host-suffix .localhost: http://stripe.localhost:$port/v1/…)"
    kcurl "http://stripe.localhost:$port/v1/customers/cus_123" -H "Authorization: Bearer $KH_TOKEN"
    ;;
  mcp)
    # keyhole's MCP server answers JSON-RPC over HTTP; MCP clients do this
    # for you (see ../mcp).
    say "MCP: the tools this token gets at $GATEWAY/-/mcp"
    kcurl "$GATEWAY/-/mcp" \
      -H "Authorization: Bearer $KH_TOKEN" \
      -H "Content-Type: application/json" \
      -H "Accept: application/json, text/event-stream" \
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    ;;
  *)
    echo "unknown section $s (whoami, openai, anthropic, stripe, stripe-host, mcp)" >&2
    exit 2
    ;;
  esac
done
