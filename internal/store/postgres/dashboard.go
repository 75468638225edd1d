package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// The dashboard's optional interfaces: its users are shared by every node
// (sign in on any of them), and its overview is aggregated by PostgreSQL.
var (
	_ store.Users      = (*Store)(nil)
	_ store.LogStatser = (*Store)(nil)
)

// CreateUser implements store.Users (not configuration: no version bump).
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO users (name, password_hash, admin_token_id, created_at) VALUES ($1, $2, $3, $4)`,
		u.Name, u.PasswordHash, u.AdminTokenID, utc(u.CreatedAt))
	switch {
	case isUnique(err):
		return store.ErrConflict
	case isForeignKey(err):
		return store.ErrMissingRef
	}
	return err
}

// GetUser implements store.Users.
func (s *Store) GetUser(ctx context.Context, name string) (store.User, error) {
	var u store.User
	err := s.pool.QueryRow(ctx, `SELECT name, password_hash, admin_token_id, created_at FROM users WHERE name = $1`, name).
		Scan(&u.Name, &u.PasswordHash, &u.AdminTokenID, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

// ListUsers implements store.Users.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, password_hash, admin_token_id, created_at FROM users ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		if err := rows.Scan(&u.Name, &u.PasswordHash, &u.AdminTokenID, &u.CreatedAt); err != nil {
			return nil, err
		}
		u.CreatedAt = u.CreatedAt.UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM users WHERE name = $1`, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// LogStats implements store.LogStatser with GROUP BY queries over the
// window's range of the audit_records time index, in one repeatable-read
// transaction (so the figures agree with each other).
func (s *Store) LogStats(ctx context.Context, q store.LogStatsQuery) (store.LogStats, error) {
	acc := store.LogStats{Series: []store.StatsBucket{}}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return acc, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	excl := q.ExcludeProxies
	if excl == nil {
		excl = []string{}
	}
	const where = `time >= $1 AND time < $2 AND NOT (proxy = ANY($3::text[]))`
	args := []any{utc(q.Since), utc(q.Until), excl}
	const counts = `count(*), count(*) FILTER (WHERE decision = 'deny'), count(*) FILTER (WHERE decision = 'error' OR status >= 500)`
	top := q.Top
	if top <= 0 {
		top = 10
	}
	bucket := q.Bucket.Microseconds()
	if bucket <= 0 {
		bucket = time.Minute.Microseconds()
	}
	// Buckets counted in whole microseconds from Since, as the accumulator.
	rows, err := tx.Query(ctx, `SELECT floor((extract(epoch FROM time - $1) * 1000000) / $4)::bigint AS b, `+counts+`
		FROM audit_records WHERE `+where+` GROUP BY b ORDER BY b`, append(args, bucket)...)
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
	named := func(sql string, qargs ...any) ([]store.NamedStats, error) {
		rows, err := tx.Query(ctx, sql, qargs...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := []store.NamedStats{}
		for rows.Next() {
			var n store.NamedStats
			if err := rows.Scan(&n.Name, &n.Requests, &n.Denied, &n.Errors); err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, rows.Err()
	}
	if acc.Proxies, err = named(`SELECT proxy, `+counts+` FROM audit_records WHERE `+where+` GROUP BY proxy ORDER BY 2 DESC, 1`, args...); err != nil {
		return acc, err
	}
	if acc.Agents, err = named(`SELECT agent, `+counts+` FROM audit_records WHERE `+where+` GROUP BY agent ORDER BY 2 DESC, 1 LIMIT $4`,
		append(args, top)...); err != nil {
		return acc, err
	}
	if acc.Reasons, err = named(`SELECT reason, `+counts+` FROM audit_records WHERE `+where+` AND decision = 'deny' GROUP BY reason ORDER BY 2 DESC, 1 LIMIT $4`,
		append(args, top)...); err != nil {
		return acc, err
	}
	// Latency histograms per proxy (store.LatencyBucket's formula).
	rows, err = tx.Query(ctx, `SELECT proxy, floor(log(2, greatest(latency_ms, 0.001)::numeric) * 4)::integer AS lb, count(*)
		FROM audit_records WHERE `+where+` AND decision <> 'deny' AND complete GROUP BY proxy, lb`, args...)
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
	return acc, rows.Err()
}
