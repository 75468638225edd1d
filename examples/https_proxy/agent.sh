#!/bin/sh
# The agent, unchanged: it calls the weather API at its usual URL with curl
# and holds no API key. Run it with HTTPS_PROXY pointing at keyhole and the
# CA bundle trusting keyhole's CA (run.sh does), and keyhole supplies the key.
set -eu
curl -fsS "$WEATHER_API/v1/weather?city=Paris"
