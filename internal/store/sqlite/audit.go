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
	// The file must still be the one opened: a deleted database would take
	// commits into an unlinked file (one stat per batch, about a µs).
	if err := s.sameFile(); err != nil {
		return err
	}
	return s.tx(ctx, false, func(t *sql.Tx) error {
		// Events, then index rows, each in multi-row INSERTs of up to
		// insertChunk rows (one statement for a batch instead of one per
		// row: binding and stepping a statement costs more than a row),
		// then the ends' updates (their rows may come from this batch).
		var recs []*store.AuditEvent
		for i := 0; i < len(batch); {
			n := chunk(len(batch) - i)
			args := make([]any, 0, n*7)
			for _, e := range batch[i : i+n] {
				args = append(args, e.Node, e.Seq, e.RecordID, e.Kind, e.Data, e.PrevHash, e.Hash)
			}
			if _, err := t.StmtContext(ctx, s.insEvents[n]).ExecContext(ctx, args...); err != nil {
				return err
			}
			i += n
		}
		for i := range batch {
			if k := batch[i].Kind; k == "record" || k == "start" {
				recs = append(recs, &batch[i])
			}
		}
		for i := 0; i < len(recs); {
			n := chunk(len(recs) - i)
			args := make([]any, 0, n*14)
			for _, e := range recs[i : i+n] {
				x := &e.Index
				args = append(args, x.ID, micros(x.Time), x.Node, x.Proxy, x.Agent, x.TokenID, x.Method, x.Path,
					x.Decision, x.Reason, x.Rule, x.Status, x.LatencyMS, e.Kind == "record")
			}
			if _, err := t.StmtContext(ctx, s.insRecords[n]).ExecContext(ctx, args...); err != nil {
				return err
			}
			i += n
		}
		var end, endStatus *sql.Stmt
		for i := range batch {
			e := &batch[i]
			if e.Kind == "end" {
				x := &e.Index
				var err error
				if x.Decision == "" && x.Reason == "" && x.Rule == "" {
					// The common case: only the status arrives, so only
					// the status index changes.
					if endStatus == nil {
						endStatus = t.StmtContext(ctx, s.updEndStatus)
					}
					_, err = endStatus.ExecContext(ctx, x.Status, x.LatencyMS, e.RecordID)
				} else {
					if end == nil {
						end = t.StmtContext(ctx, s.updEnd)
					}
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

// insertChunks are the row counts of the prepared multi-row INSERTs; a
// batch is cut into the largest chunks that fit.
var insertChunks = []int{64, 16, 4, 1}

func chunk(left int) int {
	for _, c := range insertChunks {
		if left >= c {
			return c
		}
	}
	return 1
}

// multiRow repeats a VALUES tuple n times.
func multiRow(prefix, tuple string, n int) string {
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	return b.String()
}

const (
	sqlInsEvents  = `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES `
	tupleEvent    = `(?, ?, ?, ?, ?, ?, ?)`
	sqlInsRecords = `INSERT INTO audit_records (id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete) VALUES `
	tupleRecord   = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
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
	// A time window is also an id range (store.IDFloor), so the index of
	// any other filter seeks straight to it instead of scanning from the
	// newest record.
	if !q.Since.IsZero() {
		add("time >= ?", micros(q.Since))
		add("id >= ?", store.IDFloor(q.Since.Add(-store.IDSkew)))
	}
	if !q.Until.IsZero() {
		add("time < ?", micros(q.Until))
		add("id < ?", store.IDFloor(q.Until.Add(store.IDSkew)))
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
