package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// Heads implements store.Audit.
func (s *Store) Heads(ctx context.Context) (map[string]store.ChainHead, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT node, seq, hash, mac, updated_at FROM audit_heads`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.ChainHead{}
	for rows.Next() {
		var node string
		var h store.ChainHead
		var at int64
		if err := rows.Scan(&node, &h.Seq, &h.Hash, &h.MAC, &at); err != nil {
			return nil, err
		}
		h.UpdatedAt = fromMicros(at)
		out[node] = h
	}
	return out, rows.Err()
}

// ChainLink implements store.Audit.
func (s *Store) ChainLink(ctx context.Context, node string, seq int64) (store.AuditEvent, error) {
	var e store.AuditEvent
	err := s.r.QueryRowContext(ctx, `SELECT node, seq, record_id, kind, data, prev_hash, hash FROM audit_events WHERE node = ? AND seq = ?`,
		node, seq).Scan(&e.Node, &e.Seq, &e.RecordID, &e.Kind, &e.Data, &e.PrevHash, &e.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuditEvent{}, store.ErrNotFound
	}
	return e, err
}

// DeleteAuditPrefix implements store.Audit. The range [lowest seq, bound)
// is read on the (node, seq) unique index, so each call costs its own rows
// only, however long the chain.
func (s *Store) DeleteAuditPrefix(ctx context.Context, node string, before int64, limit int) (events, records int64, err error) {
	if limit <= 0 {
		limit = 10000
	}
	err = s.tx(ctx, false, func(t *sql.Tx) error {
		var lo sql.NullInt64
		if err := t.QueryRowContext(ctx, `SELECT MIN(seq) FROM audit_events WHERE node = ? AND seq < ?`, node, before).Scan(&lo); err != nil {
			return err
		}
		if !lo.Valid {
			return nil
		}
		hi := min(before, lo.Int64+int64(limit))
		res, err := t.ExecContext(ctx, `DELETE FROM audit_records WHERE node = ? AND id IN
			(SELECT record_id FROM audit_events WHERE node = ? AND seq >= ? AND seq < ? AND kind IN ('record', 'start'))`,
			node, node, lo.Int64, hi)
		if err != nil {
			return err
		}
		if records, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = t.ExecContext(ctx, `DELETE FROM audit_events WHERE node = ? AND seq < ?`, node, hi)
		if err != nil {
			return err
		}
		events, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return events, records, nil
}
