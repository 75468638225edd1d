package rules

import (
	"fmt"
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
// last N requests (exact: never more than N in any window). Beyond it, a
// two-window sliding counter (approximate, within a few percent) keeps the
// memory per agent constant.
const maxExactLimit = 4096

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
	times  []int64 // ring of the last n allowed request times (exact mode)
	next   int
	count  int
	window int64
	// approximate mode
	curStart  int64
	cur, prev int
	last      int64
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
	// Sliding window counter: the previous window's count weighted by how
	// much of it still overlaps the sliding window.
	start := now - now%s.window
	if start != s.curStart {
		if start-s.curStart == s.window {
			s.prev = s.cur
		} else {
			s.prev = 0
		}
		s.cur, s.curStart = 0, start
	}
	weight := float64(s.window-(now-start)) / float64(s.window)
	if float64(s.prev)*weight+float64(s.cur) < float64(n) {
		s.cur++
		s.last = now
		return true, 0
	}
	return false, time.Duration(s.window - (now - start))
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
