package rules

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// limitSpec is a parsed rate_limit: at most N requests in any window.
type limitSpec struct {
	n      int
	window time.Duration
	raw    string
}

// maxExactLimit: up to this N the limiter keeps the time of each of the
// last N requests (exact: never more than N in any window, refused only
// when N are in it). Beyond it, a ring of sub-window counters keeps the
// memory per key constant (about 1 KiB) and is conservative: it never
// admits more than N in any window, and may refuse up to one sub-window
// early.
const maxExactLimit = 4096

// ringBuckets is how many sub-windows a window is cut into in the
// approximate mode: a refusal comes at most window/ringBuckets early.
const ringBuckets = 64

func parseLimit(s string) (*limitSpec, error) {
	ns, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return nil, fmt.Errorf("%q: write N/s, N/m or N/h, e.g. \"60/m\"", clip(s))
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 || n > 1_000_000 {
		return nil, fmt.Errorf("%q: N must be a whole number from 1 to 1000000", clip(s))
	}
	var w time.Duration
	switch unit {
	case "s":
		w = time.Second
	case "m":
		w = time.Minute
	case "h":
		w = time.Hour
	default:
		return nil, fmt.Errorf("%q: the period is s, m or h", clip(s))
	}
	return &limitSpec{n: n, window: w, raw: s}, nil
}

// Limiter decides rate limits; the in-memory Limits is one node's, and a
// shared implementation (Redis) makes them hold across nodes.
type Limiter interface {
	// Allow records one request under key if the limit allows it, or
	// returns how long until it would.
	Allow(key string, n int, window time.Duration, now time.Time) (bool, time.Duration)
}

// Limits is the in-memory Limiter: rate-limit state that survives snapshot
// rebuilds (keys name the proxy, rule, limit and agent, so changing a
// rule's limit starts it afresh).
type Limits struct {
	mu    sync.Mutex
	m     map[string]*slidingLog
	sweep time.Time
	// Shared, when set, is used instead of the in-memory state.
	Shared Limiter
}

// NewLimits returns empty rate-limit state.
func NewLimits() *Limits { return &Limits{m: map[string]*slidingLog{}} }

type slidingLog struct {
	mu     sync.Mutex
	window int64
	last   int64 // the last allowed request (for sweeping idle keys)
	// exact mode: a ring of the last n allowed request times
	times []int64
	next  int
	count int
	// approximate mode: a ring of sub-window counters
	ring *counterRing
}

// counterRing counts allowed requests per sub-window of width w (the
// window cut into ringBuckets). A request at time t is in the window at
// now when now-t < window, so the window at now reaches back to
// now-window+1; the ring counts every bucket that window touches, whole.
// Counting whole buckets over-counts (the oldest bucket may hold requests
// already out of the window), never under-counts: admitting only while
// that count is below N never lets N+1 requests into any window.
type counterRing struct {
	w       int64 // bucket width, ≥ 1 ns
	buckets []bucket
	latest  int64 // the latest time seen: a clock that steps back is held here
	// total is the sum of the buckets from lo to the newest one written
	// (none is newer than latest's), kept as lo moves forward, so an
	// admission costs O(1) amortised instead of a pass over the ring.
	total int64
	lo    int64
}

// bucket is one sub-window's count; k is its absolute index (time / w), so
// a slot left from an earlier lap of the ring is recognised as stale.
type bucket struct {
	k int64
	n int64
}

func newCounterRing(window int64) *counterRing {
	w := max(window/ringBuckets, 1)
	// A window of length W touches at most ceil(W/w)+1 buckets; with that
	// many slots, the buckets in one window never share a slot.
	slots := (window+w-1)/w + 1
	r := &counterRing{w: w, buckets: make([]bucket, slots)}
	for i := range r.buckets {
		r.buckets[i].k = math.MinInt64
	}
	return r
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (r *counterRing) slot(k int64) *bucket {
	n := int64(len(r.buckets))
	return &r.buckets[((k%n)+n)%n]
}

// count returns the n of bucket k (0 when its slot holds another lap's).
func (r *counterRing) count(k int64) int64 {
	if b := r.slot(k); b.k == k {
		return b.n
	}
	return 0
}

// allow admits one request at time at if fewer than n are counted in the
// window, or returns exactly how long until the count drops below n (when
// enough of the oldest buckets have left the window).
func (r *counterRing) allow(n int, window, at int64) (bool, time.Duration) {
	// A wall clock that steps back must not empty the window: count as of
	// the latest time seen.
	now := max(at, r.latest)
	r.latest = now
	kCur := floorDiv(now, r.w)
	kLo := floorDiv(now-window+1, r.w)
	// Move the window's start: buckets before kLo leave the total.
	if r.total == 0 || kLo-r.lo > int64(len(r.buckets)) {
		r.total, r.lo = 0, kLo // nothing counted, or every counted bucket has left
	}
	for ; r.lo < kLo; r.lo++ {
		r.total -= r.count(r.lo)
	}
	if r.total < int64(n) {
		b := r.slot(kCur)
		if b.k != kCur {
			*b = bucket{k: kCur}
		}
		b.n++
		r.total++
		return true, 0
	}
	// Bucket k is counted while floor((t-window+1)/w) ≤ k, that is until
	// t = (k+1)·w + window - 1. Drop the oldest buckets until fewer than n
	// remain.
	total := r.total
	for k := kLo; k <= kCur; k++ {
		total -= r.count(k)
		if total < int64(n) {
			return false, time.Duration((k+1)*r.w + window - 1 - at)
		}
	}
	// Unreachable: with every bucket dropped the count is 0 < n.
	return false, time.Duration(window)
}

// Allow implements Limiter.
func (l *Limits) Allow(key string, n int, window time.Duration, now time.Time) (bool, time.Duration) {
	if l.Shared != nil {
		return l.Shared.Allow(key, n, window, now)
	}
	ts := now.UnixNano()
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*slidingLog{} // a zero Limits is ready to use
	}
	s := l.m[key]
	if s == nil {
		s = &slidingLog{window: int64(window)}
		if n <= maxExactLimit {
			s.times = make([]int64, n)
		} else {
			s.ring = newCounterRing(int64(window))
		}
		l.m[key] = s
	}
	if now.Sub(l.sweep) > time.Minute {
		l.sweep = now
		for k, v := range l.m {
			v.mu.Lock()
			idle := ts-v.last > 2*v.window
			v.mu.Unlock()
			if idle && v != s {
				delete(l.m, k)
			}
		}
	}
	l.mu.Unlock()
	return s.allow(n, ts)
}

func (s *slidingLog) allow(n int, now int64) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.times != nil {
		if s.count < n {
			s.times[s.next] = now
			s.next = (s.next + 1) % n
			s.count++
			s.last = now
			return true, 0
		}
		oldest := s.times[s.next] // the n-th most recent allowed request
		if now-oldest >= s.window {
			s.times[s.next] = now
			s.next = (s.next + 1) % n
			s.last = now
			return true, 0
		}
		return false, time.Duration(oldest + s.window - now)
	}
	ok, retry := s.ring.allow(n, s.window, now)
	if ok {
		s.last = now
	}
	return ok, retry
}

// RateLimit applies the deciding allow rule's rate_limit for agent: ok, or
// how long until a request would be allowed.
func (d *Decision) RateLimit(agent string, now time.Time) (bool, time.Duration) {
	r := d.limited
	if r == nil || r.limit == nil || r.limits == nil {
		return true, 0
	}
	key := r.proxy + "\x00" + r.Name + "\x00" + r.limit.raw + "\x00" + agent
	return r.limits.Allow(key, r.limit.n, r.limit.window, now)
}
