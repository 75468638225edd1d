package redislimit

import (
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/redislimit/redistest"
	"github.com/keyhole-gw/keyhole/internal/spec"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
)

var quiet = slog.New(slog.DiscardHandler)

// nodes opens n clients on one Redis and prefix, as n keyhole nodes
// would, sharing st for quota counters (nil: none).
func nodes(t *testing.T, url string, n int, st quota.Store) []*Redis {
	t.Helper()
	var out []*Redis
	for range n {
		r, err := New(t.Context(), Options{URL: url, Store: st, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out = append(out, r)
	}
	return out
}

// burst sends total Allow calls for key, spread over the nodes from many
// goroutines at once, and counts those allowed.
func burst(nodes []*Redis, key string, n int, window time.Duration, total int) (allowed int64, retries []time.Duration) {
	var ok atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	per := total / 30
	for g := range 30 {
		wg.Go(func() {
			r := nodes[g%len(nodes)]
			for range per {
				a, retry := r.Allow(key, n, window, time.Now())
				if a {
					ok.Add(1)
				} else {
					mu.Lock()
					retries = append(retries, retry)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return ok.Load(), retries
}

// TestExactLimitAcrossNodes: N requests per window, sent through three
// nodes at once, let exactly N through; every refusal says how long until
// the window has room (within the window), and once that time has passed,
// the window lets requests through again.
func TestExactLimitAcrossNodes(t *testing.T) {
	t.Parallel()
	rs := nodes(t, redistest.URL(t), 3, nil)
	const n, window = 50, 2 * time.Second
	start := time.Now()
	allowed, retries := burst(rs, "gh\x00read\x0050/4s\x00alice", n, window, 300)
	if time.Since(start) > window/2 {
		t.Skipf("the burst took %v: too slow to stay within one window", time.Since(start))
	}
	if allowed != n {
		t.Errorf("%d of 300 requests through 3 nodes allowed by a limit of %d: want exactly %d", allowed, n, n)
	}
	var longest time.Duration
	for _, r := range retries {
		if r <= 0 || r > window {
			t.Errorf("a refusal's retry-after is %v, want within (0, %v]", r, window)
		}
		longest = max(longest, r)
	}
	time.Sleep(longest + 10*time.Millisecond)
	if a, _ := rs[1].Allow("gh\x00read\x0050/4s\x00alice", n, window, time.Now()); !a {
		t.Error("after the longest retry-after had passed, the window still refused")
	}
	// Another key (another agent) has its own window.
	if a, _ := rs[2].Allow("gh\x00read\x0050/4s\x00bob", n, window, time.Now()); !a {
		t.Error("another agent's first request was refused")
	}
}

// TestSlidingNotFixed pins the sliding semantics: a request counts for
// one window's length after it came, not until a calendar slot ends; a
// refusal's retry-after is when the oldest counted request leaves. The
// expected values are computed from when each call was made, so a slow
// machine shifts them without failing the test.
func TestSlidingNotFixed(t *testing.T) {
	t.Parallel()
	rs := nodes(t, redistest.URL(t), 2, nil)
	const n, window = 3, time.Second
	key := "p\x00r\x003/s\x00a"
	type call struct {
		ok           bool
		retry        time.Duration
		before, done time.Time
	}
	do := func(r *Redis) call {
		c := call{before: time.Now()}
		c.ok, c.retry = r.Allow(key, n, window, time.Now())
		c.done = time.Now()
		return c
	}
	// within checks that a refusal's retry-after is when the request made
	// in allowed leaves the window (allowed + window), as seen from c.
	within := func(what string, c, allowed call) {
		lo, hi := allowed.before.Add(window).Sub(c.done), allowed.done.Add(window).Sub(c.before)
		if c.ok || c.retry < lo-5*time.Millisecond || c.retry > hi+5*time.Millisecond {
			t.Errorf("%s: allowed %v, retry %v; want refused, retry in [%v, %v]", what, c.ok, c.retry, lo, hi)
		}
	}
	t0 := time.Now()
	at := func(d time.Duration) { time.Sleep(time.Until(t0.Add(d))) }
	var allowed []call
	for i, d := range []time.Duration{0, 300 * time.Millisecond, 600 * time.Millisecond} {
		at(d)
		c := do(rs[i%2])
		if !c.ok {
			t.Fatalf("request %d at +%v refused", i, d)
		}
		allowed = append(allowed, c)
	}
	at(650 * time.Millisecond)
	if c := do(rs[0]); c.done.Before(allowed[0].before.Add(window)) {
		within("the window is full", c, allowed[0])
	}
	// Once the first has left the window (and before the second does),
	// one request more is allowed, and the next waits for the second.
	time.Sleep(time.Until(allowed[0].done.Add(window + 20*time.Millisecond)))
	c := do(rs[1])
	if c.done.After(allowed[1].before.Add(window)) {
		t.Skip("the machine is too slow for this test's timing (a call took over 200 ms)")
	}
	if !c.ok {
		t.Error("after the first request left the window: refused")
	}
	if c := do(rs[0]); c.done.Before(allowed[1].before.Add(window)) {
		within("one slot freed and taken", c, allowed[1])
	}
}

// TestLargeLimitRing: above 4096 the sub-window ring counts; a burst
// through three nodes never passes N.
func TestLargeLimitRing(t *testing.T) {
	t.Parallel()
	rs := nodes(t, redistest.URL(t), 3, nil)
	const n = 5000
	allowed, retries := burst(rs, "p\x00r\x005000/h\x00a", n, time.Hour, 6000)
	if allowed != n {
		t.Errorf("%d of 6000 allowed by a limit of %d per hour: want exactly %d", allowed, n, n)
	}
	// The ring counts whole sub-windows: a request's sub-window leaves
	// the count up to one sub-window after the request left the window.
	for _, r := range retries[:min(10, len(retries))] {
		if r <= 0 || r > time.Hour+time.Hour/64 {
			t.Errorf("retry-after %v, want within (0, 1h + one sub-window]", r)
		}
	}
}

// TestFailClosed: Redis unreachable → every request under a limit or a
// count quota is refused (with a short retry-after), at once rather than
// after a timeout each; a sum quota's charge is kept and made once Redis
// is back; and service resumes by itself.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	p := redistest.NewProxy(t)
	url := redistest.WithPrefix(t, p.URL(t))
	r := nodes(t, url, 1, nil)[0]
	q := spec.Quota{Per: "month", Limit: 1000}
	sq := spec.Quota{Per: "month", Limit: 1000, Sum: "usage.total_tokens"}
	if a, _ := r.Allow("k", 10, time.Second, time.Now()); !a {
		t.Fatal("first request refused with Redis up")
	}
	r.Add("sum", sq.Per, 5, time.Now())
	p.Cut()
	start := time.Now()
	for i := range 50 {
		if a, retry := r.Allow("k", 10, time.Second, time.Now()); a || retry <= 0 || retry > 2*time.Second {
			t.Fatalf("request %d with Redis unreachable: allowed %v, retry %v; want refused with a short retry", i, a, retry)
		}
		if a, _ := r.Take("count", q, time.Now()); a {
			t.Fatalf("quota request %d allowed with Redis unreachable", i)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100 refusals took %v: they must not each wait for a timeout", d)
	}
	if r.Up() {
		t.Error("Up() with Redis unreachable")
	}
	r.Add("sum", sq.Per, 7, time.Now()) // kept
	p.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, _ := r.Allow("k", 10, time.Second, time.Now()); a {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests still refused 10 s after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for r.Spent("sum", sq.Per, time.Now()) != 12 {
		if time.Now().After(deadline) {
			t.Fatalf("the sum quota holds %v after Redis came back, want 12 (5, and 7 charged while it was down)", r.Spent("sum", sq.Per, time.Now()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQuotaSharedAndRestored: a count quota through three nodes lets
// exactly its limit through; the counters reach the store; and when Redis
// loses them (a restart without persistence), they are restored from it.
func TestQuotaSharedAndRestored(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "k.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	url := redistest.URL(t)
	rs := nodes(t, url, 3, st)
	trackers := make([]*quota.Tracker, 3)
	for i := range trackers {
		tr, err := quota.New(t.Context(), nil, quiet, "")
		if err != nil {
			t.Fatal(err)
		}
		tr.Shared = rs[i]
		defer tr.Close()
		trackers[i] = tr
	}
	q := spec.Quota{Per: "month", Limit: 30}
	key := quota.Key("gh", q, 0, "alice")
	var ok atomic.Int64
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			for range 10 {
				if a, _ := trackers[g%3].Take(key, q, time.Now()); a {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 30 {
		t.Fatalf("%d of 120 requests allowed by a quota of 30 through 3 nodes, want 30", ok.Load())
	}
	a, wait := trackers[0].Take(key, q, time.Now())
	if a || wait <= 0 {
		t.Errorf("a spent quota: allowed %v, wait %v", a, wait)
	}
	// Saved within a second or two.
	waitFor(t, "the counter saved to the store", func() bool {
		us, _ := st.LoadQuotas(t.Context())
		return len(us) == 1 && us[0].Used == 30
	})
	// Redis loses everything of ours.
	redistest.Delete(t, rs[0].o.Prefix)
	waitFor(t, "the counter restored into Redis", func() bool { return trackers[1].Spent(key, q.Per, time.Now()) == 30 })
	if a, _ := trackers[2].Take(key, q, time.Now()); a {
		t.Error("after Redis lost its data, the restored quota let a request through")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCutPrefix(t *testing.T) {
	for _, tc := range []struct{ in, url, prefix string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", ""},
		{"redis://127.0.0.1:6379/2?key_prefix=prod:", "redis://127.0.0.1:6379/2", "prod:"},
		{"redis://:pw@h:1/0?key_prefix=a&protocol=2", "redis://:pw@h:1/0?protocol=2", "a"},
	} {
		u, p, err := cutPrefix(tc.in)
		if err != nil || u != tc.url || p != tc.prefix {
			t.Errorf("cutPrefix(%q) = %q, %q, %v; want %q, %q", tc.in, u, p, err, tc.url, tc.prefix)
		}
	}
	if got := RedactURL("redis://:s3cret@h:6379/0"); got != "redis://xxxxx@h:6379/0" {
		t.Errorf("RedactURL = %q", got)
	}
}
