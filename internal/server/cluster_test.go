package server

// Several nodes on one PostgreSQL (SPEC §10, issue 6), each a real node
// started with Run in this process, talking over TCP:
//
//   - TestClusterPropagation measures how long a rotation, a revocation and
//     a rule change made on node A take to apply on nodes B and C, with
//     LISTEN/NOTIFY and with the poll alone (the measurements are logged;
//     only the SPEC bound is asserted);
//   - TestClusterRedisLimits: a rate limit and a quota hold for the sum of
//     the traffic to all nodes, and fail closed while Redis is unreachable;
//   - TestClusterRefreshTokenLock: three nodes refreshing one rotating
//     OAuth refresh token never spend a spent one, and do not refresh in
//     turn forever;
//   - TestClusterPostgresRestart (fault): PostgreSQL restarted under
//     traffic.
//
// They need KEYHOLE_TEST_POSTGRES (and KEYHOLE_TEST_REDIS for the Redis
// test); without them they are skipped, saying so. KEYHOLE_MASTER_KEY and
// KEYHOLE_ADMIN_TOKEN are set with t.Setenv: every node of a cluster
// shares them, and these tests do not run in parallel.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/redislimit/redistest"
	"github.com/keyhole-gw/keyhole/internal/store/postgres/pgtest"
)

// startCluster starts k nodes on the PostgreSQL store at storeURL (a
// schema of the test's own when empty), named node-a, node-b…
func startCluster(t *testing.T, k int, storeURL string, mods ...func(*Config)) []*testNode {
	t.Helper()
	if storeURL == "" {
		storeURL = pgtest.URL(t)
	}
	key := make([]byte, 32)
	rand.Read(key)
	admin := "bootstrap-" + randString(40)
	t.Setenv("KEYHOLE_MASTER_KEY", base64.StdEncoding.EncodeToString(key))
	t.Setenv("KEYHOLE_ADMIN_TOKEN", admin)
	var nodes []*testNode
	for i := range k {
		n := &testNode{t: t, dir: t.TempDir(), adminToken: admin}
		id := fmt.Sprintf("node-%c", 'a'+i)
		ms := append([]func(*Config){func(c *Config) {
			c.Store, c.DataDir, c.NodeID, c.LogLevel = storeURL, n.dir, id, "info"
		}}, mods...)
		for attempt := 0; ; attempt++ {
			err := n.start(ms)
			if err == nil {
				break
			}
			if attempt < 2 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			t.Fatalf("%s did not start: %v\nstdout:\n%s\nstderr:\n%s", id, err, n.stdout.String(), tail(n.stderr.String(), 8<<10))
		}
		t.Cleanup(func() {
			n.stop()
			n.mu.Lock()
			ups := append([]*upstream(nil), n.ups...)
			n.mu.Unlock()
			for _, u := range ups {
				u.Close()
			}
			n.checkLeaks()
			if t.Failed() {
				t.Logf("%s stdout:\n%s\n%s stderr (last 8 KiB):\n%s", id, n.stdout.String(), id, tail(n.stderr.String(), 8<<10))
			}
		})
		nodes = append(nodes, n)
	}
	return nodes
}

// probeClient sends the measuring requests: they are not recorded by the
// node harness (thousands of them would make its leak check slow).
var probeClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}

type probeResp struct {
	status int
	code   string
	hdr    http.Header
}

func probe(n *testNode, path, tok string) (probeResp, error) {
	req, _ := http.NewRequest("GET", "http://"+n.gw+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := probeClient.Do(req)
	if err != nil {
		return probeResp{}, err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	return probeResp{status: res.StatusCode, code: e.Error.Code, hdr: res.Header}, nil
}

// lightUpstream answers 200 with the index of the bearer key it was sent
// (keys[i] → "X-Key: i"), keeping nothing.
func lightUpstream(t *testing.T, keyIndex func(string) int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Key", strconv.Itoa(keyIndex(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(s.Close)
	return s
}

// waitApplied probes node until ok says the change applied, returning how
// long after since that was first seen.
func waitApplied(t *testing.T, n *testNode, since time.Time, bound time.Duration, path, tok string, ok func(probeResp) bool) time.Duration {
	deadline := since.Add(bound)
	for {
		r, err := probe(n, path, tok)
		if err == nil && ok(r) {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Errorf("a change was not applied on %s within %v (last: %d %s, %v)", n.gw, bound, r.status, r.code, err)
			return bound
		}
		time.Sleep(time.Millisecond)
	}
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// TestClusterPropagation: rotate, revoke and change a rule on node A, and
// measure how long until B and C apply each (SPEC §10: within 1 s), over
// KEYHOLE_CLUSTER_CHANGES changes of each kind (default 100; 20 with
// -short), with LISTEN/NOTIFY and with the version poll alone.
func TestClusterPropagation(t *testing.T) {
	pgtest.Base(t)
	changes := 100
	if testing.Short() {
		changes = 20
	}
	if v, err := strconv.Atoi(os.Getenv("KEYHOLE_CLUSTER_CHANGES")); err == nil && v > 0 {
		changes = v
	}
	for _, mode := range []struct {
		name     string
		pollOnly bool
		bound    time.Duration // p99 that fails the test
	}{
		{"notify", false, time.Second},
		{"poll-only", true, 500*time.Millisecond + time.Second},
	} {
		t.Run(mode.name, func(t *testing.T) {
			nodes := startCluster(t, 3, "", func(c *Config) { c.ConfigPollOnly = mode.pollOnly })
			a, others := nodes[0], nodes[1:]
			keys := []string{canary()}
			var kmu sync.Mutex
			up := lightUpstream(t, func(v string) int {
				kmu.Lock()
				defer kmu.Unlock()
				return slices.Index(keys, v)
			})
			a.secret("rot-key", keys[0])
			a.proxyAt("rot", up.URL, map[string]any{"auth": map[string]any{"type": "bearer", "secret": "rot-key"}, "rules": []any{allowAll}})
			a.agent("bot")
			tok, _ := a.token("bot", "1h", "rot")
			type issued struct{ tok, id string }
			var victims []issued
			for range changes {
				tk, id := a.token("bot", "1h", "rot")
				victims = append(victims, issued{tk, id})
			}
			for _, n := range others {
				waitApplied(t, n, time.Now(), 10*time.Second, "/rot/key", victims[len(victims)-1].tok, func(r probeResp) bool { return r.status == 200 })
			}

			lat := map[string][]time.Duration{}
			var lmu sync.Mutex
			// change makes one change on A (the admin call returns once A
			// applies it) and measures until B and C apply it too.
			change := func(kind, method, path string, body any, want int, probePath, probeTok string, ok func(probeResp) bool) {
				if r := a.admin(method, path, body); r.status != want {
					t.Errorf("%s %s: %s", method, path, r)
					return
				}
				since := time.Now()
				var wg sync.WaitGroup
				for _, n := range others {
					wg.Go(func() {
						d := waitApplied(t, n, since, 10*time.Second, probePath, probeTok, ok)
						lmu.Lock()
						lat[kind] = append(lat[kind], d)
						lmu.Unlock()
					})
				}
				wg.Wait()
			}
			for i := range changes {
				if mode.pollOnly {
					// Changes come at any moment of the poll's cycle, not
					// right after the tick that saw the previous one.
					time.Sleep(time.Duration(mrand.Int64N(int64(500 * time.Millisecond))))
				}
				var wg sync.WaitGroup
				// Rotation: B and C send the new key.
				wg.Go(func() {
					v := canary()
					a.plant(v)
					kmu.Lock()
					keys = append(keys, v)
					want := strconv.Itoa(len(keys) - 1)
					kmu.Unlock()
					change("rotate", "PUT", "/secrets/rot-key", map[string]any{"value": v}, http.StatusOK,
						"/rot/key", tok, func(r probeResp) bool { return r.status == 200 && r.hdr.Get("X-Key") == want })
				})
				// Revocation: B and C refuse the token.
				wg.Go(func() {
					change("revoke", "DELETE", "/tokens/"+victims[i].id, nil, http.StatusOK,
						"/rot/key", victims[i].tok, func(r probeResp) bool { return r.status == 401 && r.code == "token_revoked" })
				})
				// Rule change: a deny rule comes, or goes.
				wg.Go(func() {
					if i%2 == 0 {
						change("rule", "POST", "/proxies/rot/rules", rule("block", "deny", "GET /probe"), http.StatusCreated,
							"/rot/probe", tok, func(r probeResp) bool { return r.status == 403 })
					} else {
						change("rule", "DELETE", "/proxies/rot/rules/block", nil, http.StatusOK,
							"/rot/probe", tok, func(r probeResp) bool { return r.status == 200 })
					}
				})
				wg.Wait()
			}
			for _, kind := range []string{"rotate", "revoke", "rule"} {
				ds := lat[kind]
				p50, p99, worst := pct(ds, 0.50), pct(ds, 0.99), pct(ds, 1)
				t.Logf("propagation %-9s %-6s: p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (%d changes × 2 nodes)",
					mode.name, kind, ms(p50), ms(p99), ms(worst), changes)
				if p99 > mode.bound {
					t.Errorf("%s %s: p99 %v, want ≤ %v", mode.name, kind, p99, mode.bound)
				}
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// scrape reads the node's /metrics.
func scrape(t *testing.T, n *testNode) string {
	res, err := probeClient.Get("http://" + n.adm + "/metrics")
	if err != nil {
		t.Errorf("GET /metrics: %v", err)
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestClusterRedisLimits: with --redis, a rate limit and a quota hold for
// the sum of the traffic to three nodes (exactly N pass); while Redis is
// unreachable, requests under a limit or quota are refused (fail closed)
// and others pass; then service resumes by itself.
func TestClusterRedisLimits(t *testing.T) {
	pgtest.Base(t)
	rp := redistest.NewProxy(t)
	redisURL := redistest.WithPrefix(t, rp.URL(t))
	nodes := startCluster(t, 3, "", func(c *Config) { c.Redis = redisURL })
	a := nodes[0]
	up := lightUpstream(t, func(string) int { return 0 })
	a.secret("k", canary())
	const limit, quotaN = 40, 25
	a.proxyAt("limited", up.URL, map[string]any{"auth": map[string]any{"type": "bearer", "secret": "k"},
		"rules": []any{map[string]any{"name": "capped", "effect": "allow", "paths": []string{"/**"}, "rate_limit": fmt.Sprintf("%d/m", limit)}}})
	a.proxyAt("budget", up.URL, map[string]any{"auth": map[string]any{"type": "bearer", "secret": "k"}, "rules": []any{allowAll},
		"quotas": []any{map[string]any{"name": "monthly", "per": "month", "limit": quotaN}}})
	a.proxyAt("free", up.URL, map[string]any{"auth": map[string]any{"type": "bearer", "secret": "k"}, "rules": []any{allowAll}})
	a.agent("bot")
	tok, _ := a.token("bot", "1h", "limited", "budget", "free")
	for _, n := range nodes {
		waitApplied(t, n, time.Now(), 10*time.Second, "/free/x", tok, func(r probeResp) bool { return r.status == 200 })
	}

	// N requests at once, spread over the three nodes.
	spread := func(path string, total int) map[string]int {
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for g := range 15 {
			wg.Go(func() {
				for range total / 15 {
					r, err := probe(nodes[g%3], path, tok)
					key := strconv.Itoa(r.status) + " " + r.code
					if err != nil {
						key = "error " + err.Error()
					}
					mu.Lock()
					got[key]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return got
	}
	got := spread("/limited/x", 150)
	t.Logf("rate limit %d/m, 150 requests over 3 nodes: %v", limit, got)
	if got["200 "] != limit || got["429 rate_limited"] != 150-limit {
		t.Errorf("rate limit %d/m over 3 nodes: %v; want exactly %d allowed, the rest 429 rate_limited", limit, got, limit)
	}
	got = spread("/budget/x", 90)
	t.Logf("quota %d per month, 90 requests over 3 nodes: %v", quotaN, got)
	if got["200 "] != quotaN || got["429 quota_exceeded"] != 90-quotaN {
		t.Errorf("quota of %d over 3 nodes: %v; want exactly %d allowed, the rest 429 quota_exceeded", quotaN, got, quotaN)
	}

	// Redis unreachable: fail closed for limited routes only.
	rp.Cut()
	for i, n := range nodes {
		r, _ := probe(n, "/limited/x", tok)
		if r.status != 429 || r.hdr.Get("Retry-After") == "" {
			t.Errorf("node %d, Redis unreachable, a rate-limited route: %d %s (want 429 with Retry-After)", i, r.status, r.code)
		}
		if r, _ := probe(n, "/free/x", tok); r.status != 200 {
			t.Errorf("node %d, Redis unreachable, a route without limits: %d %s (want 200)", i, r.status, r.code)
		}
		if r, _ := probe(n, "/-/ready", tok); r.status != 200 {
			t.Errorf("node %d: /-/ready %d while only Redis is down (want 200: readiness is the audit store's)", i, r.status)
		}
	}
	if m := scrape(t, a); !strings.Contains(m, "keyhole_redis_up 0") || !strings.Contains(m, `keyhole_redis_refused_total{what="rate_limit"}`) {
		t.Errorf("metrics while Redis is unreachable lack keyhole_redis_up 0 and keyhole_redis_refused_total:\n%s", grepLines(m, "keyhole_redis"))
	}
	rp.Restore()
	// A fresh limit (another rule) works again on every node.
	a.must(http.StatusCreated, "POST", "/proxies/free/rules", map[string]any{"name": "after", "effect": "allow", "paths": []string{"/after/**"}, "rate_limit": "1000/m"})
	for _, n := range nodes {
		waitApplied(t, n, time.Now(), 15*time.Second, "/free/after/x", tok, func(r probeResp) bool { return r.status == 200 })
	}
}

// TestClusterRefreshTokenLock: three nodes share one OAuth refresh-token
// grant whose provider rotates the refresh token on every use, revokes
// the used one, and issues access tokens that live 2 s. Under traffic on
// every node, no node ever sends a refresh token that another node
// already spent (the advisory lock, and the re-read of the rotated
// secret), every request succeeds, and the nodes do not refresh in turn
// forever (a node keeps its access token when another rotates the refresh
// token).
func TestClusterRefreshTokenLock(t *testing.T) {
	pgtest.Base(t)
	nodes := startCluster(t, 3, "")
	a := nodes[0]
	var mu sync.Mutex
	valid := map[string]bool{"rt_canary_first": true}
	var grants, reused atomic.Int64
	clientSecret := "cs_canary_" + randString(20)
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Form.Get("client_secret") != clientSecret || r.Form.Get("grant_type") != "refresh_token" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		rt := r.Form.Get("refresh_token")
		if !valid[rt] {
			reused.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		grants.Add(1)
		delete(valid, rt)
		next := "rt_canary_" + randString(20)
		valid[next] = true
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at_canary_" + randString(20), "token_type": "Bearer",
			"expires_in": 2, "refresh_token": next})
	}))
	defer prov.Close()
	up := lightUpstream(t, func(string) int { return 0 })
	a.secret("grant", map[string]string{"client_id": "client-" + randString(12), "client_secret": clientSecret, "refresh_token": "rt_canary_first"})
	a.proxyAt("g", up.URL, map[string]any{"auth": map[string]any{"type": "oauth2_refresh_token", "secret": "grant",
		"token_url": prov.URL + "/token", "auth_style": "body"}, "rules": []any{allowAll}})
	a.agent("bot")
	tok, _ := a.token("bot", "1h", "g")
	for _, n := range nodes[1:] {
		waitApplied(t, n, time.Now(), 10*time.Second, "/g/x", tok, func(r probeResp) bool { return r.status == 200 })
	}
	const run = 8 * time.Second
	end := time.Now().Add(run)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 9 {
		wg.Go(func() {
			for time.Now().Before(end) {
				r, err := probe(nodes[g%3], "/g/x", tok)
				if err == nil && r.status == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
					t.Logf("node %d: %d %s %v", g%3, r.status, r.code, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	m := a.must(http.StatusOK, "GET", "/secrets/grant", nil)
	t.Logf("%v of traffic on 3 nodes: %d requests ok, %d failed; %d refresh grants, %d spent refresh tokens sent; secret at version %s",
		run, ok.Load(), failed.Load(), grants.Load(), reused.Load(), str(m, "version"))
	if reused.Load() != 0 {
		t.Errorf("nodes sent %d refresh tokens that another node had already spent", reused.Load())
	}
	if failed.Load() != 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
	// Each node refreshes once a second (2 s tokens, refreshed at half
	// their life); refreshing in turn would be one grant per rotation.
	if max := int64(run/time.Second+3) * 3; grants.Load() > max {
		t.Errorf("%d refresh grants in %v on 3 nodes: more than %d, nodes refresh because others did", grants.Load(), run, max)
	}
}

// TestClusterPostgresRestart (fault): three nodes on a PostgreSQL cluster
// of the test's own (pg_createcluster, so that the shared test server is
// not disturbed), under traffic; PostgreSQL is restarted (pg_ctlcluster
// restart), then stopped for 2 s and started. While it is down, allowed
// requests get 503 audit_unavailable and /-/ready 503; every request that
// reached the upstream has its record; every node recovers by itself, and
// every node's chain verifies.
func TestClusterPostgresRestart(t *testing.T) {
	pgtest.Base(t)
	ver, storeURL := privateCluster(t)
	nodes := startCluster(t, 3, storeURL)
	a := nodes[0]
	var umu sync.Mutex
	reached := map[string]bool{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		umu.Lock()
		reached[r.Header.Get("X-Keyhole-Request-Id")] = true
		umu.Unlock()
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	a.secret("k", canary())
	a.proxyAt("p", up.URL, map[string]any{"auth": map[string]any{"type": "bearer", "secret": "k"}, "rules": []any{allowAll}})
	a.agent("bot")
	tok, _ := a.token("bot", "1h", "p")
	for _, n := range nodes {
		waitApplied(t, n, time.Now(), 10*time.Second, "/p/x", tok, func(r probeResp) bool { return r.status == 200 })
	}

	var down atomic.Bool // PostgreSQL is stopped (set after the stop returned, cleared before the start)
	var mu sync.Mutex
	during := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var total atomic.Int64
	for g := range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				wasDown := down.Load()
				r, err := probe(nodes[g%3], "/p/x", tok)
				total.Add(1)
				if wasDown && down.Load() {
					mu.Lock()
					if err != nil {
						during["error"]++
					} else {
						during[strconv.Itoa(r.status)+" "+r.code]++
					}
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	pgctl := func(args ...string) {
		out, err := exec.Command("pg_ctlcluster", append([]string{"--skip-systemctl-redirect", ver, "khfault"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_ctlcluster %v: %v\n%s", args, err, out)
		}
	}
	time.Sleep(time.Second)
	t0 := time.Now()
	pgctl("restart")
	t.Logf("pg_ctlcluster restart took %v", time.Since(t0))
	time.Sleep(2 * time.Second)
	pgctl("stop")
	down.Store(true)
	readyDuring := make([]int, len(nodes))
	time.Sleep(time.Second)
	for i, n := range nodes {
		r, _ := probe(n, "/-/ready", "")
		readyDuring[i] = r.status
	}
	time.Sleep(time.Second)
	down.Store(false)
	pgctl("start")
	restarted := time.Now()
	// Every node recovers by itself.
	for i, n := range nodes {
		d := waitApplied(t, n, restarted, 30*time.Second, "/p/x", tok, func(r probeResp) bool { return r.status == 200 })
		t.Logf("node %d answers 200 again %v after PostgreSQL started", i, d.Round(time.Millisecond))
		waitApplied(t, n, restarted, 30*time.Second, "/-/ready", "", func(r probeResp) bool { return r.status == 200 })
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests in all; while PostgreSQL was stopped: %v; /-/ready then: %v", total.Load(), during, readyDuring)
	for k, v := range during {
		if k != "503 audit_unavailable" {
			t.Errorf("while PostgreSQL was stopped, %d requests got %q (want 503 audit_unavailable)", v, k)
		}
	}
	if during["503 audit_unavailable"] == 0 {
		t.Error("no request was refused while PostgreSQL was stopped")
	}
	for i, s := range readyDuring {
		if s != 503 {
			t.Errorf("node %d: /-/ready %d while PostgreSQL was stopped, want 503", i, s)
		}
	}
	// No record lost for any request that reached the upstream.
	umu.Lock()
	ids := make([]string, 0, len(reached))
	for id := range reached {
		ids = append(ids, id)
	}
	umu.Unlock()
	missing := 0
	for _, id := range ids {
		if r := a.admin("GET", "/logs/"+url.PathEscape(id), nil); r.status != 200 {
			missing++
			if missing <= 5 {
				t.Errorf("request %s reached the upstream but has no record: %s", id, r)
			}
		}
	}
	t.Logf("%d requests reached the upstream; %d have no record", len(ids), missing)
	v := a.must(http.StatusOK, "POST", "/audit/verify", nil)
	if v["ok"] != true || str(v, "nodes") != "3" {
		t.Errorf("audit verify across the nodes: %v", v)
	}
}

// privateCluster creates a PostgreSQL cluster of the test's own on a free
// port (pg_createcluster, trust authentication), started, and drops it at
// the end. It needs root and Debian's postgresql-common; otherwise the test
// is skipped, saying so.
func privateCluster(t *testing.T) (version, storeURL string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("PostgreSQL fault test skipped: it creates, restarts and drops a PostgreSQL cluster of its own with pg_createcluster, which needs root")
	}
	if _, err := exec.LookPath("pg_createcluster"); err != nil {
		t.Skip("PostgreSQL fault test skipped: pg_createcluster (Debian's postgresql-common) is not installed")
	}
	ents, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(ents) == 0 {
		t.Skip("PostgreSQL fault test skipped: no /etc/postgresql/VERSION")
	}
	version = ents[len(ents)-1].Name()
	exec.Command("pg_dropcluster", "--stop", version, "khfault").Run() // a leftover of an interrupted run
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	out, err := exec.Command("pg_createcluster", version, "khfault", "-p", port, "--start", "--", "--auth=trust").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_createcluster: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("pg_dropcluster", "--stop", version, "khfault").CombinedOutput(); err != nil {
			t.Errorf("pg_dropcluster: %v\n%s", err, out)
		}
	})
	return version, "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable"
}
