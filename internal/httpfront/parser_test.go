package httpfront

import (
	"strings"
	"testing"
)

const parserMax = 128

// TestParser checks the header parser's verdicts on its own.
func TestParser(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		afterPOST  bool
		want       parseResult
		wantReason string
		wantLen    int64
		wantChunk  bool
	}{
		{name: "minimal", in: "GET / HTTP/1.1\r\n\r\n", want: accepted},
		{name: "incomplete", in: "GET / HTTP/1.1\r\nHost: x\r\n", want: needMore},
		{name: "CL", in: "POST / HTTP/1.1\r\nContent-Length: 0042\r\n\r\n", want: accepted, wantLen: 42},
		{name: "CL with OWS", in: "POST / HTTP/1.1\r\nContent-Length:\t 7 \t\r\n\r\n", want: accepted, wantLen: 7},
		{name: "chunked", in: "POST / HTTP/1.1\r\nTransfer-Encoding:  chunked \r\n\r\n", want: accepted, wantChunk: true},
		{name: "CL max", in: "POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n", want: accepted, wantLen: 1<<63 - 1},
		{name: "CL overflow", in: "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", want: refused, wantReason: ReasonBadContentLength},
		{name: "CL empty", in: "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", want: refused, wantReason: ReasonBadContentLength},
		{name: "CL 05 and 5", in: "POST / HTTP/1.1\r\nContent-Length: 05\r\nContent-Length: 5\r\n\r\n", want: refused, wantReason: ReasonConflictingFraming},
		{name: "TE empty", in: "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", want: refused, wantReason: ReasonBadTransferEncoding},
		{name: "TE identity", in: "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", want: refused, wantReason: ReasonBadTransferEncoding},
		{name: "TE on HTTP/0.9", in: "POST / HTTP/0.9\r\nTransfer-Encoding: chunked\r\n\r\n", want: refused, wantReason: ReasonBadTransferEncoding},
		{name: "TE on HTTP/2.0", in: "POST / HTTP/2.0\r\nTransfer-Encoding: chunked\r\n\r\n", want: accepted, wantChunk: true},
		{name: "h2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: passthrough},
		{name: "PRI with fields", in: "PRI * HTTP/2.0\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", want: refused, wantReason: ReasonConflictingFraming},
		{name: "skip after POST", in: "\r\n\r\nGET / HTTP/1.1\r\n\r\n", afterPOST: true, want: accepted},
		{name: "skip at most 4", in: "\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", afterPOST: true, want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "no skip otherwise", in: "\r\nGET / HTTP/1.1\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "empty line", in: "\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "version", in: "GET / HTTP/1.10\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "lower-case version", in: "GET / http/1.1\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "two spaces", in: "GET  / HTTP/1.1\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "tab before colon", in: "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "empty name", in: "GET / HTTP/1.1\r\n: x\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "no colon", in: "GET / HTTP/1.1\r\nHost x\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "DEL in value", in: "GET / HTTP/1.1\r\nX: \x7f\r\n\r\n", want: refused, wantReason: ReasonBadHeaderSyntax},
		{name: "too large", in: "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\n\r\n", want: refused, wantReason: ReasonHeadersTooLarge},
		{name: "exactly the limit", in: "GET /" + strings.Repeat("a", parserMax-len("GET / HTTP/1.1\r\n\r\n")) + " HTTP/1.1\r\n\r\n", want: accepted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h headerParser
			h.reset(parserMax, tc.afterPOST)
			got := h.parse([]byte(tc.in))
			if got != tc.want || h.reason != tc.wantReason {
				t.Fatalf("parse = %d %q, want %d %q", got, h.reason, tc.want, tc.wantReason)
			}
			if got == accepted && (h.length != tc.wantLen || h.chunked != tc.wantChunk) {
				t.Errorf("framing = length %d chunked %v, want %d %v", h.length, h.chunked, tc.wantLen, tc.wantChunk)
			}
			// The verdict must not depend on how the bytes arrive.
			h.reset(parserMax, tc.afterPOST)
			var inc parseResult
			for i := 1; i <= len(tc.in); i++ {
				if inc = h.parse([]byte(tc.in[:i])); inc != needMore {
					break
				}
			}
			if inc != got || h.reason != tc.wantReason {
				t.Errorf("byte by byte: %d %q, want %d %q", inc, h.reason, got, tc.wantReason)
			}
		})
	}
}

func TestChunker(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantN    int // bytes consumed
		wantDone bool
	}{
		{"simple", "3\r\nabc\r\n0\r\n\r\nNEXT", 13, true},
		{"extension", "3;a=b;c\r\nabc\r\n0;z\r\n\r\n", 21, true},
		{"trailer", "0\r\nX-A: 1\r\nX-B:\r\n\r\n", 19, true},
		{"trailing OWS", "3 \t \r\nabc\r\n0\r\n\r\n", 16, true},
		{"16 digits", "0000000000000003\r\nabc\r\n0\r\n\r\n", 28, true},
		{"17 digits", "00000000000000003\r\n", 16, false},
		{"leading space", " 3\r\n", 0, false},
		{"OWS before ;", "3 ;a\r\n", 2, false},
		{"bare LF line", "3\nabc", 1, false},
		{"CR in extension", "3;a\rb\r\n", 4, false},
		{"no CRLF after data", "3\r\nabcX", 6, false},
		{"empty size", "\r\n", 0, false},
		{"trailer obs-fold", "0\r\nX: a\r\n b\r\n\r\n", 9, false},
		{"trailer bare LF", "0\r\nX: a\n\r\n", 7, false},
		{"trailer space before colon", "0\r\nX : a\r\n\r\n", 4, false},
		{"chunk line too long", "1;" + strings.Repeat("e", 4093) + "\r\n", 4096, false},
		{"chunk line at the limit", "1;" + strings.Repeat("e", 4092) + "\r\na\r\n", 4096 + 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var k chunker
			n, done, bad := k.advance([]byte(tc.in))
			if n != tc.wantN || done != tc.wantDone {
				t.Fatalf("advance = %d done=%v bad=%v, want %d done=%v", n, done, bad, tc.wantN, tc.wantDone)
			}
			// Byte by byte gives the same answer.
			var k2 chunker
			total := 0
			var done2, bad2 bool
			for i := 0; i < len(tc.in) && !done2 && !bad2; i++ {
				var m int
				m, done2, bad2 = k2.advance([]byte{tc.in[i]})
				total += m
			}
			if total != n || done2 != done || bad2 != bad {
				t.Errorf("byte by byte = %d done=%v bad=%v, want %d done=%v bad=%v", total, done2, bad2, n, done, bad)
			}
		})
	}
}

// TestExcessOverhead mirrors net/http's limit on chunk overhead: one-byte
// chunks with long extensions are refused once the overhead passes 16 KiB.
func TestExcessOverhead(t *testing.T) {
	var k chunker
	chunk := []byte("1;" + strings.Repeat("e", 200) + "\r\na\r\n")
	for i := 0; i < 200; i++ {
		n, _, bad := k.advance(chunk)
		if bad {
			if i < 16*1024/200 {
				t.Fatalf("refused after %d chunks", i)
			}
			if n >= len(chunk) {
				t.Fatalf("consumed %d", n)
			}
			return
		}
	}
	t.Fatal("excess overhead never refused")
}

// TestBodyFastPathAllocs: reading a body allocates nothing.
func TestBodyFastPathAllocs(t *testing.T) {
	for _, tc := range []struct{ name, head, chunk string }{
		{"content-length", "Content-Length: 1000000000\r\n", strings.Repeat("x", 4096)},
		{"chunked", "Transfer-Encoding: chunked\r\n", "1000\r\n" + strings.Repeat("x", 4096) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &repeatConn{head: []byte("POST / HTTP/1.1\r\nHost: x\r\n" + tc.head + "\r\n"), body: []byte(tc.chunk)}
			c := newConn(src, newListener(nil, Options{}))
			buf := make([]byte, 4096)
			for range 4 { // the header block, then some body
				if _, err := c.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			if a := testing.AllocsPerRun(1000, func() { c.Read(buf) }); a != 0 {
				t.Errorf("%v allocations per Read", a)
			}
		})
	}
}

// repeatConn sends head once, then body forever.
type repeatConn struct {
	fakeConn
	head, body []byte
	off        int
}

func (r *repeatConn) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	n := copy(p, r.body[r.off:])
	r.off = (r.off + n) % len(r.body)
	return n, nil
}
