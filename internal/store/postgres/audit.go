package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// A batch is written in one round trip: its statements are sent together
// and run as one implicit transaction (the extended protocol runs what comes
// before a Sync as one transaction), each statement inserting many rows
// from arrays. Under load that is one network round trip and one commit per
// group commit of the audit writer, whatever the batch's size.
const (
	sqlInsEvents = `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[])`
	sqlInsRecords = `INSERT INTO audit_records (id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::text[], $12::integer[], $13::float8[], $14::boolean[])`
	// An end event's empty decision, reason or rule leaves the start's.
	sqlUpdEnds = `UPDATE audit_records r SET decision = COALESCE(NULLIF(e.decision, ''), r.decision),
			reason = COALESCE(NULLIF(e.reason, ''), r.reason), rule = COALESCE(NULLIF(e.rule, ''), r.rule),
			status = e.status, latency_ms = e.latency, complete = true
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::float8[]) AS e(id, decision, reason, rule, status, latency)
		WHERE r.id = e.id`
	sqlUpsertHeads = `INSERT INTO audit_heads (node, seq, hash, mac, updated_at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::timestamptz[])
		ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, updated_at = excluded.updated_at`
	// sqlUndo removes one node's part of a batch whose commit was in doubt,
	// if (and only if) it landed: its last link is there with its hash.
	sqlUndo = `WITH landed AS (SELECT 1 FROM audit_events WHERE node = $1 AND seq = $3 AND hash = $4),
		r AS (DELETE FROM audit_records WHERE id = ANY($5::text[]) AND EXISTS (SELECT 1 FROM landed)),
		h AS (DELETE FROM audit_heads WHERE node = $1 AND seq = $3 AND hash = $4)
		DELETE FROM audit_events WHERE node = $1 AND seq BETWEEN $2 AND $3 AND EXISTS (SELECT 1 FROM landed)`
)

// doubt is one node's part of a batch whose commit outcome is unknown: the
// connection failed after the batch was sent, so it may have committed.
//
// The audit writer takes an error from AppendAudit to mean that nothing
// was written: it answers the batch's callers as refused and appends its
// next batch from the same chain head (links seq+1… again). On SQLite that
// holds; over a network, a connection that dies while the commit is under
// way leaves the outcome unknown. Were the batch committed all the same,
// every later batch would collide with its links (the node could never
// write again), or the chain would hold records of requests that were
// refused. So each doubtful batch is remembered here, and the next batch
// of the store first deletes it, in its own transaction, if it landed:
// what the writer believes is then what the database holds. Nothing of
// value is lost: the writer keeps and resends every event that must not be
// lost (the ends of forwarded requests, and every event in fail-open
// mode), and the rest were answered as refused, so their requests were
// never forwarded. The head row it wrote goes too; the next batch writes
// its own.
type doubt struct {
	id         int64
	node       string
	first, end int64 // seq range
	hash       []byte
	records    []string // ids of the index rows it inserted
}

// AppendAudit implements store.Audit: the batch, and the undoing of any
// batch in doubt, in one transaction and one round trip.
func (s *Store) AppendAudit(ctx context.Context, batch []store.AuditEvent) error {
	if len(batch) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	s.dmu.Lock()
	doubts := append([]doubt(nil), s.doubts...)
	s.dmu.Unlock()
	for _, d := range doubts {
		b.Queue(sqlUndo, d.node, d.first, d.end, d.hash, d.records)
	}
	n := len(batch)
	ev := struct {
		node, rid, kind  []string
		seq              []int64
		data, prev, hash [][]byte
	}{make([]string, n), make([]string, n), make([]string, n), make([]int64, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)}
	var rec struct {
		id, node, proxy, agent, tok, method, path, decision, reason, rule []string
		time                                                              []time.Time
		status                                                            []int32
		lat                                                               []float64
		complete                                                          []bool
	}
	var end struct {
		id, decision, reason, rule []string
		status                     []int32
		lat                        []float64
	}
	heads := map[string]int{} // node → index of its last event with a HeadMAC
	for i := range batch {
		e := &batch[i]
		ev.node[i], ev.seq[i], ev.rid[i], ev.kind[i] = text(e.Node), e.Seq, text(e.RecordID), text(e.Kind)
		ev.data[i], ev.prev[i], ev.hash[i] = e.Data, e.PrevHash, e.Hash
		x := &e.Index
		switch e.Kind {
		case "record", "start":
			rec.id = append(rec.id, text(x.ID))
			rec.time = append(rec.time, utc(x.Time))
			rec.node = append(rec.node, text(x.Node))
			rec.proxy = append(rec.proxy, text(x.Proxy))
			rec.agent = append(rec.agent, text(x.Agent))
			rec.tok = append(rec.tok, text(x.TokenID))
			rec.method = append(rec.method, text(x.Method))
			rec.path = append(rec.path, text(x.Path))
			rec.decision = append(rec.decision, text(x.Decision))
			rec.reason = append(rec.reason, text(x.Reason))
			rec.rule = append(rec.rule, text(x.Rule))
			rec.status = append(rec.status, int32(x.Status))
			rec.lat = append(rec.lat, x.LatencyMS)
			rec.complete = append(rec.complete, e.Kind == "record")
		case "end":
			end.id = append(end.id, text(e.RecordID))
			end.decision = append(end.decision, text(x.Decision))
			end.reason = append(end.reason, text(x.Reason))
			end.rule = append(end.rule, text(x.Rule))
			end.status = append(end.status, int32(x.Status))
			end.lat = append(end.lat, x.LatencyMS)
		}
		if e.HeadMAC != nil {
			heads[e.Node] = i
		}
	}
	b.Queue(sqlInsEvents, ev.node, ev.seq, ev.rid, ev.kind, ev.data, ev.prev, ev.hash)
	if len(rec.id) > 0 {
		b.Queue(sqlInsRecords, rec.id, rec.time, rec.node, rec.proxy, rec.agent, rec.tok, rec.method, rec.path,
			rec.decision, rec.reason, rec.rule, rec.status, rec.lat, rec.complete)
	}
	if len(end.id) > 0 {
		b.Queue(sqlUpdEnds, end.id, end.decision, end.reason, end.rule, end.status, end.lat)
	}
	if len(heads) > 0 {
		var hn []string
		var hs []int64
		var hh, hm [][]byte
		var ht []time.Time
		now := utc(time.Now())
		for node, i := range heads {
			hn, hs, hh, hm, ht = append(hn, text(node)), append(hs, batch[i].Seq), append(hh, batch[i].Hash), append(hm, batch[i].HeadMAC), append(ht, now)
		}
		b.Queue(sqlUpsertHeads, hn, hs, hh, hm, ht)
	}
	err := s.pool.SendBatch(ctx, b).Close()
	if s.afterAppend != nil {
		err = s.afterAppend(err)
	}
	if err == nil {
		if len(doubts) > 0 {
			// Those were resolved; doubts added meanwhile stay.
			done := map[int64]bool{}
			for _, d := range doubts {
				done[d.id] = true
			}
			s.dmu.Lock()
			s.doubts = slices.DeleteFunc(s.doubts, func(d doubt) bool { return done[d.id] })
			s.dmu.Unlock()
		}
		return nil
	}
	if inDoubt(err) {
		s.dmu.Lock()
		for _, d := range doubtsOf(batch) {
			s.doubtSeq++
			d.id = s.doubtSeq
			s.doubts = append(s.doubts, d)
		}
		s.dmu.Unlock()
		s.log.Warn("an audit batch's commit outcome is unknown (the connection failed after it was sent); the next batch undoes it if it landed",
			"events", len(batch), "err", err)
	}
	return err
}

// inDoubt reports whether a failed batch may nevertheless have committed:
// unless the error came before anything was sent, or is an error the
// server reported for a statement (which rolls the implicit transaction
// back), the connection may have failed after the commit.
func inDoubt(err error) bool {
	if pgconn.SafeToRetry(err) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Severity == "ERROR" {
		return false
	}
	return true
}

func doubtsOf(batch []store.AuditEvent) []doubt {
	byNode := map[string]*doubt{}
	var order []string
	for _, e := range batch {
		d := byNode[e.Node]
		if d == nil {
			d = &doubt{node: text(e.Node), first: e.Seq}
			byNode[e.Node] = d
			order = append(order, e.Node)
		}
		d.first, d.end, d.hash = min(d.first, e.Seq), max(d.end, e.Seq), e.Hash
		if e.Kind == "record" || e.Kind == "start" {
			d.records = append(d.records, text(e.Index.ID))
		}
	}
	out := make([]doubt, 0, len(order))
	for _, n := range order {
		d := byNode[n]
		if d.records == nil {
			d.records = []string{}
		}
		out = append(out, *d)
	}
	return out
}

// text makes s storable in a text column: PostgreSQL refuses invalid UTF-8
// and NUL, where SQLite took any bytes. Each invalid byte becomes U+FFFD,
// as encoding/json does when it writes the record's data, so the index
// keeps agreeing with the hashed data that verify compares it with. (A NUL
// cannot reach an index field from an HTTP request.)
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r == 0:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// ChainHead implements store.Audit.
func (s *Store) ChainHead(ctx context.Context, node string) (store.ChainHead, error) {
	var h store.ChainHead
	err := s.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_events WHERE node = $1 ORDER BY seq DESC LIMIT 1`, node).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ChainHead{}, nil
	}
	return h, err
}

// Heads implements store.Audit.
func (s *Store) Heads(ctx context.Context) (map[string]store.ChainHead, error) {
	rows, err := s.pool.Query(ctx, `SELECT node, seq, hash, mac, updated_at FROM audit_heads`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.ChainHead{}
	for rows.Next() {
		var node string
		var h store.ChainHead
		if err := rows.Scan(&node, &h.Seq, &h.Hash, &h.MAC, &h.UpdatedAt); err != nil {
			return nil, err
		}
		h.UpdatedAt = h.UpdatedAt.UTC()
		out[node] = h
	}
	return out, rows.Err()
}

const eventCols = `node, seq, record_id, kind, data, prev_hash, hash`

func scanEvent(r pgx.Row) (store.AuditEvent, error) {
	var e store.AuditEvent
	err := r.Scan(&e.Node, &e.Seq, &e.RecordID, &e.Kind, &e.Data, &e.PrevHash, &e.Hash)
	return e, err
}

func collectEvents(rows pgx.Rows, err error) ([]store.AuditEvent, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ChainLink implements store.Audit.
func (s *Store) ChainLink(ctx context.Context, node string, seq int64) (store.AuditEvent, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventCols+` FROM audit_events WHERE node = $1 AND seq = $2`, node, seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AuditEvent{}, store.ErrNotFound
	}
	return e, err
}

// ChainFrom implements store.Audit: a range of the (node, seq) key.
func (s *Store) ChainFrom(ctx context.Context, node string, after int64, limit int) ([]store.AuditEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	return collectEvents(s.pool.Query(ctx, `SELECT `+eventCols+` FROM audit_events WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		node, after, limit))
}

// Chain implements store.Audit. The rows stream: a chain of any length is
// walked in constant memory.
func (s *Store) Chain(ctx context.Context, node string, fn func(store.AuditEvent) error) error {
	rows, err := s.pool.Query(ctx, `SELECT `+eventCols+` FROM audit_events WHERE node = $1 ORDER BY seq`, node)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ChainNodes implements store.Audit with a skip scan of the (node, seq)
// key: one index probe per node, however many links each has.
func (s *Store) ChainNodes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE n(node) AS (
			(SELECT node FROM audit_events ORDER BY node LIMIT 1)
			UNION ALL
			SELECT (SELECT e.node FROM audit_events e WHERE e.node > n.node ORDER BY e.node LIMIT 1) FROM n WHERE n.node IS NOT NULL)
		SELECT node FROM n WHERE node IS NOT NULL`)
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

// DeleteAuditPrefix implements store.Audit, on the (node, seq) key.
func (s *Store) DeleteAuditPrefix(ctx context.Context, node string, before int64, limit int) (events, records int64, err error) {
	if limit <= 0 {
		limit = 10000
	}
	err = s.tx(ctx, false, func(t pgx.Tx) error {
		var lo *int64
		if err := t.QueryRow(ctx, `SELECT min(seq) FROM audit_events WHERE node = $1 AND seq < $2`, node, before).Scan(&lo); err != nil {
			return err
		}
		if lo == nil {
			return nil
		}
		hi := min(before, *lo+int64(limit))
		tag, err := t.Exec(ctx, `DELETE FROM audit_records WHERE node = $1 AND id IN
			(SELECT record_id FROM audit_events WHERE node = $1 AND seq >= $2 AND seq < $3 AND kind IN ('record', 'start'))`,
			node, *lo, hi)
		if err != nil {
			return err
		}
		records = tag.RowsAffected()
		tag, err = t.Exec(ctx, `DELETE FROM audit_events WHERE node = $1 AND seq < $2`, node, hi)
		if err != nil {
			return err
		}
		events = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return events, records, nil
}

const recordCols = `id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete`

func scanIndex(r pgx.Row) (store.LogIndex, error) {
	var x store.LogIndex
	err := r.Scan(&x.ID, &x.Time, &x.Node, &x.Proxy, &x.Agent, &x.TokenID, &x.Method, &x.Path, &x.Decision, &x.Reason, &x.Rule,
		&x.Status, &x.LatencyMS, &x.Complete)
	x.Time = x.Time.UTC()
	return x, err
}

// QueryLogs implements store.Audit: filters on indexed columns, newest
// first, keyset-paged by id (ids are time-ordered).
func (s *Store) QueryLogs(ctx context.Context, q store.LogQuery) ([]store.LogRow, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+itoa(len(args))))
	}
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
		args = append(args, q.Reason, likeEscape(q.Reason)+":%")
		where = append(where, "(reason = $"+itoa(len(args)-1)+" OR reason LIKE $"+itoa(len(args))+` ESCAPE '\')`)
	}
	if q.Node != "" {
		add("node = ?", q.Node)
	}
	if q.Status != 0 {
		add("status = ?", q.Status)
	}
	if q.PathContains != "" {
		add("strpos(path, ?) > 0", q.PathContains)
	}
	// A time window is also an id range (store.IDFloor), so the index of
	// any other filter seeks straight to it instead of scanning from the
	// newest record.
	if !q.Since.IsZero() {
		add("time >= ?", utc(q.Since))
		add("id >= ?", store.IDFloor(q.Since.Add(-store.IDSkew)))
	}
	if !q.Until.IsZero() {
		add("time < ?", utc(q.Until))
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
	args = append(args, limit)
	sqlq += " LIMIT $" + itoa(len(args))
	rows, err := s.pool.Query(ctx, sqlq, args...)
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
	if q.WithData && len(out) > 0 {
		ids := make([]string, len(out))
		at := map[string]int{}
		for i, r := range out {
			ids[i], at[r.Index.ID] = r.Index.ID, i
		}
		evs, err := collectEvents(s.pool.Query(ctx, `SELECT `+eventCols+` FROM audit_events WHERE record_id = ANY($1) ORDER BY record_id, seq`, ids))
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if i, ok := at[e.RecordID]; ok {
				out[i].Events = append(out[i].Events, e)
			}
		}
	}
	return out, nil
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// GetLog implements store.Audit.
func (s *Store) GetLog(ctx context.Context, id string) (store.LogRow, error) {
	x, err := scanIndex(s.pool.QueryRow(ctx, `SELECT `+recordCols+` FROM audit_records WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.LogRow{}, store.ErrNotFound
	}
	if err != nil {
		return store.LogRow{}, err
	}
	ev, err := collectEvents(s.pool.Query(ctx, `SELECT `+eventCols+` FROM audit_events WHERE record_id = $1 ORDER BY node, seq`, id))
	return store.LogRow{Index: x, Events: ev}, err
}

// LastUsed implements store.Audit from the records index (one probe of
// the (token_id, id) index per token).
func (s *Store) LastUsed(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT t.id, r.time FROM unnest($1::text[]) AS t(id)
		CROSS JOIN LATERAL (SELECT time FROM audit_records WHERE token_id = t.id ORDER BY id DESC LIMIT 1) r`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = at.UTC()
	}
	return out, rows.Err()
}

// Records implements store.Audit: one streamed join of the index and the
// events, ordered by id then seq.
func (s *Store) Records(ctx context.Context, node string, fn func(store.LogRow) error) error {
	rows, err := s.pool.Query(ctx, `SELECT r.id, r.time, r.node, r.proxy, r.agent, r.token_id, r.method, r.path, r.decision,
		r.reason, r.rule, r.status, r.latency_ms, r.complete, e.node, e.seq, e.record_id, e.kind, e.data, e.prev_hash, e.hash
		FROM audit_records r LEFT JOIN audit_events e ON e.record_id = r.id
		WHERE r.node = $1 ORDER BY r.id, e.seq`, node)
	if err != nil {
		return err
	}
	defer rows.Close()
	var cur *store.LogRow
	for rows.Next() {
		var x store.LogIndex
		var en, erid, ekind *string
		var eseq *int64
		var data, prev, h []byte
		if err := rows.Scan(&x.ID, &x.Time, &x.Node, &x.Proxy, &x.Agent, &x.TokenID, &x.Method, &x.Path, &x.Decision, &x.Reason, &x.Rule,
			&x.Status, &x.LatencyMS, &x.Complete, &en, &eseq, &erid, &ekind, &data, &prev, &h); err != nil {
			return err
		}
		x.Time = x.Time.UTC()
		if cur == nil || cur.Index.ID != x.ID {
			if cur != nil {
				if err := fn(*cur); err != nil {
					return err
				}
			}
			cur = &store.LogRow{Index: x}
		}
		if eseq != nil {
			cur.Events = append(cur.Events, store.AuditEvent{Node: *en, Seq: *eseq, RecordID: *erid, Kind: *ekind, Data: data, PrevHash: prev, Hash: h})
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
