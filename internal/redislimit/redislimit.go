// Package redislimit shares rate limits and quotas across nodes through
// Redis (`--redis`, SPEC §10: "no node keeps state that another needs").
// Without it, each node counts only its own traffic (rules.Limits and
// quota.Tracker in memory): N nodes then let up to N times a limit through.
//
// Rate limits (rules.Limiter) keep the in-memory semantics exactly, with
// Redis's clock (TIME) instead of the nodes', so clock skew between nodes
// does not matter:
//
//   - N ≤ 4096: a sliding log, one sorted set per key whose members are the
//     times of the allowed requests still in the window. One Lua script
//     drops what left the window, then admits if fewer than N remain, or
//     answers how long until the N-th most recent one leaves. Never more
//     than N in any window; refused only when N are in it.
//   - N > 4096: a ring of 64 sub-window counters per window (one hash per
//     key, one field per sub-window), counted whole: never more than N in
//     any window, a refusal at most one sub-window early; memory per key is
//     constant.
//
// Quotas (quota.Counter) are counters named by the key and the period's
// start, with INCRBYFLOAT and an expiry after the period's end. Redis is
// authoritative while it is configured; the counters each node reads back
// are saved to the store every second (so they survive a Redis restart:
// Redis on its own may keep nothing on disk), and restored from it when a
// node starts and whenever Redis turns out to have lost its data (a marker
// key is gone). A restore raises a counter to the saved value, never lowers
// it: the usage of about the last second before a loss may be forgotten,
// and nothing is counted twice.
//
// When Redis cannot be reached, requests that a rate limit or quota applies
// to are refused (429 with Retry-After: 1), with a loud log line at the
// transition and the keyhole_redis_up and keyhole_redis_refused_total
// metrics: a gateway that cannot count must not let an agent exceed what
// it was given (fail closed, like the audit log). Requests without a
// limit or quota are not affected. After a failure, Redis is tried again
// after a second (meanwhile requests are refused at once, without waiting
// on a timeout). A sum quota's usage that could not be charged is kept and
// charged when Redis is back.
package redislimit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/rules"
	"github.com/keyhole-gw/keyhole/internal/spec"
)

// Options configure a Redis.
type Options struct {
	// URL is redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS), with an
	// optional key_prefix parameter.
	URL string
	// Prefix starts every key (default: the URL's key_prefix, else
	// "keyhole:"). Two installations on one Redis use two databases
	// (/0, /1…) or two prefixes.
	Prefix string
	// Timeout bounds one call (default 250 ms): a request under a limit
	// waits at most this long for Redis before it is refused.
	Timeout time.Duration
	// RetryAfter is how long Redis is left alone after a failure (default
	// 1 s); requests under a limit are refused at once meanwhile.
	RetryAfter time.Duration
	// Store keeps the quota counters across Redis restarts (the keyhole
	// store); nil: Redis alone.
	Store  quota.Store
	Logger *slog.Logger
	// Registerer takes the metrics (nil: none).
	Registerer prometheus.Registerer
}

// Redis is the shared rate-limit and quota state of all nodes.
type Redis struct {
	c   *redis.Client
	o   Options
	log *slog.Logger

	member string       // this process's prefix of sorted-set members
	seq    atomic.Int64 // … and its counter

	mu        sync.Mutex
	down      bool
	downUntil time.Time
	lastErr   error
	pending   map[string]pendingAdd // sum-quota charges not made yet, by Redis key
	seen      map[string]seenUsage  // counters read back, to save, by quota key
	reconcile bool                  // restore from the store at the next tick

	stop chan struct{}
	done chan struct{}

	up      prometheus.Gauge
	errs    prometheus.Counter
	refused *prometheus.CounterVec
}

type pendingAdd struct {
	v        float64
	expireAt int64
}

type seenUsage struct {
	start time.Time
	used  float64
	dirty bool
}

var (
	_ rules.Limiter = (*Redis)(nil)
	_ quota.Counter = (*Redis)(nil)
)

// errDown: Redis failed moments ago; it is not asked again yet.
var errDown = errors.New("redis is unavailable")

// New connects to Redis (lazily: a Redis that is down at start makes the
// node start all the same, refusing limited requests until it is up),
// restores the quota counters and starts the background saver.
func New(ctx context.Context, o Options) (*Redis, error) {
	url, prefix, err := cutPrefix(o.URL)
	if err != nil {
		return nil, fmt.Errorf("--redis %q: %w", RedactURL(o.URL), err)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis %q: %w", RedactURL(o.URL), err)
	}
	if o.Prefix == "" {
		o.Prefix = prefix
	}
	if o.Prefix == "" {
		o.Prefix = "keyhole:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Fail fast rather than retry: a retried admission could be counted
	// twice, and a request must not wait long for a refusal.
	opt.MaxRetries = -1
	opt.DialTimeout = max(o.Timeout, 500*time.Millisecond)
	opt.DialerRetries = 1
	opt.ReadTimeout, opt.WriteTimeout = o.Timeout, o.Timeout
	opt.PoolTimeout = o.Timeout
	opt.ContextTimeoutEnabled = true
	opt.DisableIdentity = true
	b := make([]byte, 6)
	rand.Read(b)
	r := &Redis{c: redis.NewClient(opt), o: o, log: o.Logger, member: hex.EncodeToString(b) + ":",
		pending: map[string]pendingAdd{}, seen: map[string]seenUsage{}, stop: make(chan struct{}), done: make(chan struct{}),
		reconcile: true}
	r.up = prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyhole_redis_up",
		Help: "1 while Redis (shared rate limits and quotas) answers; 0 while requests under a limit or quota are refused."})
	r.errs = prometheus.NewCounter(prometheus.CounterOpts{Name: "keyhole_redis_errors_total", Help: "Redis calls that failed."})
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyhole_redis_refused_total",
		Help: "Requests refused because Redis could not be asked, by what was to be checked (rate_limit, quota)."}, []string{"what"})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{r.up, r.errs, r.refused} {
			o.Registerer.Register(c)
		}
	}
	r.up.Set(1)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = r.c.Ping(pctx).Err()
	cancel()
	if err != nil {
		r.failed(err)
	} else {
		r.restore(ctx)
	}
	go r.loop()
	return r, nil
}

// Close stops the saver (saving once more) and closes the client.
func (r *Redis) Close() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	return r.c.Close()
}

// Up reports whether the last call to Redis succeeded.
func (r *Redis) Up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.down
}

// call runs fn against Redis, or fails at once while Redis is left alone
// after a failure.
func (r *Redis) call(fn func(ctx context.Context) error) error {
	r.mu.Lock()
	if r.down && time.Now().Before(r.downUntil) {
		r.mu.Unlock()
		return errDown
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.o.Timeout)
	defer cancel()
	err := fn(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		r.failed(err)
		return err
	}
	r.mu.Lock()
	if r.down {
		r.down = false
		r.reconcile = true // it may have restarted empty
		r.log.Info("Redis answers again: shared rate limits and quotas apply again")
		r.up.Set(1)
	}
	r.mu.Unlock()
	return nil
}

func (r *Redis) failed(err error) {
	r.errs.Inc()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.down {
		r.log.Error("Redis is unreachable: requests under a rate limit or a quota are refused (429) until it answers again (fail closed)",
			"redis", RedactURL(r.o.URL), "err", err)
		r.up.Set(0)
	}
	r.down, r.downUntil, r.lastErr = true, time.Now().Add(r.o.RetryAfter), err
}

// hashKey names a limiter's or quota's key in Redis: keys carry names and
// NUL separators; the hash keeps Redis keys short and printable.
func hashKey(k string) string {
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:16])
}

// slidingLog: see the package comment. Times are microseconds of Redis's
// clock. ARGV: n, window, member.
var slidingLog = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local c = redis.call('ZCARD', KEYS[1])
if c < n then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
  return {1, 0}
end
local nth = redis.call('ZRANGE', KEYS[1], c - n, c - n, 'WITHSCORES')
return {0, tonumber(nth[2]) + window - now}
`)

// counterRing: see the package comment and rules.counterRing, which it
// mirrors. ARGV: n, window, sub-window width (µs).
var counterRing = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n, window, w = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kCur = math.floor(now / w)
local kLo = math.floor((now - window + 1) / w)
local all = redis.call('HGETALL', KEYS[1])
local total = 0
local counts = {}
for i = 1, #all, 2 do
  local k = tonumber(all[i])
  if k < kLo then
    redis.call('HDEL', KEYS[1], all[i])
  else
    counts[k] = tonumber(all[i + 1])
    total = total + counts[k]
  end
end
if total < n then
  redis.call('HINCRBY', KEYS[1], string.format('%d', kCur), 1)
  redis.call('PEXPIRE', KEYS[1], math.floor((window + w) / 1000) + 1000)
  return {1, 0}
end
for k = kLo, kCur do
  total = total - (counts[k] or 0)
  if total < n then
    return {0, (k + 1) * w + window - 1 - now}
  end
end
return {0, window}
`)

// ringBuckets is rules' number of sub-windows per window.
const ringBuckets = 64

// maxExactLimit is rules' largest N kept exactly.
const maxExactLimit = 4096

// Allow implements rules.Limiter across nodes. now is ignored: Redis's
// clock decides, so that nodes whose clocks differ agree.
func (r *Redis) Allow(key string, n int, window time.Duration, now time.Time) (bool, time.Duration) {
	win := window.Microseconds()
	var res []int64
	err := r.call(func(ctx context.Context) error {
		var err error
		if n <= maxExactLimit {
			member := r.member + strconv.FormatInt(r.seq.Add(1), 36)
			res, err = slidingLog.Run(ctx, r.c, []string{r.o.Prefix + "rl:" + hashKey(key)}, n, win, member).Int64Slice()
		} else {
			w := max(win/ringBuckets, 1)
			res, err = counterRing.Run(ctx, r.c, []string{r.o.Prefix + "rr:" + hashKey(key)}, n, win, w).Int64Slice()
		}
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("rate-limit script answered %v", res)
		}
		return err
	})
	if err != nil {
		r.refused.WithLabelValues("rate_limit").Inc()
		return false, r.o.RetryAfter
	}
	if res[0] == 1 {
		return true, 0
	}
	return false, time.Duration(max(res[1], 1)) * time.Microsecond
}

// ---- quotas ----

var takeQuota = redis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if raw and tonumber(raw) >= tonumber(ARGV[1]) then return {0, raw} end
if ARGV[3] == '1' then
  raw = redis.call('INCRBYFLOAT', KEYS[1], '1')
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return {1, raw or '0'}
`)

var addQuota = redis.NewScript(`
local raw = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return raw
`)

// seedQuota raises a counter to a saved value (never lowers it).
var seedQuota = redis.NewScript(`
local raw = redis.call('GET', KEYS[1])
if tonumber(ARGV[1]) > tonumber(raw or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
  return 1
end
return 0
`)

// quotaKey is the Redis key of a quota counter's period, and when it may
// expire (an hour after the period ends, so a late save still reads it).
func (r *Redis) quotaKey(key, per string, now time.Time) (rk string, start time.Time, expireAt int64) {
	start = quota.PeriodStart(per, now)
	return r.o.Prefix + "q:" + hashKey(key) + ":" + strconv.FormatInt(start.Unix(), 10), start,
		quota.PeriodEnd(per, now).Add(time.Hour).UnixMilli()
}

func (r *Redis) note(key string, start time.Time, raw string) {
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.seen[key]
	switch {
	case ok && u.start.After(start):
	case ok && u.start.Equal(start) && v <= u.used:
		// A counter only grows within its period: a lower value means
		// Redis lost it, and the restore will raise it again.
	default:
		r.seen[key] = seenUsage{start: start, used: v, dirty: true}
	}
}

// Take implements quota.Counter.
func (r *Redis) Take(key string, q spec.Quota, now time.Time) (bool, time.Duration) {
	rk, start, exp := r.quotaKey(key, q.Per, now)
	charge := "0"
	if q.Sum == "" {
		charge = "1"
	}
	var res []any
	err := r.call(func(ctx context.Context) error {
		var err error
		res, err = takeQuota.Run(ctx, r.c, []string{rk}, q.Limit, exp, charge).Slice()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("quota script answered %v", res)
		}
		return err
	})
	if err != nil {
		r.refused.WithLabelValues("quota").Inc()
		return false, r.o.RetryAfter
	}
	raw, _ := res[1].(string)
	r.note(key, start, raw)
	if ok, _ := res[0].(int64); ok != 1 {
		return false, quota.PeriodEnd(q.Per, now).Sub(now)
	}
	return true, 0
}

// Add implements quota.Counter: a sum quota's charge after the response.
// A charge that cannot be made now is kept and made when Redis answers.
func (r *Redis) Add(key, per string, v float64, now time.Time) {
	if v <= 0 {
		return
	}
	rk, start, exp := r.quotaKey(key, per, now)
	var raw string
	err := r.call(func(ctx context.Context) error {
		var err error
		raw, err = addQuota.Run(ctx, r.c, []string{rk}, strconv.FormatFloat(v, 'f', -1, 64), exp).Text()
		return err
	})
	if err != nil {
		r.mu.Lock()
		p := r.pending[rk]
		r.pending[rk] = pendingAdd{v: p.v + v, expireAt: exp}
		r.mu.Unlock()
		return
	}
	r.note(key, start, raw)
}

// Spent implements quota.Counter (0 when Redis cannot tell).
func (r *Redis) Spent(key, per string, now time.Time) float64 {
	rk, _, _ := r.quotaKey(key, per, now)
	var raw string
	err := r.call(func(ctx context.Context) error {
		var err error
		raw, err = r.c.Get(ctx, rk).Result()
		return err
	})
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseFloat(raw, 64)
	return v
}

// loop, every second: charges kept while Redis was down, a restore if
// Redis lost its data, and the counters read back saved to the store.
func (r *Redis) loop() {
	defer close(r.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			r.save(context.Background())
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r.chargePending()
		r.checkMarker()
		r.mu.Lock()
		again := r.reconcile
		r.mu.Unlock()
		if again {
			r.restore(ctx)
		}
		r.save(ctx)
		cancel()
	}
}

func (r *Redis) chargePending() {
	r.mu.Lock()
	ps := r.pending
	r.pending = map[string]pendingAdd{}
	r.mu.Unlock()
	for rk, p := range ps {
		err := r.call(func(ctx context.Context) error {
			return addQuota.Run(ctx, r.c, []string{rk}, strconv.FormatFloat(p.v, 'f', -1, 64), p.expireAt).Err()
		})
		if err != nil {
			r.mu.Lock()
			q := r.pending[rk]
			r.pending[rk] = pendingAdd{v: q.v + p.v, expireAt: p.expireAt}
			r.mu.Unlock()
		}
	}
}

// checkMarker notices that Redis lost its data (a restart without
// persistence, a flush): the marker key, set at each restore, is gone.
func (r *Redis) checkMarker() {
	var n int64
	if err := r.call(func(ctx context.Context) error {
		var err error
		n, err = r.c.Exists(ctx, r.o.Prefix+"marker").Result()
		return err
	}); err != nil {
		return
	}
	if n == 0 {
		r.mu.Lock()
		if !r.reconcile {
			r.log.Warn("Redis has lost its data (restart without persistence, or a flush): restoring the quota counters from the store")
		}
		r.reconcile = true
		r.mu.Unlock()
	}
}

// restore raises the Redis counters of the current periods to the values
// saved in the store, then sets the marker.
func (r *Redis) restore(ctx context.Context) {
	if r.o.Store == nil {
		r.setMarker()
		return
	}
	us, err := r.o.Store.LoadQuotas(ctx)
	if err != nil {
		r.log.Warn("cannot read the saved quota counters to restore Redis's; retrying", "err", err)
		return
	}
	now := time.Now()
	for _, u := range us {
		per := periodOf(u.Key)
		if per == "" || !quota.PeriodStart(per, now).Equal(u.PeriodStart) || u.Used <= 0 {
			continue
		}
		rk, _, exp := r.quotaKey(u.Key, per, now)
		if err := r.call(func(ctx context.Context) error {
			return seedQuota.Run(ctx, r.c, []string{rk}, strconv.FormatFloat(u.Used, 'f', -1, 64), exp).Err()
		}); err != nil {
			return // the next tick tries again (reconcile stays set)
		}
	}
	r.setMarker()
}

func (r *Redis) setMarker() {
	if err := r.call(func(ctx context.Context) error {
		return r.c.Set(ctx, r.o.Prefix+"marker", time.Now().UTC().Format(time.RFC3339), 0).Err()
	}); err == nil {
		r.mu.Lock()
		r.reconcile = false
		r.mu.Unlock()
	}
}

// periodOf reads the period out of a quota key (quota.Key: proxy, name,
// per, sum, agent, separated by NUL).
func periodOf(key string) string {
	parts := strings.Split(key, "\x00")
	if len(parts) != 5 {
		return ""
	}
	switch parts[2] {
	case "minute", "hour", "day", "month":
		return parts[2]
	}
	return ""
}

// save writes the counters read back since the last save to the store.
func (r *Redis) save(ctx context.Context) {
	if r.o.Store == nil {
		return
	}
	r.mu.Lock()
	var us []quota.Usage
	now := time.Now()
	for k, u := range r.seen {
		switch {
		case u.dirty:
			us = append(us, quota.Usage{Key: k, PeriodStart: u.start, Used: u.used})
			u.dirty = false
			r.seen[k] = u
		case now.Sub(u.start) > 32*24*time.Hour:
			delete(r.seen, k)
		}
	}
	r.mu.Unlock()
	if len(us) == 0 {
		return
	}
	if err := r.o.Store.SaveQuotas(ctx, us); err != nil {
		r.log.Warn("quota counters not saved to the store; retrying", "err", err)
		r.mu.Lock()
		for _, u := range us {
			if s, ok := r.seen[u.Key]; ok && s.start.Equal(u.PeriodStart) {
				s.dirty = true
				r.seen[u.Key] = s
			}
		}
		r.mu.Unlock()
	}
}

// cutPrefix takes keyhole's own key_prefix parameter out of a Redis URL
// (redis://host:6379/0?key_prefix=prod:), which go-redis would refuse.
func cutPrefix(s string) (string, string, error) {
	u, err := neturl.Parse(s)
	if err != nil {
		return "", "", err
	}
	q := u.Query()
	p := q.Get("key_prefix")
	if !q.Has("key_prefix") {
		return s, "", nil
	}
	q.Del("key_prefix")
	u.RawQuery = q.Encode()
	return u.String(), p, nil
}

// RedactURL hides a password in a Redis URL.
func RedactURL(s string) string {
	i := strings.Index(s, "://")
	at := strings.LastIndex(s, "@")
	if i < 0 || at < i {
		return s
	}
	return s[:i+3] + "xxxxx" + s[at:]
}
