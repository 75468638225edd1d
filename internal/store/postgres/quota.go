package postgres

import (
	"context"
	"time"

	"github.com/keyhole-gw/keyhole/internal/quota"
)

var _ quota.Store = (*Store)(nil)

// LoadQuotas implements quota.Store.
func (s *Store) LoadQuotas(ctx context.Context) ([]quota.Usage, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, period_start, used FROM quota_usage`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []quota.Usage
	for rows.Next() {
		var u quota.Usage
		var key []byte
		if err := rows.Scan(&key, &u.PeriodStart, &u.Used); err != nil {
			return nil, err
		}
		u.Key, u.PeriodStart = string(key), u.PeriodStart.UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// SaveQuotas implements quota.Store in one statement. Several nodes save
// the same counters (each its own count without Redis, the shared one
// with it), so a save never lowers a counter of the same period: a node
// that read the shared counter a moment earlier must not undo another's
// later save. A later period replaces an earlier one; an earlier one
// changes nothing.
func (s *Store) SaveQuotas(ctx context.Context, us []quota.Usage) error {
	if len(us) == 0 {
		return nil
	}
	last := map[string]int{}
	for i, u := range us {
		last[u.Key] = i
	}
	keys := make([][]byte, 0, len(last))
	starts := make([]time.Time, 0, len(last))
	used := make([]float64, 0, len(last))
	for i, u := range us {
		if last[u.Key] != i {
			continue
		}
		keys, starts, used = append(keys, []byte(u.Key)), append(starts, utc(u.PeriodStart)), append(used, u.Used)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO quota_usage (key, period_start, used)
		SELECT * FROM unnest($1::bytea[], $2::timestamptz[], $3::float8[])
		ON CONFLICT (key) DO UPDATE SET
			used = CASE WHEN excluded.period_start > quota_usage.period_start THEN excluded.used
				WHEN excluded.period_start = quota_usage.period_start THEN greatest(quota_usage.used, excluded.used)
				ELSE quota_usage.used END,
			period_start = greatest(quota_usage.period_start, excluded.period_start)`, keys, starts, used)
	return err
}
