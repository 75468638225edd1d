package server

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestConcurrentRequestsAllSucceedAndAreRecorded sends 1,000 requests at
// once through one proxy: every one must succeed with its own request id,
// reach the upstream carrying that id, and have its audit record (SPEC §6:
// one record per request; sync durability commits it before the response
// ends). It guards connection pooling (the default transport's two idle
// connections per host), the group-commit audit writer under contention,
// and per-request state shared through the request context (a race would
// show as a mismatched id or credential; run with -race).
func TestConcurrentRequestsAllSucceedAndAreRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 concurrent requests")
	}
	n := startNode(t)
	f := n.fx("load", nil, allowAll)
	f.up.on("/v1/echo-id", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Keyhole-Request-Id")+" "+r.Header.Get("Authorization"))
	})
	const N = 1000
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: N, MaxConnsPerHost: 0, DisableCompression: true}}
	defer client.CloseIdleConnections()

	var wg sync.WaitGroup
	start := make(chan struct{})
	type result struct {
		rid, body string
		status    int
		err       error
	}
	results := make([]result, N)
	for i := range N {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("GET", "http://"+n.gw+"/load/v1/echo-id?i="+itoa(i), nil)
			req.Header.Set("Authorization", "Bearer "+f.tok)
			res, err := client.Do(req)
			if err != nil {
				results[i].err = err
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			results[i] = result{rid: res.Header.Get("X-Keyhole-Request-Id"), body: string(b), status: res.StatusCode, err: err}
		}()
	}
	close(start)
	wg.Wait()

	rids := map[string]bool{}
	failed := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("request %d: %v", i, r.err)
		case r.status != http.StatusOK:
			t.Errorf("request %d: status %d: %s", i, r.status, clip(r.body))
		case r.rid == "" || rids[r.rid]:
			t.Errorf("request %d: request id %q missing or not unique", i, r.rid)
		case r.body != r.rid+" Bearer [REDACTED]": // the upstream echoed its id and credential
			t.Errorf("request %d: the upstream saw another request's id or credential: %q", i, clip(r.body))
		default:
			rids[r.rid] = true
			continue
		}
		if failed++; failed > 10 {
			t.Fatalf("too many failures")
		}
	}
	if got := f.up.count(); got != N {
		t.Errorf("the upstream received %d requests, want %d", got, N)
	}
	recs := n.logs("proxy=load&limit=1000")
	seen := map[string]bool{}
	for _, rec := range recs {
		id := str(rec, "id")
		seen[id] = true
		if rids[id] && (str(rec, "status") != "200" || str(rec, "decision") != "allow") {
			t.Errorf("record %s: status/decision %s/%s, want 200/allow", id, str(rec, "status"), str(rec, "decision"))
		}
	}
	missing := 0
	for rid := range rids {
		if !seen[rid] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d answered requests have no audit record", missing, len(rids))
	}
	if r := n.must(http.StatusOK, "POST", "/audit/verify", nil); r["ok"] != true {
		t.Errorf("the audit chain does not verify after concurrent writes: %v", r)
	}
}
