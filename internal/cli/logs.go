package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// logRecord is what the log table shows of an audit record (SPEC §6).
type logRecord struct {
	ID         string   `json:"id"`
	Time       string   `json:"time"`
	Node       string   `json:"node"`
	Agent      string   `json:"agent"`
	TokenID    string   `json:"token_id"`
	Proxy      string   `json:"proxy"`
	Method     string   `json:"method"`
	Path       string   `json:"path"`
	Query      *string  `json:"query"`
	Decision   string   `json:"decision"`
	Rule       *string  `json:"rule"`
	Reason     string   `json:"reason"`
	Status     *int     `json:"status"`
	LatencyMS  *float64 `json:"latency_ms"`
	Incomplete bool     `json:"incomplete"`
}

// logPage is GET /api/v1/logs.
type logPage struct {
	Records    []json.RawMessage `json:"records"`
	NextCursor string            `json:"next_cursor"`
}

// logFilters are the filters `logs` and `logs export` share; each is a
// query parameter of GET /api/v1/logs.
type logFilters struct {
	proxy, agent, token, decision, reason, node, path, since, until string
	status                                                          int
}

func (f *logFilters) bind(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.proxy, "proxy", "", "only this proxy (-admin for admin API changes)")
	fl.StringVar(&f.agent, "agent", "", "only this agent")
	fl.StringVar(&f.token, "token", "", "only this token id")
	fl.IntVar(&f.status, "status", 0, "only this HTTP status, e.g. 403")
	fl.StringVar(&f.decision, "decision", "", "only allow, deny or error")
	fl.StringVar(&f.reason, "reason", "", "only this reason, e.g. no_rule_allows or denied_by_rule:no-refunds")
	fl.StringVar(&f.node, "node", "", "only records of this node")
	fl.StringVar(&f.path, "path", "", "only paths containing this text")
	fl.StringVar(&f.since, "since", "", "only records since this time: RFC 3339 or a duration ago (15m, 24h)")
	fl.StringVar(&f.until, "until", "", "only records before this time: RFC 3339 or a duration ago")
}

func (f *logFilters) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"proxy": f.proxy, "agent": f.agent, "token_id": f.token, "decision": f.decision,
		"reason": f.reason, "node": f.node, "q": f.path, "since": f.since, "until": f.until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.status != 0 {
		q.Set("status", strconv.Itoa(f.status))
	}
	return q
}

func (a *app) logsCmd() *cobra.Command {
	var f logFilters
	var limit int
	var follow bool
	var search string
	c := &cobra.Command{
		Use:   "logs",
		Short: "Show the audit log (newest first), or follow it",
		Long: `Show audit records, newest first: one per request that reached the gateway
(allowed, denied or failed) and one per admin change (proxy -admin).

With --follow, the latest records are printed oldest first, then new records
as they complete, until interrupted (Ctrl-C). A request still in flight is
printed once, when it completes (or after 30 s, without its status). The
node streams new records (GET /api/v1/logs/stream) in the order it committed
them, so none is missed; if the connection drops, keyhole reconnects and
resumes where it stopped.

With --search TEXT, only records whose stored data (path, query, headers and
bodies, as redacted) contains TEXT, newest first: typically a hash printed by
` + "`keyhole audit hash`" + `, to find the records that carried a value redacted with
capture.redact_mode hmac. The node has no full-text index: a search reads
every record of its window (--since/--until, default the last 24 hours), at
most 100,000 per call, and says where it stopped.

Times are RFC 3339 UTC. Strings recorded from requests are printed with
control characters escaped ("…" quoted), so a path cannot forge a log line
or send escape sequences to the terminal. ` + "`keyhole logs show ID`" + ` prints a whole
record, bodies included (roles admin and auditor).`,
		Example: `  keyhole logs
  keyhole logs --proxy stripe --decision deny --since 1h
  keyhole logs --agent billing-bot --status 403 --limit 20
  keyhole logs --follow --proxy stripe
  keyhole logs --search hmac-sha256:3f1c0a9be2d47e8f6a5b4c3d2e1f0a9b --since 7d`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if limit < 0 || limit > 1000 {
				return usagef(c, "--limit is 1 to 1000")
			}
			if follow && f.until != "" {
				return usagef(c, "--until cannot be combined with --follow")
			}
			if follow && search != "" {
				return usagef(c, "--search cannot be combined with --follow")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			q := f.query()
			if follow {
				return a.follow(c, cl, q, limit)
			}
			if search != "" {
				return a.search(c, cl, q, search, limit)
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var page logPage
			raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/logs", q, nil, &page)
			if err != nil {
				return err
			}
			return a.out(c.OutOrStdout(), raw, func() error {
				recs, err := decodeRecords(page.Records)
				if err != nil {
					return err
				}
				t := newTable(c.OutOrStdout(), logHeaders...)
				for _, r := range recs {
					t.row(logRow(r)...)
				}
				if err := t.flush(); err != nil {
					return err
				}
				if page.NextCursor != "" {
					fmt.Fprintf(c.ErrOrStderr(), "(more records: narrow with --since or filters, raise --limit, or use keyhole logs export)\n")
				}
				return nil
			})
		},
	}
	f.bind(c)
	c.Flags().IntVar(&limit, "limit", 0, "at most this many records, 1–1000 (default 100; with --follow, 20 to start)")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records as they arrive, until Ctrl-C")
	c.Flags().StringVar(&search, "search", "", "only records whose stored data contains this text (e.g. a hash from keyhole audit hash); roles admin and auditor")
	c.AddCommand(a.logsShowCmd(), a.logsExportCmd())
	return c
}

var logHeaders = []string{"TIME", "METHOD", "PROXY", "PATH", "STATUS", "DECISION", "REASON", "AGENT", "LATENCY"}

func decodeRecords(raws []json.RawMessage) ([]logRecord, error) {
	out := make([]logRecord, len(raws))
	for i, r := range raws {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, errors.New("a record in the admin API's answer is not the JSON keyhole's audit log holds")
		}
	}
	return out, nil
}

// maxPathCell bounds the PATH column; `logs show` has the whole path.
const maxPathCell = 120

func logRow(r logRecord) []string {
	path := r.Path
	if r.Query != nil && *r.Query != "" {
		path += "?" + *r.Query
	}
	// Escape first, then clip, so a cut never hides an escape.
	path = clip(clean(path), maxPathCell)
	status := ""
	switch {
	case r.Incomplete:
		status = "…"
	case r.Status != nil:
		status = strconv.Itoa(*r.Status)
	}
	return []string{logTime(r.Time), r.Method, r.Proxy, path, status, r.Decision, r.Reason, r.Agent, latency(r.LatencyMS)}
}

// followPoll is --follow against a node without GET /api/v1/logs/stream
// (an older version): it prints the latest page oldest first, then polls
// every second for records after the last one printed
// (order=asc&cursor=…). A record still in flight (incomplete) is held until
// it completes or holdFor passes. Ids are times of arrival, not of commit:
// a record committed late behind the cursor can be missed, which the
// stream cannot.
func (a *app) followPoll(ctx context.Context, c *cobra.Command, cl *client, q url.Values, limit int) error {
	w := c.OutOrStdout()
	fw := &followWriter{w: w, json: a.json}
	first := cloneValues(q)
	first.Set("limit", strconv.Itoa(limit))
	var page logPage
	if _, err := cl.getJSON(ctx, http.MethodGet, "/api/v1/logs", first, nil, &page); err != nil {
		return quietCancel(ctx, err)
	}
	if !a.json {
		fw.header()
	}
	f := &follower{printed: map[string]bool{}, seen: map[string]time.Time{}, holdFor: 30 * time.Second, out: fw}
	for i := len(page.Records) - 1; i >= 0; i-- {
		if err := fw.record(page.Records[i]); err != nil {
			return err
		}
	}
	if len(page.Records) > 0 {
		var r logRecord
		json.Unmarshal(page.Records[0], &r)
		f.cursor = r.ID
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		recs, err := f.poll(ctx, cl, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ae *apiError
			if errors.As(err, &ae) {
				return err
			}
			// The node may be restarting: say so once and keep trying.
			if !warned {
				fmt.Fprintf(c.ErrOrStderr(), "keyhole: %v (retrying every second)\n", err)
				warned = true
			}
			continue
		}
		warned = false
		if err := f.handle(recs, time.Now()); err != nil {
			return err
		}
	}
}

func quietCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// follower is the state of `logs --follow`: everything up to cursor has
// been handled; printed holds records after it that were printed while an
// earlier one was held; seen is when each held record was first seen.
type follower struct {
	cursor  string
	printed map[string]bool
	seen    map[string]time.Time
	holdFor time.Duration
	out     *followWriter
}

// afterCursor is the API's cursor for "records after id" in ascending
// order, for the poller used against nodes without the log stream (the
// API returns next_cursor on every ascending page; a follower that starts
// from a record it already has builds the cursor itself).
func afterCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + id))
}

// poll reads every record after the cursor, oldest first.
func (f *follower) poll(ctx context.Context, cl *client, filters url.Values) ([]json.RawMessage, error) {
	q := cloneValues(filters)
	q.Set("order", "asc")
	q.Set("limit", "1000")
	if f.cursor != "" {
		q.Set("cursor", afterCursor(f.cursor))
	}
	var all []json.RawMessage
	for range 10 {
		var page logPage
		if _, err := cl.getJSON(ctx, http.MethodGet, "/api/v1/logs", q, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Records...)
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	return all, nil
}

// handle prints new records in order, holding incomplete ones, and moves
// the cursor past every record that is done with.
func (f *follower) handle(recs []json.RawMessage, now time.Time) error {
	advance := true
	for _, raw := range recs {
		var r logRecord
		if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
			continue
		}
		if f.printed[r.ID] {
			if advance {
				f.cursor = r.ID
				delete(f.printed, r.ID)
			}
			continue
		}
		if r.Incomplete {
			t, ok := f.seen[r.ID]
			if !ok {
				f.seen[r.ID] = now
				t = now
			}
			if now.Sub(t) < f.holdFor {
				advance = false
				continue
			}
		}
		if err := f.out.record(raw); err != nil {
			return err
		}
		delete(f.seen, r.ID)
		if advance {
			f.cursor = r.ID
		} else {
			f.printed[r.ID] = true
		}
	}
	return nil
}

// followWriter prints followed records: a row each, in columns of a fixed
// minimum width (rows arrive one by one, so they cannot be aligned on the
// widest), or a JSON line each with --json.
type followWriter struct {
	w    io.Writer
	json bool
}

var followWidths = []int{24, 7, 12, 36, 6, 8, 22, 16, 8}

func (fw *followWriter) header() {
	fw.line(logHeaders)
}

func (fw *followWriter) line(cells []string) error {
	var b strings.Builder
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		b.WriteString(c)
		if i < len(cells)-1 {
			pad := followWidths[i] - len([]rune(c))
			b.WriteString(strings.Repeat(" ", max(pad, 0)+2))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(fw.w, b.String())
	return err
}

func (fw *followWriter) record(raw json.RawMessage) error {
	if fw.json {
		return writeJSONLine(fw.w, raw)
	}
	var r logRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil
	}
	cells := logRow(r)
	for i, c := range cells {
		cells[i] = clean(c)
	}
	return fw.line(cells)
}

// writeJSONLine writes one record compactly on a line, terminal-safe.
func writeJSONLine(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return errors.New("a record in the admin API's answer is not JSON")
	}
	buf.WriteByte('\n')
	_, err := w.Write(safeJSON(buf.Bytes()))
	return err
}

func (a *app) logsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one audit record in full",
		Long: `Show one audit record as indented JSON: every SPEC §6 field, headers and
captured bodies (redacted before storage; bodies only for the admin and
auditor roles), and its hash-chain links. Control characters in recorded
strings are \u-escaped.`,
		Example: "  keyhole logs show 0195f7a2-6c1e-7b3a-9d4e-2f8a1c3b5d7e",
		Args:    exactArgs("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			raw, err := cl.do(c.Context(), http.MethodGet, "/api/v1/logs/"+seg(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), raw)
		},
	}
}

func (a *app) logsExportCmd() *cobra.Command {
	var f logFilters
	var format string
	var bodies bool
	c := &cobra.Command{
		Use:   "export --format jsonl",
		Short: "Export every matching audit record as JSON lines, oldest first",
		Long: `Export audit records as JSON lines (one record per line), oldest first,
following the API's pages to the end. The filters are those of ` + "`keyhole logs`" + `.

Listed records carry metadata and headers but not bodies; --with-bodies
fetches each record in full (one request per record; roles admin and
auditor).`,
		Example: `  keyhole logs export --format jsonl > audit.jsonl
  keyhole logs export --format jsonl --since 24h --proxy stripe --with-bodies | gzip > stripe-day.jsonl.gz
  keyhole logs export --format jsonl --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if format != "jsonl" {
				return usagef(c, "--format %s is not supported; use --format jsonl", clean(format))
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			q := f.query()
			q.Set("order", "asc")
			q.Set("limit", "1000")
			w := c.OutOrStdout()
			for {
				var page logPage
				if _, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/logs", q, nil, &page); err != nil {
					return err
				}
				for _, raw := range page.Records {
					if bodies {
						var r logRecord
						if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
							return errors.New("a record in the admin API's answer has no id")
						}
						if raw, err = cl.do(c.Context(), http.MethodGet, "/api/v1/logs/"+seg(r.ID), nil, nil); err != nil {
							return err
						}
					}
					if err := writeJSONLine(w, raw); err != nil {
						return err
					}
				}
				if page.NextCursor == "" {
					return nil
				}
				q.Set("cursor", page.NextCursor)
			}
		},
	}
	f.bind(c)
	c.Flags().StringVar(&format, "format", "jsonl", "output format: jsonl (one JSON record per line)")
	c.Flags().BoolVar(&bodies, "with-bodies", false, "fetch each record in full, captured bodies included")
	return c
}

// ---- audit ----

func (a *app) auditCmd() *cobra.Command {
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chains",
		Long: `Ask the node to walk every node's hash chain of audit records (SPEC §6) and
report the first broken link: a record edited, removed, reordered or
inserted. Exits 0 when the log is intact and 1 when it is not.`,
		Example: "  keyhole audit verify\n  keyhole audit verify --json",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var res struct {
				OK       bool   `json:"ok"`
				Records  int64  `json:"records"`
				Nodes    int    `json:"nodes"`
				FirstBad string `json:"first_bad"`
				Node     string `json:"node"`
				Seq      int64  `json:"seq"`
				Reason   string `json:"reason"`
			}
			raw, err := cl.getJSON(c.Context(), http.MethodPost, "/api/v1/audit/verify", nil, nil, &res)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			err = a.out(w, raw, func() error {
				if res.OK {
					_, err := fmt.Fprintf(w, "audit log intact: %s on %s\n", plural(int(res.Records), "record"), plural(res.Nodes, "node"))
					return err
				}
				where := "record " + clean(res.FirstBad)
				if res.FirstBad == "" {
					where = "an unknown record"
				}
				if res.Node != "" {
					where += fmt.Sprintf(" (node %s, link %d)", clean(res.Node), res.Seq)
				}
				_, err := fmt.Fprintf(w, "audit log BROKEN at %s: %s\n", where, clean(res.Reason))
				return err
			})
			if err != nil {
				return err
			}
			if !res.OK {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	return group("audit", "Check the audit log's integrity, hash a value to search for",
		"Commands about the tamper-evident audit log. To read records, see `keyhole logs`.",
		"  keyhole audit verify\n  printf %s \"$VALUE\" | keyhole audit hash", verify, a.auditHashCmd())
}

// ---- logs --follow: the node's log stream ----

// Following the stream: the CLI gives up on a connection that sent nothing,
// not even the node's heartbeat (every 15 s), for streamIdle, and waits
// streamRetry between reconnections.
const (
	streamIdle     = 45 * time.Second
	streamRetry    = time.Second
	maxStreamEvent = 16 << 20
)

// follow prints the latest records oldest first, then follows GET
// /api/v1/logs/stream: the stream is opened first, so its position is set
// before the latest page is read (a record in both is printed once), and
// a dropped connection resumes from the last event's id (Last-Event-ID).
// Each record is printed once, when it is complete; a record in flight for
// holdFor is printed without its status, and its end is not printed.
func (a *app) follow(c *cobra.Command, cl *client, q url.Values, limit int) error {
	ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if limit == 0 {
		limit = 20
	}
	// --since shapes the latest page only: the stream starts now (the
	// page is printed first, then what comes after, in order).
	sq := cloneValues(q)
	sq.Del("since")
	resp, err := cl.openStream(ctx, sq, "")
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return a.followPoll(ctx, c, cl, q, limit)
		}
		return quietCancel(ctx, err)
	}
	fw := &followWriter{w: c.OutOrStdout(), json: a.json}
	f := &streamFollower{out: fw, printed: map[string]bool{}, held: map[string]heldRecord{}, holdFor: 30 * time.Second}
	first := cloneValues(q)
	first.Set("limit", strconv.Itoa(limit))
	var page logPage
	if _, err := cl.getJSON(ctx, http.MethodGet, "/api/v1/logs", first, nil, &page); err != nil {
		resp.Body.Close()
		return quietCancel(ctx, err)
	}
	if !a.json {
		fw.header()
	}
	now := time.Now()
	for i := len(page.Records) - 1; i >= 0; i-- {
		if err := f.page(page.Records[i], now); err != nil {
			resp.Body.Close()
			return err
		}
	}
	lastID := ""
	warned := false
	for {
		err := f.read(ctx, resp.Body, &lastID)
		resp.Body.Close()
		if ctx.Err() != nil {
			return nil
		}
		var we *writeError
		if errors.As(err, &we) {
			return we.err
		}
		for {
			if !warned {
				fmt.Fprintf(c.ErrOrStderr(), "keyhole: the log stream was interrupted (%v); reconnecting\n", err)
				warned = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(streamRetry):
			}
			if resp, err = cl.openStream(ctx, sq, lastID); err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			var ae *apiError
			if errors.As(err, &ae) && ae.Status/100 != 5 {
				return err // refused: a revoked token, a cursor the node does not know
			}
		}
		warned = false
	}
}

// openStream connects to GET /api/v1/logs/stream. The client's request
// timeout does not apply (a stream has no end): connecting and the answer's
// headers are bounded instead, and reading by streamIdle.
func (cl *client) openStream(ctx context.Context, q url.Values, lastID string) (*http.Response, error) {
	u := cl.base + "/api/v1/logs/stream"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", cl.userAgent)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = requestTimeout
	hc := &http.Client{Transport: tr, CheckRedirect: cl.hc.CheckRedirect}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, cl.netErr(ctx, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		return nil, cl.httpErr(resp, b)
	}
	if mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered the log stream with %s, not an event stream; is %s a keyhole admin listener?",
			cl.base, clean(clip(mt, 60)), cl.addrFrom)
	}
	return resp, nil
}

// writeError is a failure to print (a closed pipe): the end of following,
// not a reason to reconnect.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// streamFollower prints the stream's records: once each, when complete.
type streamFollower struct {
	out *followWriter
	// printed: records printed before their stream events could arrive
	// (the latest page, or held past holdFor); their later events are
	// skipped.
	printed map[string]bool
	// held: records in flight, printed when their end arrives.
	held    map[string]heldRecord
	holdFor time.Duration
}

type heldRecord struct {
	raw   json.RawMessage
	since time.Time
}

// page takes a record of the latest page.
func (f *streamFollower) page(raw json.RawMessage, now time.Time) error {
	var r logRecord
	if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
		return nil
	}
	if r.Incomplete {
		f.held[r.ID] = heldRecord{raw, now}
		return nil
	}
	f.printed[r.ID] = true
	return f.print(raw)
}

// event takes a stream event: a record (kind "") or the update of one.
func (f *streamFollower) event(kind string, raw json.RawMessage, now time.Time) error {
	var r logRecord
	if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
		return nil
	}
	if f.printed[r.ID] {
		if kind == "update" {
			delete(f.printed, r.ID) // nothing comes after an update
		}
		return nil
	}
	if r.Incomplete {
		if _, ok := f.held[r.ID]; !ok {
			f.held[r.ID] = heldRecord{raw, now}
		}
		return nil
	}
	delete(f.held, r.ID)
	return f.print(raw)
}

// expire prints, oldest first, the records in flight for holdFor.
func (f *streamFollower) expire(now time.Time) error {
	var due []string
	for id, h := range f.held {
		if now.Sub(h.since) >= f.holdFor {
			due = append(due, id)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := f.held[due[i]].since, f.held[due[j]].since
		if !a.Equal(b) {
			return a.Before(b)
		}
		return due[i] < due[j] // ids are times of arrival
	})
	for _, id := range due {
		raw := f.held[id].raw
		delete(f.held, id)
		f.printed[id] = true
		if err := f.print(raw); err != nil {
			return err
		}
	}
	return nil
}

func (f *streamFollower) print(raw json.RawMessage) error {
	if err := f.out.record(raw); err != nil {
		return &writeError{err}
	}
	return nil
}

// read handles one connection's events until it fails or ctx ends; it
// keeps the id of the last event in lastID (an event with an id and no
// data, the stream's start position or a heartbeat's, moves it too).
func (f *streamFollower) read(ctx context.Context, body io.ReadCloser, lastID *string) error {
	lines := make(chan string)
	rerr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		br := bufio.NewReaderSize(body, 64<<10)
		for {
			line, err := readEventLine(br)
			if err != nil {
				rerr <- err
				return
			}
			select {
			case lines <- line:
			case <-stop:
				return
			}
		}
	}()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var kind, id, data string
	hasID, hasData := false, false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-rerr:
			if err == io.EOF {
				err = errors.New("the node closed the stream")
			}
			return err
		case <-idle.C:
			return fmt.Errorf("nothing from the node for %s", streamIdle)
		case now := <-tick.C:
			if err := f.expire(now); err != nil {
				return err
			}
		case line := <-lines:
			idle.Reset(streamIdle)
			switch {
			case line == "":
				if hasID {
					*lastID = id
				}
				if hasData {
					if err := f.event(kind, json.RawMessage(data), time.Now()); err != nil {
						return err
					}
				}
				kind, id, data, hasID, hasData = "", "", "", false, false
			case strings.HasPrefix(line, ":"):
				// A comment: the heartbeat.
			default:
				k, v, _ := strings.Cut(line, ":")
				v = strings.TrimPrefix(v, " ")
				switch k {
				case "event":
					kind = v
				case "id":
					id, hasID = v, true
				case "data":
					if hasData {
						data += "\n"
					}
					data, hasData = data+v, true
				}
			}
		}
	}
}

// readEventLine reads one line of an event stream (LF, CRLF or CR ends it;
// the node writes LF), at most maxStreamEvent bytes.
func readEventLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxStreamEvent {
			return "", fmt.Errorf("an event of the log stream is larger than %d bytes", maxStreamEvent)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// ---- logs --search ----

// searchPage is GET /api/v1/logs/search.
type searchPage struct {
	Records    []json.RawMessage `json:"records"`
	Scanned    int               `json:"scanned"`
	Complete   bool              `json:"complete"`
	Stopped    string            `json:"stopped"`
	StoppedAt  string            `json:"stopped_at"`
	NextCursor string            `json:"next_cursor"`
	Since      *string           `json:"since"`
}

func (a *app) search(c *cobra.Command, cl *client, q url.Values, text string, limit int) error {
	q.Set("contains", text)
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page searchPage
	raw, err := cl.getJSON(c.Context(), http.MethodGet, "/api/v1/logs/search", q, nil, &page)
	if err != nil {
		return err
	}
	return a.out(c.OutOrStdout(), raw, func() error {
		recs, err := decodeRecords(page.Records)
		if err != nil {
			return err
		}
		t := newTable(c.OutOrStdout(), logHeaders...)
		for _, r := range recs {
			t.row(logRow(r)...)
		}
		if err := t.flush(); err != nil {
			return err
		}
		from := "the start of the log"
		if page.Since != nil {
			from = logTime(*page.Since)
		}
		msg := fmt.Sprintf("(%s found among %s searched, newest first, back to %s", plural(len(recs), "record"), plural(page.Scanned, "record"), clean(from))
		switch page.Stopped {
		case "":
			msg += ")"
		case "limit":
			msg += fmt.Sprintf("; stopped at the --limit of matches, at %s: go on with --until %s)", logTime(page.StoppedAt), clean(page.StoppedAt))
		default:
			msg += fmt.Sprintf("; stopped after scanning %s, at %s: narrow --since or filters, or go on with --until %s)",
				plural(page.Scanned, "record"), logTime(page.StoppedAt), clean(page.StoppedAt))
		}
		fmt.Fprintln(c.ErrOrStderr(), msg)
		return nil
	})
}
