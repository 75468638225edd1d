#!/usr/bin/env bash
# The HTTPS_PROXY sandbox (docs/agents.md, "HTTPS_PROXY (forward-proxy mode)").
#
# An agent that calls a third-party API at its usual https:// URL runs with an
# environment that holds no API key: only HTTPS_PROXY (keyhole's forward
# listener, with the agent's keyhole token as the proxy password) and the CA
# bundle (keyhole's CA). keyhole checks the token's scope and the proxy's
# rules, injects the real key, scrubs it from answers and records every call.
#
# Everything runs locally: a stand-in "weather" API (./upstream, HTTPS on
# localhost with its own throwaway CA, which keyhole is told to trust the way
# it trusts public CAs for real APIs), a keyhole node, and the agent (agent.sh
# with curl, and agent.py with Python's standard library when python3 is
# there). The script checks what a user should see and exits non-zero if
# anything differs. CI runs it (example_test.go).
#
#   bash examples/https_proxy/run.sh            # builds keyhole from this checkout
#   KEYHOLE_BIN=/path/to/keyhole bash examples/https_proxy/run.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
  printf '   FAILED: %s\n' "$*" >&2
  for f in keyhole.log upstream.log; do
    [ -f "$work/$f" ] && { echo "--- $f (tail)" >&2; tail -n 40 "$work/$f" >&2; }
  done
  exit 1
}

# A free TCP port on 127.0.0.1 (nothing answers on it).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  fail "no free port"
}

wait_for() { # wait_for SECONDS COMMAND…
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

say "build"
keyhole=${KEYHOLE_BIN:-}
if [ -z "$keyhole" ]; then
  (cd "$root" && go build -o "$work/keyhole" ./cmd/keyhole)
  keyhole=$work/keyhole
fi
(cd "$root" && go build -o "$work/weather-api" ./examples/https_proxy/upstream)
ok "keyhole and the stand-in weather API"

say "the third-party API (stand-in), with its real key"
WEATHER_API_KEY="sk_live_weather_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
"$work/weather-api" -key "$WEATHER_API_KEY" -ca "$work/upstream-ca.pem" -port-file "$work/upstream.port" \
  >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_for 10 test -s "$work/upstream.port" || fail "the weather API did not start"
up_port=$(cat "$work/upstream.port")
weather="https://localhost:$up_port"
ok "$weather"

say "keyhole, with --forward-listen"
p1=$(free_port); p2=$(free_port); p3=$(free_port)
while [ "$p2" = "$p1" ]; do p2=$(free_port); done
while [ "$p3" = "$p1" ] || [ "$p3" = "$p2" ]; do p3=$(free_port); done
gw=127.0.0.1:$p1 adm=127.0.0.1:$p2 fwd=127.0.0.1:$p3
export KEYHOLE_ADDR="http://$adm"
export KEYHOLE_ADMIN_TOKEN="example-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# SSL_CERT_FILE: keyhole trusts the stand-in API's CA (a real API's
# certificate is signed by a public CA, and this line is not needed).
# --allow-upstream-cidr: the stand-in runs on loopback, which keyhole's SSRF
# guard refuses by default.
KEYHOLE_MASTER_KEY=$(head -c 32 /dev/urandom | base64) SSL_CERT_FILE="$work/upstream-ca.pem" \
  "$keyhole" serve --listen "$gw" --admin-listen "$adm" --forward-listen "$fwd" \
  --store "sqlite://$work/keyhole.db" --allow-upstream-cidr 127.0.0.0/8 >"$work/keyhole.log" 2>&1 &
pids+=($!)
wait_for 20 "$keyhole" ca export || fail "keyhole did not start"
ok "gateway $gw, admin $adm, forward proxy $fwd"

say "secure the API (an operator, once)"
printf %s "$WEATHER_API_KEY" | "$keyhole" secret set weather-key
"$keyhole" proxy create weather --upstream "$weather" --auth bearer --secret weather-key \
  --allow 'GET /v1/weather' --allow 'GET /v1/debug' --deny '/v1/admin/**'
"$keyhole" agent create sandbox-agent
token=$("$keyhole" token issue sandbox-agent --proxy weather --ttl 1h)
"$keyhole" ca export >"$work/keyhole-ca.pem"
ok "proxy weather, agent sandbox-agent, keyhole's CA in keyhole-ca.pem"

# The agent's whole environment: no API key, only these lines.
agent_env=(env -i "PATH=$PATH" "HOME=${HOME:-$work}"
  "HTTPS_PROXY=http://kh:$token@$fwd"
  "SSL_CERT_FILE=$work/keyhole-ca.pem" "CURL_CA_BUNDLE=$work/keyhole-ca.pem"
  "WEATHER_API=$weather")

say "the agent (curl), unchanged"
out=$("${agent_env[@]}" sh "$here/agent.sh") || fail "agent.sh: $out"
echo "   $out"
case $out in *sunny*) ok "the call went through keyhole with the injected key" ;; *) fail "unexpected answer: $out" ;; esac

if py=$(command -v python3) && py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null); then
  say "the agent (Python), unchanged"
  out=$("${agent_env[@]}" "$py" "$here/agent.py") || fail "agent.py: $out"
  echo "   $out"
  case $out in *Lisbon*sunny*) ok "urllib went through keyhole" ;; *) fail "unexpected answer: $out" ;; esac
else
  say "the agent (Python): skipped, no python3"
fi

say "what keyhole adds"
out=$("${agent_env[@]}" curl -sS "$weather/v1/debug")
case $out in
  *"$WEATHER_API_KEY"*) fail "the API key reached the agent: $out" ;;
  *REDACTED*) ok "an upstream that echoes the key: the agent sees [REDACTED] ($out)" ;;
  *) fail "unexpected answer: $out" ;;
esac
code=$("${agent_env[@]}" curl -sS -o /dev/null -w '%{http_code}' "$weather/v1/admin/users")
[ "$code" = 403 ] || fail "GET /v1/admin/users answered $code; want 403 (deny rule)"
ok "a call the rules deny: 403, never forwarded"
code=$(env -i "PATH=$PATH" "HTTPS_PROXY=http://$fwd" "CURL_CA_BUNDLE=$work/keyhole-ca.pem" \
  curl -s -o /dev/null -w '%{http_connect}' "$weather/v1/weather" || true)
[ "$code" = 407 ] || fail "without the token the CONNECT answered $code; want 407"
ok "no token in HTTPS_PROXY: 407 Proxy Authentication Required"
code=$("${agent_env[@]}" curl -s -o /dev/null -w '%{http_connect}' "https://example.com/" || true)
[ "$code" = 403 ] || fail "a host no proxy names answered $code; want 403"
ok "any other host: 403, no blind tunnel"

say "the audit log"
"$keyhole" logs --limit 6
n=$("$keyhole" logs --proxy weather --json | grep -c '"path": "/v1/weather"' || true)
[ "$n" -ge 1 ] || fail "no audit record of GET /v1/weather"
ok "every call and every tunnel is recorded"

say "done: the HTTPS_PROXY sandbox works"
