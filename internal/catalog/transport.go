package catalog

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/keyhole-gw/keyhole/internal/netguard"
)

// NewTransport is the upstream transport of one proxy: the SSRF guard runs
// on every dial (after DNS, on the exact address), idle connections are
// pooled generously (the default of 2 per host makes every other request
// under load open a new connection), HTTP/2 is used when the upstream
// offers it over TLS, and compression is left to the transport: keyhole
// removes the agent's Accept-Encoding, so the transport offers only gzip
// and decodes it, and the scrubber and the audit capture always see
// plaintext (SPEC §3.6).
func NewTransport(g *netguard.Guard, connect, responseHeader time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	if g != nil {
		d.Control = g.Control
	}
	return &http.Transport{
		Proxy:                  nil, // never through an environment HTTP(S)_PROXY: credentials go to the upstream only
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    connect,
		ResponseHeaderTimeout:  responseHeader,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 256 << 10,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
}
