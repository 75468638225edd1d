package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// Apply implements store.Config: the whole plan in one write transaction
// (SQLite's one writer at a time, BEGIN IMMEDIATE, so every read below sees
// every committed write). A plan that changes nothing and a dry run are
// rolled back: no write, no version bump.
func (s *Store) Apply(ctx context.Context, p store.ApplyPlan) (store.ApplyResult, error) {
	var res store.ApplyResult
	if err := store.CheckPlan(p); err != nil {
		return res, err
	}
	t, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer t.Rollback()
	at := micros(p.At)

	for _, sec := range p.Secrets {
		var cur sql.NullInt64
		var old []byte
		err := t.QueryRowContext(ctx, `SELECT s.version, v.ciphertext FROM secrets s
			LEFT JOIN secret_versions v ON v.name = s.name AND v.version = s.version WHERE s.name = ?`, sec.Name).Scan(&cur, &old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return res, err
		}
		version := int(cur.Int64)
		ct, kind, fields, err := sec.Seal(version, old)
		if err != nil {
			return res, err
		}
		if ct == nil {
			res.Secrets.Unchanged = append(res.Secrets.Unchanged, sec.Name)
			continue
		}
		fj, _ := json.Marshal(nonNil(fields))
		if version == 0 {
			if _, err := t.ExecContext(ctx, `INSERT INTO secrets (name, version, kind, fields, created_at) VALUES (?, 1, ?, ?, ?)`,
				sec.Name, kind, string(fj), at); err != nil {
				return res, err
			}
			res.Secrets.Created = append(res.Secrets.Created, sec.Name)
		} else {
			if _, err := t.ExecContext(ctx, `UPDATE secrets SET version = ?, kind = ?, fields = ?, rotated_at = ? WHERE name = ?`,
				version+1, kind, string(fj), at, sec.Name); err != nil {
				return res, err
			}
			res.Secrets.Updated = append(res.Secrets.Updated, sec.Name)
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO secret_versions (name, version, ciphertext, created_at) VALUES (?, ?, ?, ?)`,
			sec.Name, version+1, ct, at); err != nil {
			return res, err
		}
	}

	listed := map[string]bool{}
	for _, px := range p.Proxies {
		listed[px.Name] = true
		if px.Secret != "" {
			var n int
			if err := t.QueryRowContext(ctx, `SELECT count(*) FROM secrets WHERE name = ?`, px.Secret).Scan(&n); err != nil {
				return res, err
			}
			if n == 0 {
				return res, &store.ApplyError{Kind: "proxy", Name: px.Name, Err: fmt.Errorf("its secret %q does not exist (%w)", px.Secret, store.ErrMissingRef)}
			}
		}
		cur, err := getProxy(ctx, t, px.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if _, err := t.ExecContext(ctx, `INSERT INTO proxies (name, secret, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
				px.Name, nullString(px.Secret), string(px.Spec), at, at); err != nil {
				return res, err
			}
			res.Proxies.Created = append(res.Proxies.Created, px.Name)
		case err != nil:
			return res, err
		case cur.Secret == px.Secret && store.SameSpec(cur.Spec, px.Spec):
			res.Proxies.Unchanged = append(res.Proxies.Unchanged, px.Name)
		default:
			if _, err := t.ExecContext(ctx, `UPDATE proxies SET secret = ?, spec = ?, updated_at = ? WHERE name = ?`,
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
		cur, err := queryAgents(ctx, t, `WHERE name = ?`, ag.Name)
		switch {
		case err != nil:
			return res, err
		case len(cur) == 0:
			if _, err := t.ExecContext(ctx, `INSERT INTO agents (name, labels, created_at) VALUES (?, ?, ?)`, ag.Name, string(labels), at); err != nil {
				return res, err
			}
			res.Agents.Created = append(res.Agents.Created, ag.Name)
		case store.SameLabels(cur[0].Labels, ag.Labels):
			res.Agents.Unchanged = append(res.Agents.Unchanged, ag.Name)
		default:
			if _, err := t.ExecContext(ctx, `UPDATE agents SET labels = ? WHERE name = ?`, string(labels), ag.Name); err != nil {
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
			if _, err := t.ExecContext(ctx, `DELETE FROM proxies WHERE name = ?`, n); err != nil {
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
			if _, err := t.ExecContext(ctx, `DELETE FROM agents WHERE name = ?`, n); err != nil {
				return res, err
			}
			if _, err := t.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE agent = ? AND revoked_at IS NULL`, at, n); err != nil {
				return res, err
			}
			res.Agents.Deleted = append(res.Agents.Deleted, n)
		}
	}

	if p.DryRun || !res.Changed() {
		return res, nil // rolled back
	}
	if _, err := t.ExecContext(ctx, `UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'`); err != nil {
		return res, err
	}
	return res, t.Commit()
}

// nameColumn reads one column of names.
func nameColumn(ctx context.Context, q queryer, query string) ([]string, error) {
	rows, err := q.QueryContext(ctx, query)
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
