package admin

import (
	"math"
	"net/http"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// GET /api/v1/stats?since=1h&until=&bucket=&include_admin= : the
// dashboard's overview, from the audit index (no record data is read).
//
//   - since (default 1h ago) and until (default now) as in GET /logs;
//     the window is at most 31 days.
//   - bucket: the series' bucket width, a Go duration (default: a round
//     width that gives about 60 buckets). since is moved back to a
//     multiple of it, so buckets start at round times.
//   - include_admin=true counts the admin API's own records (-admin),
//     which are left out by default.
//
// Latency percentiles are per proxy, over the records that were not
// denied and are complete, read from a histogram with four buckets per
// doubling: each is the middle of its bucket, within about 10% of the
// exact value. Any role may read the stats (they hold no payload).
const (
	statsMaxWindow = 31 * 24 * time.Hour
	statsMaxBucket = 10_000
	// statsMaxScan bounds the records a store without LogStatser reads
	// for one answer ("partial" says when it was reached).
	statsMaxScan = 500_000
)

var niceBuckets = []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// StatsBucketFor is the default bucket of a window: the smallest round
// width that gives at most 60 buckets.
func StatsBucketFor(window time.Duration) time.Duration {
	for _, b := range niceBuckets {
		if window/b <= 60 {
			return b
		}
	}
	return niceBuckets[len(niceBuckets)-1]
}

func (a *API) stats(c *call) error {
	v := c.r.URL.Query()
	until, err := parseTime("until", v.Get("until"))
	if err != nil {
		return err
	}
	if until.IsZero() {
		until = time.Now()
	}
	since := until.Add(-time.Hour)
	if s := v.Get("since"); s != "" {
		if since, err = parseTime("since", s); err != nil {
			return err
		}
	}
	if !since.Before(until) {
		return badRequest("since must be before until")
	}
	if until.Sub(since) > statsMaxWindow {
		return badRequest("the window is at most 31 days")
	}
	bucket := StatsBucketFor(until.Sub(since))
	if s := v.Get("bucket"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			return badRequest("bucket is a Go duration of at least 1s, such as 1m")
		}
		bucket = d
	}
	if until.Sub(since)/bucket > statsMaxBucket {
		return badRequest("that bucket makes more than %d buckets; choose a wider one", statsMaxBucket)
	}
	since = since.Truncate(bucket)
	q := store.LogStatsQuery{Since: since, Until: until, Bucket: bucket, Top: 10}
	if v.Get("include_admin") != "true" {
		q.ExcludeProxies = []string{audit.AdminProxy}
	}

	var st store.LogStats
	partial := false
	if ls, ok := a.Store.(store.LogStatser); ok {
		if st, err = ls.LogStats(c.r.Context(), q); err != nil {
			return err
		}
	} else {
		// Fold the index rows of the window, newest first, in pages.
		acc := store.NewStatsAccumulator(q)
		lq := store.LogQuery{Since: since, Until: until, Limit: 1000}
		scanned := 0
		for {
			rows, err := a.Store.QueryLogs(c.r.Context(), lq)
			if err != nil {
				return err
			}
			for _, r := range rows {
				acc.Add(r.Index)
			}
			scanned += len(rows)
			if len(rows) < lq.Limit {
				break
			}
			if scanned >= statsMaxScan {
				partial = true
				break
			}
			lq.Before = rows[len(rows)-1].Index.ID
		}
		st = acc.Stats()
	}

	minutes := until.Sub(since).Minutes()
	rate := func(n, of int64) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	counts := func(s store.StatsCounts) map[string]any {
		return map[string]any{"requests": s.Requests, "denied": s.Denied, "errors": s.Errors,
			"denial_rate": rate(s.Denied, s.Requests), "error_rate": rate(s.Errors, s.Requests)}
	}
	named := func(list []store.NamedStats, latency bool) []any {
		out := make([]any, 0, len(list))
		for _, n := range list {
			m := counts(n.StatsCounts)
			m["name"] = n.Name
			if latency {
				m["p50_ms"], m["p95_ms"] = nilIfZero(store.Percentile(n.Latency, 0.50)), nilIfZero(store.Percentile(n.Latency, 0.95))
			}
			out = append(out, m)
		}
		return out
	}
	series := make([]any, 0, len(st.Series))
	for _, b := range st.Series {
		m := counts(b.StatsCounts)
		m["start"] = b.Start.UTC().Format(audit.TimeFormat)
		series = append(series, m)
	}
	total := counts(st.Total)
	total["per_minute"] = float64(st.Total.Requests) / math.Max(minutes, 1.0/60)
	all := map[int]int64{}
	for _, p := range st.Proxies {
		for k, n := range p.Latency {
			all[k] += n
		}
	}
	total["p50_ms"], total["p95_ms"] = nilIfZero(store.Percentile(all, 0.50)), nilIfZero(store.Percentile(all, 0.95))
	return c.json(http.StatusOK, map[string]any{
		"since": since.UTC().Format(audit.TimeFormat), "until": until.UTC().Format(audit.TimeFormat),
		"bucket_seconds": bucket.Seconds(), "total": total, "series": series,
		"proxies": named(st.Proxies, true), "agents": named(st.Agents, false), "reasons": named(st.Reasons, false),
		"partial": partial,
	})
}

func nilIfZero(f float64) any {
	if f == 0 {
		return nil
	}
	return math.Round(f*1000) / 1000
}
