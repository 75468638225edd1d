package httpfront

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileCases are header blocks the guard must refuse. They are also the
// fuzz seeds.
var hostileCases = []struct {
	name       string
	req        string
	wantStatus int
	wantReason string
	wantMethod string
	wantTarget string
}{
	{
		// The classic CL.TE smuggling shape: net/http would drop
		// Content-Length and read "0\r\n\r\n" as the body, then parse
		// "GET /admin" as a second request.
		name:       "CL then TE",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "TE then CL",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "lower-case names and Chunked",
		req:        "POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: Chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "upper-case names",
		req:        "POST /a HTTP/1.1\r\nHOST: x\r\nCONTENT-LENGTH: 5\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		// net/http ignores Transfer-Encoding on HTTP/1.0 (Issue 12785)
		// and would read 5 bytes of body.
		name:       "TE and CL on HTTP/1.0",
		req:        "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "TE alone on HTTP/1.0",
		req:        "POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadTransferEncoding, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "two different Content-Lengths",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nhello",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "Content-Length list",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nhello",
		wantStatus: 400, wantReason: ReasonConflictingFraming, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "Content-Length list of equal values",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
		wantStatus: 400, wantReason: ReasonBadContentLength, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "signed Content-Length",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
		wantStatus: 400, wantReason: ReasonBadContentLength, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "TE gzip, chunked",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadTransferEncoding, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "TE chunked, chunked",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadTransferEncoding, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "two TE headers",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadTransferEncoding, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "TE xchunked",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadTransferEncoding, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "space before colon",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "obs-fold",
		req:        "GET /a HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n b\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a",
	},
	{
		name:       "obs-fold hiding Transfer-Encoding",
		req:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX: y\r\n\tTransfer-Encoding: chunked\r\n\r\nhello",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "POST", wantTarget: "/a",
	},
	{
		name:       "bare LF",
		req:        "GET /a HTTP/1.1\nHost: x\n\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a",
	},
	{
		name:       "bare LF inside the block",
		req:        "GET /a HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a",
	},
	{
		name:       "bare CR",
		req:        "GET /a HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a",
	},
	{
		name:       "non-token header name",
		req:        "GET /a HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a",
	},
	{
		name:       "control byte in a value",
		req:        "GET /a HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a",
	},
	{
		name:       "malformed request line",
		req:        "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "GET", wantTarget: "/a%01b",
	},
	{
		name:       "non-token method",
		req:        "G(T /a HTTP/1.1\r\nHost: x\r\n\r\n",
		wantStatus: 400, wantReason: ReasonBadHeaderSyntax, wantMethod: "", wantTarget: "/a",
	},
}

func TestHostileFraming(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ts.seen())
			c := dial(t, ts.addr)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, body := readResponse(t, br)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, tc.wantStatus, body)
			}
			if !strings.Contains(body, `"`+tc.wantReason+`"`) {
				t.Errorf("body = %q, want reason %q", body, tc.wantReason)
			}
			expectClosed(t, c, br)
			got := ts.waitSeen(t, before+1)[before:]
			if len(got) != 1 || !got[0].rejected {
				t.Fatalf("handler saw %+v, want one rejection", got)
			}
			want := Rejection{Status: tc.wantStatus, Reason: tc.wantReason, Method: tc.wantMethod, Target: tc.wantTarget}
			if got[0].rej != want {
				t.Errorf("Rejection = %+v, want %+v", got[0].rej, want)
			}
		})
	}
}

// TestRejectionContextAlive: the synthetic request's context is not canceled
// while the client waits for the answer, so the gateway can still audit the
// refusal with it. (Reporting EOF right after the synthetic request would
// make net/http's background read cancel it.)
func TestRejectionContextAlive(t *testing.T) {
	ctxErr := make(chan error, 1)
	ts := startServer(t, Options{}, func(ts *testServer, w http.ResponseWriter, r *http.Request) {
		if _, ok := ts.l.Rejection(r); ok {
			time.Sleep(100 * time.Millisecond)
			ctxErr <- r.Context().Err()
		}
		w.Header().Set("Connection", "close")
		w.WriteHeader(400)
	})
	c := dial(t, ts.addr)
	io.WriteString(c, hostileCases[0].req)
	if err := <-ctxErr; err != nil {
		t.Fatalf("the rejection's context was canceled: %v", err)
	}
	br := bufio.NewReader(c)
	if resp, _ := readResponse(t, br); resp.StatusCode != 400 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	expectClosed(t, c, br)
}

// TestOversizedHeaders sends an 80 KiB header block (limit 64 KiB) while
// reading concurrently: the guard must read the whole block before the
// refusal goes out, so that the client gets its 431 rather than a reset.
func TestOversizedHeaders(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	for i := 0; i < 3; i++ {
		c := dial(t, ts.addr)
		req := "GET /big HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("a", 1000)+"\r\n", 80) + "\r\n"
		go func() {
			// Written in small pieces, so the refusal happens while
			// the client is still sending.
			for b := []byte(req); len(b) > 0; {
				n := min(len(b), 4096)
				if _, err := c.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
		}()
		br := bufio.NewReader(c)
		resp, body := readResponse(t, br)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(body, ReasonHeadersTooLarge) {
			t.Fatalf("got %d %q, want 431 %s", resp.StatusCode, body, ReasonHeadersTooLarge)
		}
		expectClosed(t, c, br)
	}
	for _, s := range ts.waitSeen(t, 3) {
		want := Rejection{Status: 431, Reason: ReasonHeadersTooLarge, Method: "GET", Target: "/big"}
		if s.rej != want {
			t.Errorf("Rejection = %+v, want %+v", s.rej, want)
		}
	}
}

// TestHeadersBeyondMaxDiscard: a header block that never ends within
// MaxDiscard is refused without waiting for its end. The client may or may
// not get to read the 431 (it is still sending); the handler must see it.
func TestHeadersBeyondMaxDiscard(t *testing.T) {
	ts := startServer(t, Options{MaxHeaderBytes: 8 << 10, MaxDiscard: 16 << 10}, nil)
	c := dial(t, ts.addr)
	huge := "GET /" + strings.Repeat("a", 2000) + " HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("b", 1000)+"\r\n", 256)
	go func() {
		c.Write([]byte(huge)) // may fail with a reset; that is allowed
	}()
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		if resp.StatusCode != 431 {
			t.Errorf("status = %d, want 431", resp.StatusCode)
		}
		io.Copy(io.Discard, resp.Body)
	}
	got := ts.waitSeen(t, 1)
	if len(got) != 1 || got[0].rej.Reason != ReasonHeadersTooLarge {
		t.Fatalf("handler saw %+v, want a headers_too_large rejection", got)
	}
	if tgt := got[0].rej.Target; len(tgt) != maxReportedTarget || !strings.HasPrefix(tgt, "/aaa") {
		t.Errorf("Target = %q (%d bytes), want the first 1024 bytes", tgt[:min(len(tgt), 20)], len(tgt))
	}
	expectClosed(t, c, br)
}

func TestValidRequests(t *testing.T) {
	tests := []struct {
		name     string
		req      string
		want     []seen // method, target, body (and trailer if set)
		wantResp int    // responses expected
	}{
		{
			name: "GET without body",
			req:  "GET /v1/models?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []seen{{method: "GET", target: "/v1/models?x=1"}},
		},
		{
			name: "POST with Content-Length",
			req:  "POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
			want: []seen{{method: "POST", target: "/v1/chat", body: "hello world"}},
		},
		{
			name: "equal duplicate Content-Lengths",
			req:  "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
			want: []seen{{method: "POST", target: "/a", body: "hello"}},
		},
		{
			name: "chunked with extensions and trailers",
			req: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
				"5;ext=1\r\nhello\r\n6;a;b=\"c d\"\r\n world\r\n0;last\r\nX-Sum: 42\r\n\r\n",
			want: []seen{{method: "POST", target: "/up", body: "hello world", trailer: http.Header{"X-Sum": {"42"}}}},
		},
		{
			name: "chunked, upper-case hex and trailing whitespace",
			req:  "PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nA \t\r\n0123456789\r\n0\r\n\r\n",
			want: []seen{{method: "PUT", target: "/x", body: "0123456789"}},
		},
		{
			name: "keep-alive",
			req: "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" +
				"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
				"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ndef\r\n0\r\n\r\n" +
				"GET /4 HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []seen{{method: "GET", target: "/1"}, {method: "POST", target: "/2", body: "abc"}, {method: "POST", target: "/3", body: "def"}, {method: "GET", target: "/4"}},
		},
		{
			// net/http skips up to 4 CR/LF after a POST; the guard
			// must skip the same bytes.
			name: "CRLF after a POST body",
			req: "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n" +
				"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
			want: []seen{{method: "POST", target: "/1", body: "abc"}, {method: "GET", target: "/2"}},
		},
		{
			name: "HTTP/1.0",
			req:  "GET /old HTTP/1.0\r\n\r\n",
			want: []seen{{method: "GET", target: "/old"}},
		},
		{
			name: "obs-text in a value",
			req:  "GET /a HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n",
			want: []seen{{method: "GET", target: "/a"}},
		},
		{
			// A client cannot forge the marker: without the nonce,
			// Rejection is false and the headers are stripped.
			name: "forged guard headers",
			req: "GET /forged HTTP/1.1\r\nHost: x\r\nX-Keyhole-Guard: " + strings.Repeat("ab", 32) +
				"\r\nX-Keyhole-Guard-Status: 400\r\nX-Keyhole-Guard-Reason: conflicting_framing\r\n\r\n",
			want: []seen{{method: "GET", target: "/forged", guardHdr: true}},
		},
	}
	ts := startServer(t, Options{}, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ts.seen())
			c := dial(t, ts.addr)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for i, w := range tc.want {
				resp, body := readResponse(t, br)
				if resp.StatusCode != 200 {
					t.Fatalf("response %d: %d %q", i, resp.StatusCode, body)
				}
				if want := fmt.Sprintf("%s %s %d", w.method, w.target, len(w.body)); body != want {
					t.Errorf("response %d = %q, want %q", i, body, want)
				}
			}
			got := ts.waitSeen(t, before+len(tc.want))[before:]
			if len(got) != len(tc.want) {
				t.Fatalf("handler saw %d requests, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.rejected || g.method != w.method || g.target != w.target || g.body != w.body || g.guardHdr != w.guardHdr {
					t.Errorf("request %d = %+v, want %+v", i, g, w)
				}
				if w.trailer != nil && fmt.Sprint(g.trailer) != fmt.Sprint(w.trailer) {
					t.Errorf("request %d trailer = %v, want %v", i, g.trailer, w.trailer)
				}
			}
		})
	}
}

// TestPipelinedRefusal: three pipelined requests, the second hostile. The
// first is answered normally, the second refused in order, and the third
// never reaches the handler.
func TestPipelinedRefusal(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, body := readResponse(t, br); resp.StatusCode != 200 || body != "GET /one 0" {
		t.Fatalf("first response: %d %q", resp.StatusCode, body)
	}
	if resp, body := readResponse(t, br); resp.StatusCode != 400 || !strings.Contains(body, ReasonConflictingFraming) {
		t.Fatalf("second response: %d %q", resp.StatusCode, body)
	}
	expectClosed(t, c, br)
	// The connection is closed, so the handler is done: this is all it saw.
	got := ts.seen()
	if len(got) != 2 || got[0].target != "/one" || !got[1].rejected || got[1].rej.Target != "/two" {
		t.Fatalf("handler saw %+v, want /one then the rejection of /two only", got)
	}
}

func TestExpectContinue(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	c := dial(t, ts.addr)
	io.WriteString(c, "PUT /file HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	resp, _ := readResponse(t, br)
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %d, want 100 Continue before the body", resp.StatusCode)
	}
	io.WriteString(c, "hello")
	if resp, body := readResponse(t, br); resp.StatusCode != 200 || body != "PUT /file 5" {
		t.Fatalf("final response: %d %q", resp.StatusCode, body)
	}
}

// TestStreamingUpload: body bytes reach the handler as they arrive, before the
// upload ends, for both framings.
func TestStreamingUpload(t *testing.T) {
	for _, tc := range []struct {
		name, head, first, rest string
	}{
		{"chunked", "Transfer-Encoding: chunked", "5\r\nhello\r\n", "6\r\n world\r\n0\r\n\r\n"},
		{"content-length", "Content-Length: 11", "hello", " world"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			firstRead := make(chan string, 1)
			ts := startServer(t, Options{}, func(ts *testServer, w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 64)
				n, err := r.Body.Read(buf)
				firstRead <- string(buf[:n])
				if err != nil && err != io.EOF {
					return
				}
				rest, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%s%s", buf[:n], rest)
			})
			c := dial(t, ts.addr)
			io.WriteString(c, "POST /stream HTTP/1.1\r\nHost: x\r\n"+tc.head+"\r\n\r\n"+tc.first)
			select {
			case got := <-firstRead:
				if got != "hello" {
					t.Fatalf("first read = %q, want %q", got, "hello")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the handler got nothing before the upload ended: the guard held body bytes back")
			}
			io.WriteString(c, tc.rest)
			if resp, body := readResponse(t, bufio.NewReader(c)); resp.StatusCode != 200 || body != "hello world" {
				t.Fatalf("response: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// TestSlowHeaderBlock: a header block that trickles in byte by byte is
// assembled, not refused or released early.
func TestSlowHeaderBlock(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	c := dial(t, ts.addr)
	req := "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
	for i := range len(req) {
		c.Write([]byte{req[i]})
		time.Sleep(time.Millisecond)
	}
	if resp, body := readResponse(t, bufio.NewReader(c)); resp.StatusCode != 200 || body != "POST /slow 2" {
		t.Fatalf("response: %d %q", resp.StatusCode, body)
	}
}

// TestBadChunk: malformed chunk framing inside a body ends the input; the
// handler's body read fails and the connection is closed.
func TestBadChunk(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"bad size", "5\r\nhello\r\nzz\r\n"},
		{"bare LF chunk line", "5\nhello\r\n0\r\n\r\n"},
		{"missing CRLF after data", "5\r\nhelloXX0\r\n\r\n"},
		{"obs-fold trailer", "0\r\nX: a\r\n b\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{}, nil)
			c := dial(t, ts.addr)
			io.WriteString(c, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.body+
				"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(c)
			if resp, _ := readResponse(t, br); resp.StatusCode != 400 {
				t.Errorf("status = %d, want the handler's 400", resp.StatusCode)
			}
			expectClosed(t, c, br)
			got := ts.seen()
			if len(got) != 1 || !strings.HasPrefix(got[0].body, "read error") {
				t.Fatalf("handler saw %+v, want one failed body read", got)
			}
		})
	}
}

// TestPassthroughAfterHijack: after a protocol switch the bytes are not HTTP,
// and Passthrough lets them through.
func TestPassthroughAfterHijack(t *testing.T) {
	ts := startServer(t, Options{}, func(ts *testServer, w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		if !Passthrough(conn) {
			t.Error("Passthrough: not a guarded conn")
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(brw, buf, len(echoFrame))
		conn.Write(buf[:n])
	})
	c := dial(t, ts.addr)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v, %v; want 101", resp, err)
	}
	io.WriteString(c, echoFrame)
	got := make([]byte, len(echoFrame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != echoFrame {
		t.Fatalf("echo = %q, %v; want %q", got, err, echoFrame)
	}
}

const echoFrame = "\x81\x05hello \x00\n\n not HTTP\r\n\r\n"

// TestH2CPriorKnowledge: the HTTP/2 connection preface passes untouched.
func TestH2CPriorKnowledge(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, Options{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(l)
	defer srv.Close()

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + inner.Addr().String() + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0 /h2" {
		t.Fatalf("body = %q, want HTTP/2.0 /h2", body)
	}
}

// TestH2CEnabledStillGuards: with unencrypted HTTP/2 enabled, net/http first
// peeks at 14 bytes to look for the preface; HTTP/1.1 is still guarded.
func TestH2CEnabledStillGuards(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{l: NewListener(inner, Options{}).(*Listener), addr: inner.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { defaultHandler(ts, w, r) })}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ts.l)
	defer srv.Close()
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{hostileCases[0].req, 400},
	} {
		c := dial(t, ts.addr)
		io.WriteString(c, tc.req)
		if resp, body := readResponse(t, bufio.NewReader(c)); resp.StatusCode != tc.want {
			t.Errorf("%q: %d %q, want %d", tc.req[:10], resp.StatusCode, body, tc.want)
		}
	}
}

func TestRejectionForgery(t *testing.T) {
	l := newListener(nil, Options{})
	other := newListener(nil, Options{})
	mk := func(nonce string, n int) *http.Request {
		r, _ := http.NewRequest("GET", "http://x"+RejectionPath, nil)
		for range n {
			r.Header.Add(hdrGuard, nonce)
		}
		r.Header.Set(hdrStatus, "431")
		r.Header.Set(hdrReason, ReasonHeadersTooLarge)
		return r
	}
	if _, ok := l.Rejection(mk(l.nonce, 1)); !ok {
		t.Error("genuine marker not recognised")
	}
	for name, r := range map[string]*http.Request{
		"no marker":           mk("", 0),
		"other listener":      mk(other.nonce, 1),
		"prefix of the nonce": mk(l.nonce[:32], 1),
		"nonce twice":         mk(l.nonce, 2),
		"upper-case nonce":    mk(strings.ToUpper(l.nonce), 1),
	} {
		if _, ok := l.Rejection(r); ok {
			t.Errorf("%s: Rejection = true", name)
		}
	}
}

func TestStripGuardHeaders(t *testing.T) {
	h := http.Header{
		"X-Keyhole-Guard": {"a"}, "X-Keyhole-Guard-Status": {"400"}, "X-Keyhole-Guard-Anything": {"b"},
		"x-keyhole-guard-lower": {"c"}, "X-Keyhole-Token": {"keep"}, "Accept": {"keep"},
	}
	StripGuardHeaders(h)
	if len(h) != 2 || h.Get("Accept") != "keep" || h.Get("X-Keyhole-Token") != "keep" {
		t.Errorf("after StripGuardHeaders: %v", h)
	}
}

func TestSyntheticTarget(t *testing.T) {
	l := newListener(nil, Options{})
	c := newConn(nil, l)
	target := []byte("/a b\x7f\x80%2e" + strings.Repeat("x", 2000))
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.synthetic(400, ReasonBadHeaderSyntax, []byte("GET"), target))))
	if err != nil {
		t.Fatal(err)
	}
	rej, ok := l.Rejection(req)
	if !ok {
		t.Fatal("not recognised")
	}
	want := "/a%20b%7F%80%2e" + strings.Repeat("x", maxReportedTarget-len("/a b\x7f\x80%2e"))
	if rej.Target != want || rej.Method != "GET" || rej.Status != 400 || !req.Close {
		t.Errorf("got %+v (close %v), want target %q", rej, req.Close, want)
	}
}

// TestDeadlinesKeepState: a read deadline that fires in the middle of a
// header block (net/http's abortPendingRead does this all the time) must not
// lose the bytes read so far.
func TestDeadlinesKeepState(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newConn(a, newListener(nil, Options{}))
	go io.WriteString(b, "GET /a HTTP/1.1\r\nHo")
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); n != 0 || !isTimeout(err) {
		t.Fatalf("Read = %d, %v; want a timeout and nothing released", n, err)
	}
	c.SetReadDeadline(time.Time{})
	go io.WriteString(b, "st: x\r\n\r\n")
	var got []byte
	for !bytes.HasSuffix(got, []byte("\r\n\r\n")) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" {
		t.Fatalf("released %q", got)
	}
}

func TestCloseWrite(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, Options{})
	defer l.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		io.WriteString(c, "bye")
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Error(err)
		}
	}()
	c := dial(t, inner.Addr().String())
	got, err := io.ReadAll(c) // ends only if the FIN was sent
	if err != nil || string(got) != "bye" {
		t.Errorf("ReadAll = %q, %v", got, err)
	}
	wg.Wait()
	if err := newConn(nil, l.(*Listener)).CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite without support = %v", err)
	}
}
