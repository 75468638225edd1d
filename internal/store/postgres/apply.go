package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// Apply implements store.Config: the whole plan in one transaction. It
// first takes config_version's row lock, as every configuration write does
// (tx), so applies and other writes run one at a time across all nodes and
// every read below sees every write committed before it. The version is
// bumped, and other nodes notified, only when something changed: a plan
// that changes nothing and a dry run are rolled back.
func (s *Store) Apply(ctx context.Context, p store.ApplyPlan) (store.ApplyResult, error) {
	var res store.ApplyResult
	if err := store.CheckPlan(p); err != nil {
		return res, err
	}
	t, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer t.Rollback(context.WithoutCancel(ctx))
	var v int64
	if err := t.QueryRow(ctx, `SELECT version FROM config_version FOR UPDATE`).Scan(&v); err != nil {
		return res, err
	}
	at := utc(p.At)

	for _, sec := range p.Secrets {
		var version int
		var old []byte
		err := t.QueryRow(ctx, `SELECT s.version, v.ciphertext FROM secrets s
			LEFT JOIN secret_versions v ON v.name = s.name AND v.version = s.version WHERE s.name = $1`, sec.Name).Scan(&version, &old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return res, err
		}
		ct, kind, fields, err := sec.Seal(version, old)
		if err != nil {
			return res, err
		}
		if ct == nil {
			res.Secrets.Unchanged = append(res.Secrets.Unchanged, sec.Name)
			continue
		}
		if version == 0 {
			if _, err := t.Exec(ctx, `INSERT INTO secrets (name, version, kind, fields, created_at) VALUES ($1, 1, $2, $3, $4)`,
				sec.Name, kind, nonNil(fields), at); err != nil {
				return res, err
			}
			res.Secrets.Created = append(res.Secrets.Created, sec.Name)
		} else {
			if _, err := t.Exec(ctx, `UPDATE secrets SET version = $1, kind = $2, fields = $3, rotated_at = $4 WHERE name = $5`,
				version+1, kind, nonNil(fields), at, sec.Name); err != nil {
				return res, err
			}
			res.Secrets.Updated = append(res.Secrets.Updated, sec.Name)
		}
		if _, err := t.Exec(ctx, `INSERT INTO secret_versions (name, version, ciphertext, created_at) VALUES ($1, $2, $3, $4)`,
			sec.Name, version+1, ct, at); err != nil {
			return res, err
		}
	}

	listed := map[string]bool{}
	for _, px := range p.Proxies {
		listed[px.Name] = true
		if px.Secret != "" {
			var n int
			if err := t.QueryRow(ctx, `SELECT count(*) FROM secrets WHERE name = $1`, px.Secret).Scan(&n); err != nil {
				return res, err
			}
			if n == 0 {
				return res, &store.ApplyError{Kind: "proxy", Name: px.Name, Err: fmt.Errorf("its secret %q does not exist (%w)", px.Secret, store.ErrMissingRef)}
			}
		}
		cur, err := getProxy(ctx, t, px.Name, true)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if _, err := t.Exec(ctx, `INSERT INTO proxies (name, secret, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)`,
				px.Name, nullString(px.Secret), string(px.Spec), at, at); err != nil {
				return res, err
			}
			res.Proxies.Created = append(res.Proxies.Created, px.Name)
		case err != nil:
			return res, err
		case cur.Secret == px.Secret && store.SameSpec(cur.Spec, px.Spec):
			res.Proxies.Unchanged = append(res.Proxies.Unchanged, px.Name)
		default:
			if _, err := t.Exec(ctx, `UPDATE proxies SET secret = $1, spec = $2, updated_at = $3 WHERE name = $4`,
				nullString(px.Secret), string(px.Spec), at, px.Name); err != nil {
				return res, err
			}
			res.Proxies.Updated = append(res.Proxies.Updated, px.Name)
		}
	}

	named := map[string]bool{}
	for _, ag := range p.Agents {
		named[ag.Name] = true
		labels, _ := json.Marshal(nonNilMap(ag.Labels))
		cur, err := queryAgents(ctx, t, `WHERE name = $1`, ag.Name)
		switch {
		case err != nil:
			return res, err
		case len(cur) == 0:
			if _, err := t.Exec(ctx, `INSERT INTO agents (name, labels, created_at) VALUES ($1, $2, $3)`, ag.Name, string(labels), at); err != nil {
				return res, err
			}
			res.Agents.Created = append(res.Agents.Created, ag.Name)
		case store.SameLabels(cur[0].Labels, ag.Labels):
			res.Agents.Unchanged = append(res.Agents.Unchanged, ag.Name)
		default:
			if _, err := t.Exec(ctx, `UPDATE agents SET labels = $1 WHERE name = $2`, string(labels), ag.Name); err != nil {
				return res, err
			}
			res.Agents.Updated = append(res.Agents.Updated, ag.Name)
		}
	}

	if p.PruneProxies {
		names, err := nameColumn(ctx, t, `SELECT name FROM proxies ORDER BY name`)
		if err != nil {
			return res, err
		}
		for _, n := range names {
			if listed[n] {
				continue
			}
			if _, err := t.Exec(ctx, `DELETE FROM proxies WHERE name = $1`, n); err != nil {
				return res, err
			}
			res.Proxies.Deleted = append(res.Proxies.Deleted, n)
		}
	}
	if p.PruneAgents {
		names, err := nameColumn(ctx, t, `SELECT name FROM agents ORDER BY name`)
		if err != nil {
			return res, err
		}
		for _, n := range names {
			if named[n] {
				continue
			}
			if _, err := t.Exec(ctx, `DELETE FROM agents WHERE name = $1`, n); err != nil {
				return res, err
			}
			if _, err := t.Exec(ctx, `UPDATE tokens SET revoked_at = $1 WHERE agent = $2 AND revoked_at IS NULL`, at, n); err != nil {
				return res, err
			}
			res.Agents.Deleted = append(res.Agents.Deleted, n)
		}
	}

	if p.DryRun || !res.Changed() {
		return res, nil // rolled back
	}
	if err := t.QueryRow(ctx, `UPDATE config_version SET version = version + 1 RETURNING version`).Scan(&v); err != nil {
		return res, err
	}
	// Delivered at commit, never for a rollback (tx).
	if _, err := t.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, strconv.FormatInt(v, 10)); err != nil {
		return res, err
	}
	return res, t.Commit(ctx)
}

// nameColumn reads one column of names.
func nameColumn(ctx context.Context, q queryer, query string) ([]string, error) {
	rows, err := q.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
