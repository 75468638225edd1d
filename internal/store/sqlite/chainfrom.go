package sqlite

import (
	"context"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// ChainFrom implements store.Audit: a range of the (node, seq) unique
// index, so a follower's poll costs the same at any size of the log.
func (s *Store) ChainFrom(ctx context.Context, node string, after int64, limit int) ([]store.AuditEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.r.QueryContext(ctx, `SELECT node, seq, record_id, kind, data, prev_hash, hash FROM audit_events
		WHERE node = ? AND seq > ? ORDER BY seq LIMIT ?`, node, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		if err := rows.Scan(&e.Node, &e.Seq, &e.RecordID, &e.Kind, &e.Data, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
