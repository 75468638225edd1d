package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

var lookup = os.Getenv

// target is one thing to load: a URL with its token and request shape.
type target struct {
	name   string
	url    string
	token  string
	method string
	body   []byte
	ctype  string
}

// result of one load run.
type result struct {
	n, errs int
	dur     time.Duration
	lat     []time.Duration
}

func (r result) rps() float64 { return float64(r.n) / r.dur.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func newClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}}
}

func (t target) do(c *http.Client) error {
	var body io.Reader
	if t.body != nil {
		body = bytes.NewReader(t.body)
	}
	req, err := http.NewRequest(t.method, t.url, body)
	if err != nil {
		return err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	if t.ctype != "" {
		req.Header.Set("Content-Type", t.ctype)
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != 200 {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

// closedLoop: conns workers, each sending its next request when the
// previous one is answered, for d. Max throughput.
func closedLoop(t target, conns int, d time.Duration) result {
	c := newClient(conns)
	defer c.CloseIdleConnections()
	// warm the connections up
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); t.do(c) }()
	}
	wg.Wait()
	var n, errs atomic.Int64
	lats := make([][]time.Duration, conns)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := t.do(c); err != nil {
					errs.Add(1)
					continue
				}
				lats[i] = append(lats[i], time.Since(t0))
				n.Add(1)
			}
		}(i)
	}
	wg.Wait()
	r := result{n: int(n.Load()), errs: int(errs.Load()), dur: time.Since(start)}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	return r
}

// openLoop sends requests at a fixed rate whatever the answers do, and
// measures each latency from when it was due (no coordinated omission).
func openLoop(t target, rate float64, d time.Duration) result {
	const workers = 64
	c := newClient(workers)
	defer c.CloseIdleConnections()
	for i := 0; i < 8; i++ {
		t.do(c)
	}
	due := make(chan time.Time, 4096)
	var mu sync.Mutex
	var r result
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range due {
				err := t.do(c)
				l := time.Since(at)
				mu.Lock()
				if err != nil {
					r.errs++
				} else {
					r.n++
					r.lat = append(r.lat, l)
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		due <- at
	}
	close(due)
	wg.Wait()
	r.dur = time.Since(start)
	return r
}

func loadCmd(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "", "URL")
	tok := fs.String("token", "", "bearer token")
	conns := fs.Int("conns", 50, "connections (closed loop)")
	rate := fs.Float64("rate", 0, "fixed rate in requests/s (open loop); 0: closed loop")
	d := fs.Duration("duration", 10*time.Second, "duration")
	fs.Parse(args)
	t := target{name: "load", url: *url, token: *tok, method: "GET"}
	var r result
	if *rate > 0 {
		r = openLoop(t, *rate, *d)
	} else {
		r = closedLoop(t, *conns, *d)
	}
	fmt.Printf("%d requests, %d errors, %.0f req/s, p50 %v p90 %v p99 %v\n", r.n, r.errs, r.rps(), r.pct(50), r.pct(90), r.pct(99))
	return nil
}
