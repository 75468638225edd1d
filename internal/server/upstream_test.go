package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
)

// recReq is what an upstream saw of one request, byte for byte where the
// wire allows: RequestURI is the request target as it came.
type recReq struct {
	Method, Host, RequestURI, EscapedPath, RawQuery string
	Header                                          http.Header
	Trailer                                         http.Header
	Body                                            []byte
}

// upstream is a recording httptest server answering per route: an exact
// path, or a prefix when the route ends in "/"; the longest route wins.
// Unrouted paths answer 200 {"ok":true}. Handlers must return when the
// request's context is done, so that Close never waits on them.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []recReq
	routes map[string]http.HandlerFunc
}

// upstream starts a recording upstream that the node closes after it stops.
func (n *testNode) upstream() *upstream {
	u := &upstream{routes: map[string]http.HandlerFunc{}}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	n.mu.Lock()
	n.ups = append(n.ups, u)
	n.mu.Unlock()
	return u
}

func (u *upstream) on(route string, h http.HandlerFunc) {
	u.mu.Lock()
	u.routes[route] = h
	u.mu.Unlock()
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	u.mu.Lock()
	u.reqs = append(u.reqs, recReq{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, EscapedPath: r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: body})
	var h http.HandlerFunc
	best := -1
	for route, fn := range u.routes {
		if (route == r.URL.Path || strings.HasSuffix(route, "/") && strings.HasPrefix(r.URL.Path, route)) && len(route) > best {
			h, best = fn, len(route)
		}
	}
	u.mu.Unlock()
	if h == nil {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
		return
	}
	h(w, r)
}

func (u *upstream) requests() []recReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recReq(nil), u.reqs...)
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last() recReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return recReq{}
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) hostport() string { return strings.TrimPrefix(u.URL, "http://") }

// echoAll is the worst case for leaks: it repeats every request header in a
// response header X-Echo-<Name> and, with the method, target, raw and
// decoded query and body, in a JSON body.
func echoAll(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		w.Header().Set("X-Echo-"+k, strings.Join(r.Header[k], ", "))
	}
	w.Header().Set("X-Echo-Query", r.URL.RawQuery)
	w.Header().Set("X-Echo-Uri", r.RequestURI)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "uri": r.RequestURI, "host": r.Host,
		"query": r.URL.RawQuery, "params": r.URL.Query(), "headers": r.Header, "body": string(body)})
}

// reply answers status with the header pairs and body.
func reply(status int, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// gated writes each part and flushes it; before every part but the first
// it waits for a value on gate (or for the request to end). With a nil gate
// it does not wait.
func gated(contentType string, gate <-chan struct{}, parts ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		for i, p := range parts {
			if i > 0 && gate != nil {
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			io.WriteString(w, p)
			w.(http.Flusher).Flush()
		}
	}
}

// gzipped answers body gzip-encoded, whatever the request accepted.
func gzipped(contentType, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, body)
		zw.Close()
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Encoding", "gzip")
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		w.Write(b.Bytes())
	}
}

// hang waits until the request ends (the gateway gave up on it).
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
