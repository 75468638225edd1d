package httpfront

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// fakeConn serves data in pieces whose sizes come from a small PRNG, then
// io.EOF.
type fakeConn struct {
	net.Conn // nil: only Read is used
	data     []byte
	rng      uint64
}

func (f *fakeConn) next(limit int) int {
	// xorshift64*; piece sizes favour the small and the awkward.
	f.rng ^= f.rng >> 12
	f.rng ^= f.rng << 25
	f.rng ^= f.rng >> 27
	r := f.rng * 2685821657736338717
	switch r % 4 {
	case 0:
		return 1
	case 1:
		return 1 + int(r>>8)%7
	case 2:
		return 1 + int(r>>8)%300
	}
	return limit
}

func (f *fakeConn) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.data[:min(len(f.data), f.next(len(p)))])
	f.data = f.data[n:]
	return n, nil
}

// fuzzListener is shared by the executions of one fuzz worker (they run one
// at a time), so that each does not pay for a new nonce.
var (
	fuzzListener = newListener(nil, fuzzOptions)
	fuzzBuf      = make([]byte, 8192)
)

// guard pushes data through a guard of l, reading with buffer sizes from
// seed, and returns what it released and its trace.
func guard(l *Listener, data []byte, seed uint64) ([]byte, []event) {
	var evs []event
	l.trace = func(_ *conn, ev event) { evs = append(evs, ev) }
	defer func() { l.trace = nil }()
	c := newConn(&fakeConn{data: data, rng: seed | 1}, l)
	sizes := &fakeConn{rng: seed*31 + 7}
	out := make([]byte, 0, len(data)+512)
	buf := fuzzBuf
	for range 1 << 20 {
		n, err := c.Read(buf[:sizes.next(len(buf))])
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	return out, evs
}

// FuzzFraming is the differential test of the guard against net/http: the
// same byte stream goes through the guard and, separately, through
// http.ReadRequest (with the server's after-POST CRLF skip) and a read of
// each body to EOF, request after request. For every header block the guard
// accepts, net/http must start and end the request where the guard says it
// does, with the same method, target and framing, and read its body to the
// same offset. That is, the guard never lets bytes through on which it and
// net/http disagree about where requests begin.
//
// net/http may refuse a block or a body that the guard let through (a
// missing Host, a malformed URL): net/http then closes the connection
// without parsing anything after it, so the comparison stops there. The
// guard may be stricter than net/http only where it is meant to be: it
// refuses blocks (a synthetic request then replaces them) and calls trailer
// sections with bare LF or obs-fold bad.
func FuzzFraming(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s), uint64(0))
		f.Add([]byte(s), uint64(0x9e3779b97f4a7c15))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		checkFraming(t, data, seed)
	})
}

// fuzzOptions keeps the limits small so that the fuzzer reaches them.
var fuzzOptions = Options{MaxHeaderBytes: 1024, MaxDiscard: 512}

func checkFraming(t *testing.T, data []byte, seed uint64) {
	l := fuzzListener
	out, evs := guard(l, data, seed)

	// What was released is the input, up to the synthetic request if
	// there was a refusal.
	released := out
	for _, ev := range evs {
		if ev.kind != evRefuse {
			continue
		}
		i := bytes.LastIndex(out, []byte("GET "+RejectionPath+" HTTP/1.1\r\n"))
		if i < 0 {
			t.Fatalf("refusal without a synthetic request")
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out[i:])))
		if err != nil {
			t.Fatalf("synthetic request does not parse: %v", err)
		}
		rej, ok := l.Rejection(req)
		if !ok || rej.Reason != ev.reason || rej.Status != ev.status {
			t.Fatalf("synthetic request = %+v, %v; want %s %d", rej, ok, ev.reason, ev.status)
		}
		if (rej.Status == 431) != (rej.Reason == ReasonHeadersTooLarge) {
			t.Fatalf("status %d for %s", rej.Status, rej.Reason)
		}
		released = out[:i]
	}
	if !bytes.HasPrefix(data, released) {
		t.Fatalf("released bytes are not the input")
	}

	// net/http's view of the same input.
	cr := &countingReader{r: bytes.NewReader(data)}
	br := bufio.NewReader(cr) // 4096 bytes, as net/http's server uses
	consumed := func() int64 { return cr.n - int64(br.Buffered()) }
	lastPOST := false
	for i := 0; i < len(evs); i++ {
		ev := evs[i]
		if ev.kind != evAccept {
			continue
		}
		if lastPOST {
			// net/http's server: "RFC 7230 section 3 tolerance for
			// old buggy clients".
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		if got := consumed(); got != ev.start {
			t.Fatalf("request %q: net/http starts at %d, guard at %d", ev.target, got, ev.start)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return // net/http refuses the block and closes
		}
		if got := consumed(); got != ev.end {
			t.Fatalf("header block: net/http ends at %d, guard at %d", got, ev.end)
		}
		if req.Method != ev.method || req.RequestURI != ev.target {
			t.Fatalf("net/http parsed %s %q, guard %s %q", req.Method, req.RequestURI, ev.method, ev.target)
		}
		chunked := len(req.TransferEncoding) > 0
		if chunked != ev.chunked || !chunked && req.ContentLength != ev.length {
			t.Fatalf("framing: net/http chunked=%v length=%d, guard chunked=%v length=%d",
				chunked, req.ContentLength, ev.chunked, ev.length)
		}
		_, bodyErr := io.Copy(io.Discard, req.Body)
		var next *event
		if i+1 < len(evs) {
			next = &evs[i+1]
		}
		switch {
		case next != nil && next.kind == evBodyEnd:
			if bodyErr != nil {
				t.Fatalf("the guard accepted a body that net/http refuses: %v", bodyErr)
			}
			if got := consumed(); got != next.end {
				t.Fatalf("body: net/http ends at %d, guard at %d", got, next.end)
			}
		case bodyErr != nil:
			return // net/http fails the body and closes
		case next != nil && next.kind == evBadChunk:
			if !next.trailer {
				t.Fatalf("the guard called a chunked body bad that net/http reads")
			}
			return
		default:
			t.Fatalf("net/http read a whole body that the guard did not see end")
		}
		lastPOST = req.Method == "POST"
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func fuzzSeeds() []string {
	var s []string
	for _, tc := range hostileCases {
		s = append(s, tc.req)
	}
	s = append(s,
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\n\n\n\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n6;a;b=\"c\"\r\n world\r\n0\r\nX-Sum: 42\r\n\r\nGET /n HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nA \t\r\n0123456789\r\n0\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /x HTTP/1.1\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\nGET /x HTTP/1.1\r\n\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\na\r\n0\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\na\r\n0\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nc000000000000000\r\na\r\n0\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+strings.Repeat("1;"+strings.Repeat("e", 100)+"\r\na\r\n", 200)+"0\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"+strings.Repeat("X-T: "+strings.Repeat("v", 100)+"\r\n", 50)+"\r\n",
		"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"PRI * HTTP/2.0\r\nContent-Length: 2\r\n\r\nhi",
		"GET http://example.com/x HTTP/1.1\r\nHost: y\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"GET / HTTP/3.7\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X: y\r\n", 300)+"\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length: 00000000000000000000000000005\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nContent-Length: \r\n\r\nhello",
	)
	// Chunked framing edges, each followed by a request that must not be
	// mistaken for body or trailer.
	const next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, body := range []string{
		"5;a\nhello\r\n0\r\n\r\n",               // bare LF ends a chunk-ext line
		"5;a\rb\r\nhello\r\n0\r\n\r\n",          // CR inside chunk-ext
		"5\r\r\nhello\r\n0\r\n\r\n",             // CR CR LF
		"5\r\nhello\n0\r\n\r\n",                 // LF alone after chunk-data
		"5\r\nhello\r\n0\r\nX: y\r\n\n",         // trailer ends with bare LF
		"5\r\nhello\r\n0\r\nX: y\n\r\n",         // trailer line ends with bare LF
		"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n", // obs-fold in trailer
		"5\r\nhello\r\n0\r\nX : a\r\n\r\n",      // space before colon in trailer
		"5\r\nhello\r\n0\r\n:a\r\n\r\n",         // empty trailer name
		"5\r\nhello\r\n0\r\n\r\n\r\n",           // CRLF after the body (POST skip)
		"0\r\n\r\n",
		"0;x=\"a;b\"\r\n\r\n",
		"fffffffffffffffF\r\nab",
		"8000000000000000\r\nab",
		"5\r\nhel",
	} {
		s = append(s, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body+next)
	}
	// Header edges.
	for _, hdr := range []string{
		"Transfer-Encoding:  chunked \t\r\n",
		"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
		"Content-Length: 5 \r\n",
		"Content-Length:\t5\r\nContent-Length: 5\r\n",
		"Content-Length: 5\r\nContent-Length: 05\r\n",
		"Content-Length: 5,\r\n",
		"Content-Length: 5\r\n\tTransfer-Encoding: chunked\r\n",
		"Expect: 100-continue\r\nContent-Length: 5\r\n",
		"Trailer: Content-Length\r\nTransfer-Encoding: chunked\r\n",
		"Host: y\r\nContent-Length: 5\r\n",
		"X: \x80\xff\r\nContent-Length: 5\r\n",
	} {
		s = append(s, "POST /h HTTP/1.1\r\nHost: x\r\n"+hdr+"\r\nhello"+next)
		s = append(s, "post /h HTTP/1.0\r\n"+hdr+"\r\n5\r\nhello\r\n0\r\n\r\n\r\n"+next)
	}
	return s
}

// TestFuzzSeeds runs the differential check on the seeds with many piece
// sizes, so that plain `go test` exercises it too.
func TestFuzzSeeds(t *testing.T) {
	for _, s := range fuzzSeeds() {
		for seed := range uint64(64) {
			checkFraming(t, []byte(s), seed*0x9e3779b97f4a7c15)
		}
	}
}
