package main

import (
	"crypto/subtle"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// upstreamCmd serves the benchmark's upstream API: /small (a small JSON
// document), /big?n=BYTES, /sse (ten events 1 ms apart), /echo (reads the
// request body and answers its size).
func upstreamCmd(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9001", "address")
	fs.Parse(args)
	small := []byte(`{"id":"cus_123","object":"customer","email":"ann@example.com","balance":0,"currency":"usd","livemode":false}`)
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(small)))
		w.Write(small)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if n <= 0 || n > len(big) {
			n = 1 << 20
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(big[:n])
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 10; i++ {
			fmt.Fprintf(w, "data: {\"i\":%d}\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"received":%d}`, n)
	})
	srv := &http.Server{Addr: *listen, Handler: mux}
	return srv.ListenAndServe()
}

// baselineCmd is the bare reverse proxy keyhole is compared with: the same
// token check (a constant-time compare of a bearer token) and header swap
// (the agent's Authorization replaced by the upstream key), nothing else.
func baselineCmd(args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9002", "address")
	upstream := fs.String("upstream", "http://127.0.0.1:9001", "upstream base URL")
	fs.Parse(args)
	tok := []byte(getenv("BENCH_TOKEN", "kh_benchtoken"))
	key := getenv("BENCH_UPSTREAM_KEY", benchUpstreamKey)
	u, err := url.Parse(*upstream)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/bench")
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Set("Authorization", "Bearer "+key)
		},
		Transport:     tr,
		FlushInterval: -1,
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		if subtle.ConstantTimeCompare(got, tok) != 1 {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func getenv(k, def string) string {
	if v := strings.TrimSpace(lookup(k)); v != "" {
		return v
	}
	return def
}
