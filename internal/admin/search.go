package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// The log search's bounds. The store has no full-text index of record
// data: a search reads every record of its window, newest first, with its
// events (store.QueryLogs pages WithData), and compares bytes. That is one
// read of the index per page and one of the events per record: on SQLite
// about 10,000 records a second (2 vCPUs, 1 KiB events), so a call stops
// after searchMaxScan records (some 10 s) and says where; the next call
// goes on from its next_cursor.
const (
	searchMaxScan     = 100_000
	searchPage        = 500
	searchWindow      = 24 * time.Hour
	maxSearchContains = 4096
)

var errViewerData = &apiError{http.StatusForbidden, "forbidden",
	"the viewer role does not read payloads or header values, so it cannot search or hash them; use an admin or auditor token"}

// searchLogs serves GET /api/v1/logs/search?contains=…: the records of a
// window (since/until, default the last 24 hours) whose stored data —
// path, query, headers, bodies, as redacted — contains the text, newest
// first, with GET /logs's filters. Roles admin and auditor.
func (a *API) searchLogs(c *call) error {
	if c.who.Role == RoleViewer {
		return errViewerData
	}
	vals := c.r.URL.Query()
	contains := vals.Get("contains")
	if contains == "" || len(contains) > maxSearchContains {
		return badRequest("contains is required: the text to look for (at most %d bytes), e.g. a hash from POST /api/v1/audit/hash", maxSearchContains)
	}
	if vals.Get("order") == "asc" {
		return badRequest("a search runs newest first")
	}
	q, err := LogQuery(vals)
	if err != nil {
		return err
	}
	limit := q.Limit
	if q.Since.IsZero() && q.Until.IsZero() {
		q.Since = time.Now().Add(-searchWindow)
	}
	q.WithData = true
	needles := [][]byte{[]byte(contains)}
	// Stored data is JSON: "a&b" is stored "a\u0026b", a quote \", and so on.
	if js, _ := json.Marshal(contains); string(js[1:len(js)-1]) != contains {
		needles = append(needles, js[1:len(js)-1])
	}

	out := []any{}
	scanned := 0
	var last *store.LogIndex
	stopped := ""
scan:
	for {
		q.Limit = min(searchPage, searchMaxScan-scanned)
		rows, err := a.Store.QueryLogs(c.r.Context(), q)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		for i := range rows {
			scanned++
			last = &rows[i].Index
			if rowContains(rows[i], needles) {
				out = append(out, listed(audit.Merge(rows[i]), c.who.Role))
				if len(out) == limit {
					stopped = "limit"
					break scan
				}
			}
		}
		if len(rows) < q.Limit {
			break
		}
		if scanned >= searchMaxScan {
			stopped = "scan_limit"
			break
		}
		q.Before = last.ID
	}
	res := map[string]any{"records": out, "scanned": scanned, "complete": stopped == "",
		"since": fmtTimeOrNil(q.Since), "until": fmtTimeOrNil(q.Until)}
	if stopped != "" {
		res["stopped"] = stopped
		res["stopped_at"] = last.Time.UTC().Format(audit.TimeFormat)
		res["next_cursor"] = encodeCursor(last.ID)
	}
	return c.json(http.StatusOK, res)
}

func fmtTimeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(audit.TimeFormat)
}

func rowContains(row store.LogRow, needles [][]byte) bool {
	for _, e := range row.Events {
		for _, n := range needles {
			if bytes.Contains(e.Data, n) {
				return true
			}
		}
	}
	return false
}

// auditHash serves POST /api/v1/audit/hash {"value"} → {"hash"}: what a
// proxy with capture.redact_mode "hmac" stores in place of the value, to
// search for (GET /logs/search?contains=). Roles admin and auditor. The
// value is never stored or logged; each call is an audit record (who asked
// for a hash, not of what), written before the answer: a hash is an answer
// to "did this value pass through?", and such questions are accountable.
func (a *API) auditHash(c *call) error {
	if c.who.Role == RoleViewer {
		return errViewerData
	}
	var req struct {
		Value *string `json:"value"`
	}
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Value == nil {
		return badRequest("value is required: the string to hash, e.g. {\"value\":\"4111111111111111\"}")
	}
	if a.Master == nil {
		return errors.New("the admin API has no master key")
	}
	h := audit.HashValue(a.Master.DeriveKey(audit.HMACKeyPurpose), *req.Value)
	c.action = "audit.hash"
	e := c.end()
	if err := a.Audit.Record(c.r.Context(), a.start(c), e); err != nil {
		a.Logger.Warn("audit hash refused: its audit record cannot be committed", "request_id", c.rid, "err", err)
		return &apiError{http.StatusServiceUnavailable, "audit_unavailable", "the audit log cannot record this call right now, so it was not answered; retry shortly"}
	}
	return c.json(http.StatusOK, map[string]string{"hash": h})
}
