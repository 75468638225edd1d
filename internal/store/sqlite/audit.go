package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// AppendAudit implements store.Audit: the events of one batch and their
// index rows in one transaction.
func (s *Store) AppendAudit(ctx context.Context, batch []store.AuditEvent) error {
	if len(batch) == 0 {
		return nil
	}
	return s.tx(ctx, false, func(t *sql.Tx) error {
		// The statements are prepared once on the write connection
		// (sqlite.Open): re-parsing SQL for every small batch cost more
		// than the inserts themselves.
		ins, idx, end, endStatus := t.StmtContext(ctx, s.insEvent), t.StmtContext(ctx, s.insRecord), t.StmtContext(ctx, s.updEnd), t.StmtContext(ctx, s.updEndStatus)
		for i := range batch {
			e := &batch[i]
			if _, err := ins.ExecContext(ctx, e.Node, e.Seq, e.RecordID, e.Kind, e.Data, e.PrevHash, e.Hash); err != nil {
				return err
			}
			x := &e.Index
			switch e.Kind {
			case "record", "start":
				if _, err := idx.ExecContext(ctx, x.ID, micros(x.Time), x.Node, x.Proxy, x.Agent, x.TokenID, x.Method, x.Path,
					x.Decision, x.Reason, x.Rule, x.Status, x.LatencyMS, e.Kind == "record"); err != nil {
					return err
				}
			case "end":
				var err error
				if x.Decision == "" && x.Reason == "" && x.Rule == "" {
					// The common case: only the status arrives, so only
					// the status index changes.
					_, err = endStatus.ExecContext(ctx, x.Status, x.LatencyMS, e.RecordID)
				} else {
					_, err = end.ExecContext(ctx, x.Decision, x.Reason, x.Rule, x.Status, x.LatencyMS, e.RecordID)
				}
				if err != nil {
					return err
				}
			}
			if e.HeadMAC != nil {
				// One statement per batch (the writer marks its last
				// event), so parsing it here costs little.
				if _, err := t.ExecContext(ctx, sqlUpsertHead, e.Node, e.Seq, e.Hash, e.HeadMAC, micros(time.Now())); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

const (
	sqlInsEvent  = `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlInsRecord = `INSERT INTO audit_records (id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// An end event's empty decision, reason or rule leaves the start's.
	sqlUpdEnd = `UPDATE audit_records SET decision = COALESCE(NULLIF(?, ''), decision), reason = COALESCE(NULLIF(?, ''), reason),
			rule = COALESCE(NULLIF(?, ''), rule), status = ?, latency_ms = ?, complete = 1 WHERE id = ?`
	sqlUpdEndStatus = `UPDATE audit_records SET status = ?, latency_ms = ?, complete = 1 WHERE id = ?`
	sqlUpsertHead   = `INSERT INTO audit_heads (node, seq, hash, mac, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, updated_at = excluded.updated_at`
)

// ChainHead implements store.Audit.
func (s *Store) ChainHead(ctx context.Context, node string) (store.ChainHead, error) {
	var h store.ChainHead
	err := s.w.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events WHERE node = ? ORDER BY seq DESC LIMIT 1`, node).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChainHead{}, nil
	}
	return h, err
}

const recordCols = `id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete`

func scanIndex(rows interface{ Scan(...any) error }) (store.LogIndex, error) {
	var x store.LogIndex
	var at int64
	err := rows.Scan(&x.ID, &at, &x.Node, &x.Proxy, &x.Agent, &x.TokenID, &x.Method, &x.Path, &x.Decision, &x.Reason, &x.Rule,
		&x.Status, &x.LatencyMS, &x.Complete)
	x.Time = fromMicros(at)
	return x, err
}

// QueryLogs implements store.Audit: filters on indexed columns, newest
// first, keyset-paged by id (ids are time-ordered).
func (s *Store) QueryLogs(ctx context.Context, q store.LogQuery) ([]store.LogRow, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if q.Proxy != "" {
		add("proxy = ?", q.Proxy)
	}
	if q.Agent != "" {
		add("agent = ?", q.Agent)
	}
	if q.TokenID != "" {
		add("token_id = ?", q.TokenID)
	}
	if q.Decision != "" {
		add("decision = ?", q.Decision)
	}
	if q.Reason != "" {
		add("(reason = ? OR reason LIKE ? ESCAPE '\\')", q.Reason)
		args = append(args, likeEscape(q.Reason)+":%")
	}
	if q.Node != "" {
		add("node = ?", q.Node)
	}
	if q.Status != 0 {
		add("status = ?", q.Status)
	}
	if q.PathContains != "" {
		add("instr(path, ?) > 0", q.PathContains)
	}
	if !q.Since.IsZero() {
		add("time >= ?", micros(q.Since))
	}
	if !q.Until.IsZero() {
		add("time < ?", micros(q.Until))
	}
	if q.Before != "" {
		add("id < ?", q.Before)
	}
	if q.After != "" {
		add("id > ?", q.After)
	}
	sqlq := `SELECT ` + recordCols + ` FROM audit_records`
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	if q.Ascending {
		sqlq += " ORDER BY id ASC"
	} else {
		sqlq += " ORDER BY id DESC"
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	sqlq += " LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, err
	}
	var out []store.LogRow
	for rows.Next() {
		x, err := scanIndex(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, store.LogRow{Index: x})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if q.WithData {
		for i := range out {
			if out[i].Events, err = s.events(ctx, out[i].Index.ID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (s *Store) events(ctx context.Context, id string) ([]store.AuditEvent, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT node, seq, record_id, kind, data, prev_hash, hash FROM audit_events WHERE record_id = ? ORDER BY seq`, id)
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

// GetLog implements store.Audit.
func (s *Store) GetLog(ctx context.Context, id string) (store.LogRow, error) {
	x, err := scanIndex(s.r.QueryRowContext(ctx, `SELECT `+recordCols+` FROM audit_records WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.LogRow{}, store.ErrNotFound
	}
	if err != nil {
		return store.LogRow{}, err
	}
	ev, err := s.events(ctx, id)
	return store.LogRow{Index: x, Events: ev}, err
}

// Chain implements store.Audit.
func (s *Store) Chain(ctx context.Context, node string, fn func(store.AuditEvent) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT node, seq, record_id, kind, data, prev_hash, hash FROM audit_events WHERE node = ? ORDER BY seq`, node)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e store.AuditEvent
		if err := rows.Scan(&e.Node, &e.Seq, &e.RecordID, &e.Kind, &e.Data, &e.PrevHash, &e.Hash); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ChainNodes implements store.Audit.
func (s *Store) ChainNodes(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT node FROM audit_events ORDER BY node`)
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

// LastUsed implements store.Audit from the records index, so that the hot
// path never writes a "last used" column.
func (s *Store) LastUsed(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, id := range ids {
		var at int64
		err := s.r.QueryRowContext(ctx, `SELECT time FROM audit_records WHERE token_id = ? ORDER BY id DESC LIMIT 1`, id).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = fromMicros(at)
	}
	return out, nil
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// Records implements store.Audit: one streamed join of the index and the
// events (through the record_id index), ordered by id then seq.
func (s *Store) Records(ctx context.Context, node string, fn func(store.LogRow) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT r.id, r.time, r.node, r.proxy, r.agent, r.token_id, r.method, r.path, r.decision,
		r.reason, r.rule, r.status, r.latency_ms, r.complete, e.node, e.seq, e.record_id, e.kind, e.data, e.prev_hash, e.hash
		FROM audit_records r LEFT JOIN audit_events e ON e.record_id = r.id
		WHERE r.node = ? ORDER BY r.id, e.seq`, node)
	if err != nil {
		return err
	}
	defer rows.Close()
	var cur *store.LogRow
	for rows.Next() {
		var x store.LogIndex
		var at int64
		var e struct {
			node, rid, kind sql.NullString
			seq             sql.NullInt64
			data, prev, h   []byte
		}
		if err := rows.Scan(&x.ID, &at, &x.Node, &x.Proxy, &x.Agent, &x.TokenID, &x.Method, &x.Path, &x.Decision, &x.Reason, &x.Rule,
			&x.Status, &x.LatencyMS, &x.Complete, &e.node, &e.seq, &e.rid, &e.kind, &e.data, &e.prev, &e.h); err != nil {
			return err
		}
		x.Time = fromMicros(at)
		if cur == nil || cur.Index.ID != x.ID {
			if cur != nil {
				if err := fn(*cur); err != nil {
					return err
				}
			}
			cur = &store.LogRow{Index: x}
		}
		if e.seq.Valid {
			cur.Events = append(cur.Events, store.AuditEvent{Node: e.node.String, Seq: e.seq.Int64, RecordID: e.rid.String,
				Kind: e.kind.String, Data: e.data, PrevHash: e.prev, Hash: e.h})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if cur != nil {
		return fn(*cur)
	}
	return nil
}
