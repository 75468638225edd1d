package httpfront

import (
	"bufio"
	"encoding/json"
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

// seen is what the test handler recorded about one request.
type seen struct {
	rej      Rejection
	rejected bool
	method   string
	target   string
	body     string
	trailer  http.Header
	guardHdr bool // an X-Keyhole-Guard* header was present before stripping
}

type testServer struct {
	l    *Listener
	addr string
	mu   sync.Mutex
	reqs []seen
}

// startServer serves h (or the default handler, which answers rejections the
// way the gateway does) on a guarded loopback listener.
func startServer(t testing.TB, opts Options, h func(ts *testServer, w http.ResponseWriter, r *http.Request)) *testServer {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{l: NewListener(inner, opts).(*Listener), addr: inner.Addr().String()}
	if h == nil {
		h = defaultHandler
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(ts, w, r) }),
		MaxHeaderBytes:    ts.l.maxHeader,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	go srv.Serve(ts.l)
	t.Cleanup(func() { srv.Close() })
	return ts
}

func (ts *testServer) record(s seen) {
	ts.mu.Lock()
	ts.reqs = append(ts.reqs, s)
	ts.mu.Unlock()
}

func (ts *testServer) seen() []seen {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]seen(nil), ts.reqs...)
}

// waitSeen waits until the handler has recorded n requests.
func (ts *testServer) waitSeen(t testing.TB, n int) []seen {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := ts.seen()
		if len(s) >= n || time.Now().After(deadline) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// defaultHandler answers a rejection like the gateway: its status, a JSON
// error, Connection: close. Other requests get 200 and their body back.
func defaultHandler(ts *testServer, w http.ResponseWriter, r *http.Request) {
	if rej, ok := ts.l.Rejection(r); ok {
		ts.record(seen{rej: rej, rejected: true})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		w.WriteHeader(rej.Status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": rej.Reason}})
		return
	}
	guardHdr := false
	for k := range r.Header {
		if strings.HasPrefix(k, "X-Keyhole-Guard") {
			guardHdr = true
		}
	}
	StripGuardHeaders(r.Header)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		ts.record(seen{method: r.Method, target: r.RequestURI, body: "read error: " + err.Error()})
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	ts.record(seen{method: r.Method, target: r.RequestURI, body: string(body), trailer: r.Trailer, guardHdr: guardHdr})
	fmt.Fprintf(w, "%s %s %d", r.Method, r.RequestURI, len(body))
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response and its body.
func readResponse(t testing.TB, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// expectClosed checks that the server ends the connection: the next read
// sees EOF (or a reset), not more data.
func expectClosed(t testing.TB, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := br.Read(make([]byte, 1))
	if n > 0 {
		t.Fatalf("connection still open: got more data")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s")
	}
}
