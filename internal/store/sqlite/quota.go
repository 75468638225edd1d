package sqlite

import (
	"context"
	"database/sql"

	"github.com/keyhole-gw/keyhole/internal/quota"
)

var _ quota.Store = (*Store)(nil)

// LoadQuotas implements quota.Store.
func (s *Store) LoadQuotas(ctx context.Context) ([]quota.Usage, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key, period_start, used FROM quota_usage`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []quota.Usage
	for rows.Next() {
		var u quota.Usage
		var at int64
		if err := rows.Scan(&u.Key, &at, &u.Used); err != nil {
			return nil, err
		}
		u.PeriodStart = fromMicros(at)
		out = append(out, u)
	}
	return out, rows.Err()
}

// SaveQuotas implements quota.Store: upserts, one transaction.
func (s *Store) SaveQuotas(ctx context.Context, us []quota.Usage) error {
	return s.tx(ctx, false, func(t *sql.Tx) error {
		st, err := t.PrepareContext(ctx, `INSERT INTO quota_usage (key, period_start, used) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET period_start = excluded.period_start, used = excluded.used`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, u := range us {
			if _, err := st.ExecContext(ctx, u.Key, micros(u.PeriodStart), u.Used); err != nil {
				return err
			}
		}
		return nil
	})
}
