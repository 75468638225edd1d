package httpfront

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// benchServer serves a fixed small response on loopback, through the guard or
// not, and returns its address.
func benchServer(b *testing.B, guarded bool) string {
	b.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var l net.Listener = inner
	if guarded {
		l = NewListener(inner, Options{})
	}
	body := []byte(`{"ok":true}`)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header()["Content-Type"] = []string{"application/json"}
			w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
			w.Write(body)
		}),
		MaxHeaderBytes: DefaultMaxHeaderBytes,
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return inner.Addr().String()
}

// roundTrips sends req on one keep-alive connection b.N times and reads each
// response, whose length is learnt from the first one.
func roundTrips(b *testing.B, addr string, req []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cr := &countingReader{r: c}
	br := bufio.NewReader(cr)
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("first response: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	// Every response has the same length (the Date header's is fixed).
	buf := make([]byte, cr.n-int64(br.Buffered()))
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			b.Fatal(err)
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
			b.Fatalf("response %q", buf)
		}
	}
}

var benchGET = []byte("GET /v1/models HTTP/1.1\r\nHost: gateway.local\r\nUser-Agent: bench/1.0\r\n" +
	"Authorization: Bearer kh_0123456789abcdefghijklmnopqrstuvwxyzABCD\r\nAccept: application/json\r\n" +
	"Accept-Encoding: gzip\r\n\r\n")

// BenchmarkGuardedGET and BenchmarkUnguardedGET measure one keep-alive GET
// round trip on loopback, client and server in the same process, with and
// without the guard; the difference is the guard's cost per request.
func BenchmarkGuardedGET(b *testing.B) { roundTrips(b, benchServer(b, true), benchGET) }

func BenchmarkUnguardedGET(b *testing.B) { roundTrips(b, benchServer(b, false), benchGET) }

// 256 KiB upload: the body fast path, Content-Length and chunked.
var (
	benchBody       = strings.Repeat("x", 256<<10)
	benchPOST       = []byte("POST /v1/files HTTP/1.1\r\nHost: gateway.local\r\nContent-Length: " + strconv.Itoa(len(benchBody)) + "\r\n\r\n" + benchBody)
	benchChunkedPUT = func() []byte {
		var b bytes.Buffer
		b.WriteString("PUT /v1/files HTTP/1.1\r\nHost: gateway.local\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < len(benchBody); i += 16 << 10 {
			b.WriteString("4000\r\n" + benchBody[i:i+16<<10] + "\r\n")
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}()
)

func BenchmarkGuardedUpload(b *testing.B)   { roundTrips(b, benchServer(b, true), benchPOST) }
func BenchmarkUnguardedUpload(b *testing.B) { roundTrips(b, benchServer(b, false), benchPOST) }

func BenchmarkGuardedChunkedUpload(b *testing.B) {
	roundTrips(b, benchServer(b, true), benchChunkedPUT)
}

func BenchmarkUnguardedChunkedUpload(b *testing.B) {
	roundTrips(b, benchServer(b, false), benchChunkedPUT)
}

// BenchmarkParseHeader is the guard's header parser alone.
func BenchmarkParseHeader(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchGET)))
	var h headerParser
	for b.Loop() {
		h.reset(DefaultMaxHeaderBytes, false)
		if h.parse(benchGET) != accepted {
			b.Fatal("refused")
		}
	}
}
