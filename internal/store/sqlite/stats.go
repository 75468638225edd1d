package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
)

var _ store.LogStatser = (*Store)(nil)

// LogStats implements store.LogStatser with GROUP BY queries over the
// window's range of the audit_records_time index, in one read
// transaction (so the figures agree with each other). Each query reads the
// window's index rows once; no record data (audit_events) is read.
func (s *Store) LogStats(ctx context.Context, q store.LogStatsQuery) (store.LogStats, error) {
	acc := store.LogStats{Series: []store.StatsBucket{}}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return acc, err
	}
	defer tx.Rollback()

	where := `time >= ? AND time < ?`
	args := []any{micros(q.Since), micros(q.Until)}
	if len(q.ExcludeProxies) > 0 {
		where += ` AND proxy NOT IN (?` + strings.Repeat(`, ?`, len(q.ExcludeProxies)-1) + `)`
		for _, p := range q.ExcludeProxies {
			args = append(args, p)
		}
	}
	const counts = `count(*), sum(decision = 'deny'), sum(decision = 'error' OR status >= 500)`
	top := q.Top
	if top <= 0 {
		top = 10
	}

	// The time series (and the totals).
	bucket := q.Bucket.Microseconds()
	if bucket <= 0 {
		bucket = time.Minute.Microseconds()
	}
	rows, err := tx.QueryContext(ctx, `SELECT (time - ?) / ? AS b, `+counts+` FROM audit_records WHERE `+where+` GROUP BY b ORDER BY b`,
		append([]any{micros(q.Since), bucket}, args...)...)
	if err != nil {
		return acc, err
	}
	for rows.Next() {
		var b int64
		var c store.StatsCounts
		if err := rows.Scan(&b, &c.Requests, &c.Denied, &c.Errors); err != nil {
			rows.Close()
			return acc, err
		}
		acc.Series = append(acc.Series, store.StatsBucket{Start: q.Since.Add(time.Duration(b) * time.Duration(bucket) * time.Microsecond), StatsCounts: c})
		acc.Total.Requests += c.Requests
		acc.Total.Denied += c.Denied
		acc.Total.Errors += c.Errors
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return acc, err
	}

	named := func(sqlq string, qargs []any) ([]store.NamedStats, error) {
		rows, err := tx.QueryContext(ctx, sqlq, qargs...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []store.NamedStats
		for rows.Next() {
			var n store.NamedStats
			if err := rows.Scan(&n.Name, &n.Requests, &n.Denied, &n.Errors); err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, rows.Err()
	}
	if acc.Proxies, err = named(`SELECT proxy, `+counts+` FROM audit_records WHERE `+where+` GROUP BY proxy ORDER BY 2 DESC, 1`, args); err != nil {
		return acc, err
	}
	if acc.Agents, err = named(`SELECT agent, `+counts+` FROM audit_records WHERE `+where+` GROUP BY agent ORDER BY 2 DESC, 1 LIMIT ?`,
		append(append([]any{}, args...), top)); err != nil {
		return acc, err
	}
	if acc.Reasons, err = named(`SELECT reason, `+counts+` FROM audit_records WHERE `+where+` AND decision = 'deny' GROUP BY reason ORDER BY 2 DESC, 1 LIMIT ?`,
		append(append([]any{}, args...), top)); err != nil {
		return acc, err
	}

	// Latency histograms per proxy (store.LatencyBucket's formula).
	rows, err = tx.QueryContext(ctx, `SELECT proxy, CAST(floor(log2(max(latency_ms, 0.001)) * 4) AS INTEGER) AS lb, count(*)
		FROM audit_records WHERE `+where+` AND decision != 'deny' AND complete = 1 GROUP BY proxy, lb`, args...)
	if err != nil {
		return acc, err
	}
	defer rows.Close()
	byName := map[string]*store.NamedStats{}
	for i := range acc.Proxies {
		byName[acc.Proxies[i].Name] = &acc.Proxies[i]
	}
	for rows.Next() {
		var name string
		var lb int
		var n int64
		if err := rows.Scan(&name, &lb, &n); err != nil {
			return acc, err
		}
		if p := byName[name]; p != nil {
			if p.Latency == nil {
				p.Latency = map[int]int64{}
			}
			p.Latency[lb] += n
		}
	}
	if err := rows.Err(); err != nil {
		return acc, err
	}
	if acc.Proxies == nil {
		acc.Proxies = []store.NamedStats{}
	}
	if acc.Agents == nil {
		acc.Agents = []store.NamedStats{}
	}
	if acc.Reasons == nil {
		acc.Reasons = []store.NamedStats{}
	}
	return acc, nil
}
