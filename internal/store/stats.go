package store

import (
	"context"
	"math"
	"sort"
	"time"
)

// ---- aggregates of the audit index (the dashboard's overview) ----

// LogStatsQuery asks for aggregates of the audit records in [Since, Until).
type LogStatsQuery struct {
	Since, Until time.Time
	// Bucket is the width of the time series' buckets (> 0).
	Bucket time.Duration
	// ExcludeProxies leaves these proxies' records out (the dashboard
	// leaves out "-admin", the admin API's own records).
	ExcludeProxies []string
	// Top bounds the agents and denial reasons returned (the most
	// frequent first); 0 means 10.
	Top int
}

// StatsCounts counts records: all of them, the denied ones (decision
// deny) and the failed ones (decision error, or a status of 500 or more).
type StatsCounts struct {
	Requests int64 `json:"requests"`
	Denied   int64 `json:"denied"`
	Errors   int64 `json:"errors"`
}

// StatsBucket is one bucket of the time series: the records whose time is
// in [Start, Start+Bucket).
type StatsBucket struct {
	Start time.Time `json:"start"`
	StatsCounts
}

// NamedStats is the counts of one proxy, agent or reason.
type NamedStats struct {
	Name string `json:"name"`
	StatsCounts
	// Latency is a histogram of latency_ms over the records that were not
	// denied and are complete: LatencyBucket(ms) → count. Filled for
	// proxies only.
	Latency map[int]int64 `json:"-"`
}

// LogStats is the answer of LogStatser.LogStats.
type LogStats struct {
	Total StatsCounts `json:"total"`
	// Series has the buckets that hold records, oldest first.
	Series []StatsBucket `json:"series"`
	// Proxies: every proxy with records, most records first.
	Proxies []NamedStats `json:"proxies"`
	// Agents: the Top agents with the most records.
	Agents []NamedStats `json:"agents"`
	// Reasons: the Top reasons of denied records.
	Reasons []NamedStats `json:"reasons"`
}

// LogStatser computes LogStats with the database's own aggregation. It is
// optional: without it, callers fold QueryLogs pages with a
// StatsAccumulator (correct, but it reads every record of the window).
type LogStatser interface {
	LogStats(ctx context.Context, q LogStatsQuery) (LogStats, error)
}

// LatencyBucket is the histogram bucket of a latency: four buckets per
// doubling (each about 19% wide), from 1 µs up. Every implementation of
// LogStatser uses this formula (in SQL: floor(log2(max(ms, 0.001)) * 4)).
func LatencyBucket(ms float64) int {
	return int(math.Floor(math.Log2(max(ms, 0.001)) * 4))
}

// LatencyBucketValue is the representative latency of a bucket: its
// geometric middle.
func LatencyBucketValue(b int) float64 {
	return math.Exp2((float64(b) + 0.5) / 4)
}

// Percentile returns the p-th percentile (0 < p ≤ 1) of a latency
// histogram, to the bucket's resolution; 0 for an empty one.
func Percentile(h map[int]int64, p float64) float64 {
	var n int64
	keys := make([]int, 0, len(h))
	for k, c := range h {
		n += c
		keys = append(keys, k)
	}
	if n == 0 {
		return 0
	}
	sort.Ints(keys)
	rank := int64(math.Ceil(p * float64(n)))
	var seen int64
	for _, k := range keys {
		seen += h[k]
		if seen >= rank {
			return LatencyBucketValue(k)
		}
	}
	return LatencyBucketValue(keys[len(keys)-1])
}

// StatsAccumulator folds index rows into LogStats: the reference
// definition of each figure, and the fallback of stores without
// LogStatser.
type StatsAccumulator struct {
	q       LogStatsQuery
	total   StatsCounts
	series  map[int64]*StatsCounts
	proxies map[string]*NamedStats
	agents  map[string]*NamedStats
	reasons map[string]*NamedStats
	exclude map[string]bool
}

// NewStatsAccumulator starts the aggregates of q.
func NewStatsAccumulator(q LogStatsQuery) *StatsAccumulator {
	a := &StatsAccumulator{q: q, series: map[int64]*StatsCounts{}, proxies: map[string]*NamedStats{},
		agents: map[string]*NamedStats{}, reasons: map[string]*NamedStats{}, exclude: map[string]bool{}}
	for _, p := range q.ExcludeProxies {
		a.exclude[p] = true
	}
	return a
}

func (c *StatsCounts) add(x LogIndex) {
	c.Requests++
	if x.Decision == "deny" {
		c.Denied++
	}
	if x.Decision == "error" || x.Status >= 500 {
		c.Errors++
	}
}

func named(m map[string]*NamedStats, name string) *NamedStats {
	s := m[name]
	if s == nil {
		s = &NamedStats{Name: name}
		m[name] = s
	}
	return s
}

// Add counts one record (records outside the window or of an excluded
// proxy are skipped).
func (a *StatsAccumulator) Add(x LogIndex) {
	if x.Time.Before(a.q.Since) || !x.Time.Before(a.q.Until) || a.exclude[x.Proxy] {
		return
	}
	a.total.add(x)
	b := int64(x.Time.Sub(a.q.Since) / a.q.Bucket)
	if a.series[b] == nil {
		a.series[b] = &StatsCounts{}
	}
	a.series[b].add(x)
	p := named(a.proxies, x.Proxy)
	p.add(x)
	if x.Decision != "deny" && x.Complete {
		if p.Latency == nil {
			p.Latency = map[int]int64{}
		}
		p.Latency[LatencyBucket(x.LatencyMS)]++
	}
	named(a.agents, x.Agent).add(x)
	if x.Decision == "deny" {
		named(a.reasons, x.Reason).add(x)
	}
}

// Stats returns the aggregates.
func (a *StatsAccumulator) Stats() LogStats {
	out := LogStats{Total: a.total, Series: []StatsBucket{}}
	for b, c := range a.series {
		out.Series = append(out.Series, StatsBucket{Start: a.q.Since.Add(time.Duration(b) * a.q.Bucket), StatsCounts: *c})
	}
	sort.Slice(out.Series, func(i, j int) bool { return out.Series[i].Start.Before(out.Series[j].Start) })
	out.Proxies = SortStats(a.proxies, 0)
	out.Agents = SortStats(a.agents, a.q.top())
	out.Reasons = SortStats(a.reasons, a.q.top())
	return out
}

func (q LogStatsQuery) top() int {
	if q.Top <= 0 {
		return 10
	}
	return q.Top
}

// SortStats lists m by requests (most first, then by name), at most n
// (n ≤ 0: all).
func SortStats(m map[string]*NamedStats, n int) []NamedStats {
	out := make([]NamedStats, 0, len(m))
	for _, s := range m {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Name < out[j].Name
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
