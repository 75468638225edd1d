package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// streamRoutes registers the endpoints of stream.go and search.go: the log
// stream, the log search and the audit hash.
func (a *API) streamRoutes(read func(pattern string, h handler)) {
	read("GET /api/v1/logs/stream", a.streamLogs)
	read("GET /api/v1/logs/search", a.searchLogs)
	read("POST /api/v1/audit/hash", a.auditHash)
}

// The log stream's pace and bounds.
const (
	// streamPoll: how often the chains are read for new events. One
	// indexed range read per node, whatever the size of the log.
	streamPoll = 250 * time.Millisecond
	// streamHeartbeat: a comment line after this long without a write,
	// so proxies and clients can tell a quiet stream from a dead one.
	streamHeartbeat = 15 * time.Second
	// streamNodes: how often the list of nodes with a chain is re-read (a
	// node that joins is followed from its first event).
	streamNodes = 5 * time.Second
	// streamPage events are read at a time; at most streamPages pages per
	// node per poll, so a long replay of one node yields to the others.
	streamPage  = 1000
	streamPages = 20
	// streamInflight bounds the start events kept to merge with their end
	// without a read (beyond it, an end reads its record).
	streamInflight = 10000
	// maxStreamCursor bounds the cursor a client sends back.
	maxStreamCursor = 16 << 10
)

// streamCursor is a stream position: for each node, the last seq of its
// chain that was read. It is the "id:" of every event, so a client that
// reconnects with Last-Event-ID resumes exactly after it: a chain is the
// commit order of its node, so "seq > last" can neither miss nor repeat an
// event, unlike a record id, which is the time of arrival.
type streamCursor map[string]int64

const streamCursorPrefix = "s1:"

func (c streamCursor) String() string {
	b, _ := json.Marshal(map[string]int64(c)) // keys sorted
	return base64.RawURLEncoding.EncodeToString(append([]byte(streamCursorPrefix), b...))
}

func parseStreamCursor(s string) (streamCursor, error) {
	bad := badRequest("the stream cursor (Last-Event-ID or cursor) is not one this API sent")
	if len(s) > maxStreamCursor {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(b), streamCursorPrefix) {
		return nil, bad
	}
	var m map[string]int64
	if err := json.Unmarshal(b[len(streamCursorPrefix):], &m); err != nil || m == nil {
		return nil, bad
	}
	for _, seq := range m {
		if seq < 0 {
			return nil, bad
		}
	}
	return m, nil
}

// logStream is one client's GET /api/v1/logs/stream.
type logStream struct {
	a    *API
	w    http.ResponseWriter
	rc   *http.ResponseController
	q    store.LogQuery
	role string

	pos     streamCursor
	nodes   []string
	nodesAt time.Time
	// inflight: start events seen whose end is still to come, and whether
	// the record was sent (an update of a sent record is always sent, so a
	// follower never waits for an end that the filters would hide).
	inflight map[string]*inflightStart

	wrote     bool      // something was written since the last flush
	lastWrite time.Time // for heartbeats
	lastID    string    // the last id: written
}

type inflightStart struct {
	start store.AuditEvent
	sent  bool
}

// streamLogs serves GET /api/v1/logs/stream: server-sent events, one per
// audit event that matches the filters, in each node's commit order.
func (a *API) streamLogs(c *call) error {
	vals := c.r.URL.Query()
	cursor := vals.Get("cursor")
	vals.Del("cursor")
	for _, k := range []string{"until", "order", "limit"} {
		if vals.Has(k) {
			return badRequest("%s does not apply to the stream (it has no end and runs oldest first); GET /api/v1/logs takes it", k)
		}
	}
	q, err := LogQuery(vals)
	if err != nil {
		return err
	}
	if id := c.r.Header.Get("Last-Event-ID"); id != "" {
		// A reconnecting client sends the original URL (and its cursor)
		// again: the header is the more recent position.
		cursor = id
	}
	s := &logStream{a: a, w: c.w, rc: http.NewResponseController(c.w), q: q, role: c.who.Role,
		inflight: map[string]*inflightStart{}}
	ctx := c.r.Context()
	switch {
	case cursor != "":
		if s.pos, err = parseStreamCursor(cursor); err != nil {
			return err
		}
	case !q.Since.IsZero():
		err = s.startSince(ctx, q.Since)
	default:
		err = s.startAtHeads(ctx)
	}
	if err != nil {
		return err
	}

	// A WriteTimeout on the admin listener bounds a whole response: it
	// must not cut the stream. (Its ReadTimeout does not apply: net/http
	// clears the read deadline once the request is read.)
	_ = s.rc.SetWriteDeadline(time.Time{})
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	c.status = http.StatusOK
	c.w.WriteHeader(http.StatusOK)
	// The starting position, as an id without data: a client that loses
	// the connection before the first record still resumes from here.
	s.printf("retry: 1000\nid: %s\n\n", s.pos)
	s.lastID = s.pos.String()
	if err := s.flush(); err != nil {
		return nil
	}

	done := serverShutdown(c.r)
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	warned := false
	for {
		if err := s.poll(ctx); err != nil {
			if ctx.Err() != nil || errors.Is(err, errClientGone) {
				return nil
			}
			// A store hiccup: keep the position and try again next tick.
			if !warned {
				a.Logger.Warn("log stream: cannot read the audit chain (retrying)", "request_id", c.rid, "err", err)
				warned = true
			}
		} else {
			warned = false
		}
		if time.Since(s.lastWrite) >= streamHeartbeat {
			if id := s.pos.String(); id != s.lastID {
				s.printf(": keep-alive\nid: %s\n\n", id)
				s.lastID = id
			} else {
				s.printf(": keep-alive\n\n")
			}
		}
		if err := s.flush(); err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return nil
		case <-tick.C:
		}
	}
}

var errClientGone = errors.New("the client is gone")

func (s *logStream) printf(format string, args ...any) {
	fmt.Fprintf(s.w, format, args...)
	s.wrote = true
	s.lastWrite = time.Now()
}

func (s *logStream) flush() error {
	if !s.wrote {
		return nil
	}
	s.wrote = false
	if err := s.rc.Flush(); err != nil {
		return errClientGone
	}
	return nil
}

// startAtHeads starts after the last event of every chain: new records only.
func (s *logStream) startAtHeads(ctx context.Context) error {
	nodes, err := s.a.Store.ChainNodes(ctx)
	if err != nil {
		return err
	}
	s.pos = streamCursor{}
	for _, n := range nodes {
		h, err := s.a.Store.ChainHead(ctx, n)
		if err != nil {
			return err
		}
		s.pos[n] = h.Seq
	}
	s.setNodes(nodes)
	return nil
}

// startSince starts, on each node, at the first event of the earliest
// records at or after since (by id, which is the time of arrival), so the
// replay may begin a few records early, never late.
func (s *logStream) startSince(ctx context.Context, since time.Time) error {
	nodes, err := s.a.Store.ChainNodes(ctx)
	if err != nil {
		return err
	}
	s.pos = streamCursor{}
	for _, n := range nodes {
		rows, err := s.a.Store.QueryLogs(ctx, store.LogQuery{Node: n, Since: since, After: store.IDFloor(since),
			Ascending: true, Limit: 100, WithData: true})
		if err != nil {
			return err
		}
		first := int64(-1)
		for _, r := range rows {
			for _, e := range r.Events {
				if e.Node == n && (first < 0 || e.Seq < first) {
					first = e.Seq
				}
			}
		}
		if first < 0 {
			h, err := s.a.Store.ChainHead(ctx, n)
			if err != nil {
				return err
			}
			s.pos[n] = h.Seq
			continue
		}
		s.pos[n] = first - 1
	}
	s.setNodes(nodes)
	return nil
}

func (s *logStream) setNodes(nodes []string) {
	for _, n := range nodes {
		if _, ok := s.pos[n]; !ok {
			// A chain that began after the stream's position: all of it
			// is new.
			s.pos[n] = 0
		}
	}
	s.nodes = s.nodes[:0]
	for n := range s.pos {
		s.nodes = append(s.nodes, n)
	}
	sort.Strings(s.nodes)
	s.nodesAt = time.Now()
}

// poll sends what each chain gained since the position.
func (s *logStream) poll(ctx context.Context) error {
	if time.Since(s.nodesAt) >= streamNodes {
		nodes, err := s.a.Store.ChainNodes(ctx)
		if err != nil {
			return err
		}
		s.setNodes(nodes)
	}
	for _, n := range s.nodes {
		for range streamPages {
			evs, err := s.a.Store.ChainFrom(ctx, n, s.pos[n], streamPage)
			if err != nil {
				return err
			}
			for _, e := range evs {
				// The position includes the event being sent (its id
				// resumes after it); it goes back if the event fails, so
				// the next poll tries it again.
				prev := s.pos[n]
				s.pos[n] = e.Seq
				if err := s.event(ctx, e); err != nil {
					s.pos[n] = prev
					return err
				}
			}
			if len(evs) < streamPage {
				break
			}
		}
	}
	return nil
}

// event sends what one chain event changes: a "record" or "start" event
// sends the record (a start shows it in flight, "incomplete"); an "end"
// sends the record again, complete, as an "update". A record is sent when,
// as it stands after the event, it matches the filters — and an update of a
// record already sent is always sent.
func (s *logStream) event(ctx context.Context, e store.AuditEvent) error {
	switch e.Kind {
	case "record":
		rec := audit.Merge(store.LogRow{Events: []store.AuditEvent{e}})
		if matchRecord(rec, s.q) {
			return s.send("", rec)
		}
	case "start":
		rec := audit.Merge(store.LogRow{Events: []store.AuditEvent{e}})
		sent := matchRecord(rec, s.q)
		if len(s.inflight) < streamInflight {
			s.inflight[e.RecordID] = &inflightStart{start: e, sent: sent}
		}
		if sent {
			return s.send("", rec)
		}
	case "end":
		evs, sent := []store.AuditEvent{}, false
		if in := s.inflight[e.RecordID]; in != nil {
			delete(s.inflight, e.RecordID)
			evs, sent = append(evs, in.start), in.sent
		} else {
			// The start came before the stream's position (or beyond
			// streamInflight): read it.
			row, err := s.a.Store.GetLog(ctx, e.RecordID)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, x := range row.Events {
				if x.Node == e.Node && x.Seq < e.Seq && x.Kind != "end" {
					evs = append(evs, x)
				}
			}
		}
		rec := audit.Merge(store.LogRow{Events: append(evs, e)})
		if sent || matchRecord(rec, s.q) {
			return s.send("update", rec)
		}
	}
	// "cut" (retention) and kinds to come show nothing.
	return nil
}

func (s *logStream) send(kind string, rec map[string]any) error {
	js, err := json.Marshal(listed(rec, s.role))
	if err != nil {
		return err
	}
	id := s.pos.String()
	if kind != "" {
		s.printf("event: %s\n", kind)
	}
	// json.Marshal escapes control characters and U+2028/9: a record is
	// one line, and nothing in it can end the event early.
	s.printf("id: %s\ndata: %s\n\n", id, js)
	s.lastID = id
	return nil
}

// listed shapes a record as GET /logs lists it: bodies left out (read them
// with GET /logs/{id}), and for a viewer, the viewer's view.
func listed(rec map[string]any, role string) map[string]any {
	if role != RoleViewer {
		for _, k := range []string{"request_body", "response_body"} {
			if rec[k] != nil {
				rec[k+"_omitted"] = true
			}
			delete(rec, k)
		}
	}
	return view(rec, role)
}

// matchRecord applies GET /logs's filters to a merged record.
func matchRecord(rec map[string]any, q store.LogQuery) bool {
	str := func(k string) string { s, _ := rec[k].(string); return s }
	for _, f := range []struct{ want, key string }{{q.Proxy, "proxy"}, {q.Agent, "agent"}, {q.TokenID, "token_id"},
		{q.Decision, "decision"}, {q.Node, "node"}} {
		if f.want != "" && str(f.key) != f.want {
			return false
		}
	}
	if q.Reason != "" {
		if r := str("reason"); r != q.Reason && !strings.HasPrefix(r, q.Reason+":") {
			return false
		}
	}
	if q.Status != 0 {
		if st, ok := rec["status"].(float64); !ok || int(st) != q.Status {
			return false
		}
	}
	if q.PathContains != "" && !strings.Contains(str("path"), q.PathContains) {
		return false
	}
	return true
}

// shutdowns: per http.Server, a channel closed when it shuts down, so
// streams end and Shutdown does not wait for them until its timeout.
var shutdowns sync.Map // *http.Server → chan struct{}

func serverShutdown(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	ch := make(chan struct{})
	if v, loaded := shutdowns.LoadOrStore(srv, ch); loaded {
		return v.(chan struct{})
	}
	srv.RegisterOnShutdown(func() { close(ch) })
	return ch
}
