// Package httpfront is a connection-level HTTP/1.1 framing guard that sits in
// front of net/http.Server.
//
// net/http quietly "repairs" some request framing that RFC 9112 says must be
// treated as an error: it drops Content-Length when Transfer-Encoding: chunked
// is present (RFC 9112 §6.1 says such a message "ought to be handled as an
// error"), it accepts obs-fold continuation lines and bare LF line endings
// (RFC 9112 §5.2, §2.2), and it tolerates whitespace before the colon of a
// header name in its parser (RFC 9112 §5.1 says a server MUST reject that with
// 400). A handler never sees any of this, so it cannot refuse it. The guard
// therefore parses every request header block on the wire before net/http
// does, and refuses those blocks there.
//
// The guard never writes to the connection: with keep-alive and pipelining,
// net/http may be writing the previous response at that very moment. Instead
// it hands net/http, in place of the refused block, a synthetic request
// (GET /-/framing-error, with Connection: close) marked with a per-listener
// secret, and gives net/http nothing after it. The gateway's handler
// recognises that request with [Listener.Rejection] and answers with its own
// error, so every refusal is answered in order, in the gateway's format, and
// audited like any other.
//
// Bytes that pass are released to net/http unchanged and as they arrive: a
// header block once it has been parsed completely, then its body exactly as
// far as the framing that the guard determined (and that net/http will
// determine too), then the next header block. Body bytes are never held back
// waiting for more, so streaming uploads keep streaming.
//
// Deployment notes:
//
//   - The guard reads plaintext HTTP/1.1. Terminate TLS before it; a
//     tls.Listener wrapped inside it works, but net/http then sees a plain
//     connection (Request.TLS is nil, no HTTP/2 by ALPN).
//   - After a protocol switch (Hijack after 101), call [Passthrough] on the
//     hijacked connection, or the new protocol's bytes are refused as HTTP.
//   - net/http's ReadHeaderTimeout starts when net/http sees the first byte of
//     a request, and the guard hands it nothing until the header block is
//     complete. The first request of a connection is still covered (net/http
//     sets that deadline at accept), but between keep-alive requests the time
//     a client may take to send a header block is bounded by the server's
//     IdleTimeout (or ReadTimeout) instead. Keep IdleTimeout set.
//   - Set http.Server.MaxHeaderBytes to at least Options.MaxHeaderBytes.
package httpfront

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Defaults for [Options].
const (
	// DefaultMaxHeaderBytes is keyhole's limit on a request header block
	// (SPEC §3.4: a header block over 64 KiB gets 431).
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxDiscard bounds how much of an oversized header block the
	// guard reads and throws away so that the client can read the 431.
	DefaultMaxDiscard = 1 << 20
)

// Reason words carried by a [Rejection]. They are stable: the gateway may use
// them as error codes and in audit records.
const (
	// ReasonConflictingFraming: Content-Length together with
	// Transfer-Encoding, or Content-Length values that differ
	// (RFC 9112 §6.1, §6.3 items 3 and 5; request smuggling).
	ReasonConflictingFraming = "conflicting_framing"
	// ReasonBadTransferEncoding: a Transfer-Encoding that is not exactly one
	// "chunked", or any Transfer-Encoding on an HTTP/1.0 request
	// (RFC 9112 §6.1, §6.3 item 4).
	ReasonBadTransferEncoding = "bad_transfer_encoding"
	// ReasonBadContentLength: a Content-Length value that is not a single
	// 1*DIGIT number below 2^63, such as "", "+5" or "4, 4"
	// (RFC 9112 §6.3 item 5; net/http refuses these too).
	ReasonBadContentLength = "bad_content_length"
	// ReasonBadHeaderSyntax: obs-fold, a bare LF or bare CR, whitespace
	// between a field name and its colon, a field name that is not a token,
	// a field value with control bytes, or a malformed request line
	// (RFC 9112 §2.2, §3, §5.1, §5.2).
	ReasonBadHeaderSyntax = "bad_header_syntax"
	// ReasonHeadersTooLarge: the header block is larger than
	// Options.MaxHeaderBytes; answered with 431 (RFC 6585 §5).
	ReasonHeadersTooLarge = "headers_too_large"
	// ReasonBadChunk: malformed chunked framing inside a body. Body bytes
	// have already been released by then, so no synthetic request is
	// produced: the guard reports EOF, net/http fails the body read, and
	// the connection is closed (RFC 9112 §7.1). It is listed here for
	// completeness; [Listener.Rejection] never returns it.
	ReasonBadChunk = "bad_chunk"
)

// Names of the headers of the synthetic request.
const (
	hdrGuard  = "X-Keyhole-Guard"
	hdrStatus = "X-Keyhole-Guard-Status"
	hdrReason = "X-Keyhole-Guard-Reason"
	hdrMethod = "X-Keyhole-Guard-Method"
	hdrTarget = "X-Keyhole-Guard-Target"

	// RejectionPath is the request target of the synthetic request.
	RejectionPath = "/-/framing-error"
)

// Options configure a guard. The zero value is keyhole's configuration.
type Options struct {
	// MaxHeaderBytes is the largest header block (request line, header
	// fields and the empty line that ends them) the guard accepts; a larger
	// one is refused with 431. Zero or less means DefaultMaxHeaderBytes.
	// Set http.Server.MaxHeaderBytes to at least this value, as a backstop:
	// a smaller one would make net/http answer 431 itself, in plain text.
	MaxHeaderBytes int
	// MaxDiscard bounds the bytes the guard reads and throws away after a
	// refusal: the rest of an oversized header block (so that the client has
	// finished sending and can read the 431: closing a socket with unread
	// data makes Linux send RST, which can destroy the response in flight),
	// then whatever the client still sends while the refusal is answered.
	// Beyond it the guard stops reading. Zero means DefaultMaxDiscard; a
	// negative value means nothing is discarded.
	MaxDiscard int
}

// A Rejection describes a header block that the guard refused.
type Rejection struct {
	// Status is the HTTP status to answer with: 400, or 431 for
	// ReasonHeadersTooLarge.
	Status int
	// Reason is one of the Reason* words.
	Reason string
	// Method is the refused request's method, or "" if it was not a token.
	Method string
	// Target is the refused request target, truncated to 1024 bytes, with
	// every byte outside 0x21–0x7E percent-encoded. It is client input:
	// never use it as anything but text.
	Target string
}

// A Listener wraps a net.Listener so that every accepted connection is
// guarded. It is safe for concurrent use.
type Listener struct {
	net.Listener

	maxHeader  int
	maxDiscard int
	nonce      string // 64 hex digits

	trace func(c *conn, ev event) // tests only
}

var _ net.Listener = (*Listener)(nil)

// NewListener returns a guarded listener around inner. The returned value is a
// *Listener; keep it to call [Listener.Rejection].
//
// The guard expects plaintext HTTP/1.1 on the wire: terminate TLS before it.
func NewListener(inner net.Listener, opts Options) net.Listener {
	return newListener(inner, opts)
}

func newListener(inner net.Listener, opts Options) *Listener {
	l := &Listener{
		Listener:   inner,
		maxHeader:  opts.MaxHeaderBytes,
		maxDiscard: opts.MaxDiscard,
	}
	if l.maxHeader <= 0 {
		l.maxHeader = DefaultMaxHeaderBytes
	}
	switch {
	case l.maxDiscard == 0:
		l.maxDiscard = DefaultMaxDiscard
	case l.maxDiscard < 0:
		l.maxDiscard = 0
	}
	// The nonce is what makes the synthetic request unforgeable: a client
	// can send an X-Keyhole-Guard header, but not one with this value.
	// crypto/rand.Read never returns an error (it crashes the program if
	// the system's generator fails).
	var b [32]byte
	rand.Read(b[:])
	l.nonce = hex.EncodeToString(b[:])
	return l
}

// Accept waits for the next connection and returns it guarded.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c, l), nil
}

// Rejection reports whether r is the synthetic request that this listener's
// guard produced in place of a refused header block, and if so, what was
// refused. The gateway handler calls it first, answers ok requests with
// rej.Status and its own error body, and sets "Connection: close" (net/http
// closes the connection anyway, because the synthetic request asks for it).
//
// It is true only when r carries X-Keyhole-Guard equal to the listener's
// secret, so a client that sends these headers itself gets false.
//
// The synthetic request's context is not canceled while the client waits for
// the answer (the guard keeps reading and dropping the client's input rather
// than reporting EOF), so it can be used to audit the refusal.
func (l *Listener) Rejection(r *http.Request) (Rejection, bool) {
	v := r.Header[hdrGuard]
	if len(v) != 1 || len(v[0]) != len(l.nonce) ||
		subtle.ConstantTimeCompare([]byte(v[0]), []byte(l.nonce)) != 1 {
		return Rejection{}, false
	}
	rej := Rejection{
		Status: http.StatusBadRequest,
		Reason: r.Header.Get(hdrReason),
		Method: r.Header.Get(hdrMethod),
		Target: r.Header.Get(hdrTarget),
	}
	if s, _ := strconv.Atoi(r.Header.Get(hdrStatus)); s == http.StatusRequestHeaderFieldsTooLarge {
		rej.Status = s
	}
	return rej, true
}

// StripGuardHeaders removes every X-Keyhole-Guard* header from h. The gateway
// calls it on every request, so that a client-sent imitation never reaches an
// upstream.
func StripGuardHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(hdrGuard) && strings.EqualFold(k[:len(hdrGuard)], hdrGuard) {
			delete(h, k)
		}
	}
}

// Passthrough stops guarding c, a connection accepted from a [Listener], and
// reports whether c was one. Call it after taking a connection over with
// http.Hijacker for a protocol switch (a WebSocket after 101 Switching
// Protocols): the bytes that follow are no longer HTTP/1.1 requests, and the
// guard would otherwise refuse them. It must not be called while another
// goroutine reads from c; after Hijack none does.
func Passthrough(c net.Conn) bool {
	gc, ok := c.(*conn)
	if !ok {
		return false
	}
	gc.passthrough()
	return true
}
