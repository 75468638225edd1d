"""The agent, unchanged: Python's standard library calling the weather API at
its usual URL, holding no API key. urllib reads HTTPS_PROXY (keyhole, with the
agent's token as the proxy password) and OpenSSL reads SSL_CERT_FILE (keyhole's
CA) from the environment; nothing here knows about keyhole."""

import json
import os
import urllib.request

with urllib.request.urlopen(os.environ["WEATHER_API"] + "/v1/weather?city=Lisbon", timeout=15) as r:
    print(json.dumps(json.load(r)))
