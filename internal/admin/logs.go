package admin

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// Log paging (SPEC §6): limit 1–1000, default 100, larger clamped.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// encodeCursor makes the opaque next_cursor of a page (the last id seen).
func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + id))
}

func decodeCursor(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(b), "v1:") {
		return "", badRequest("cursor is not one this API returned")
	}
	return string(b[3:]), nil
}

// parseTime reads an RFC 3339 time or a Go duration meaning "that long ago".
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, badRequest("%s must be an RFC 3339 time (2026-11-26T07:00:00Z) or a duration ago (15m)", field)
}

// LogQuery reads the filters of GET /api/v1/logs.
func LogQuery(v map[string][]string) (store.LogQuery, error) {
	get := func(k string) string {
		if vs := v[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	q := store.LogQuery{Proxy: get("proxy"), Agent: get("agent"), TokenID: get("token_id"), Decision: get("decision"),
		Reason: get("reason"), Node: get("node"), PathContains: get("q"), Limit: defaultLimit}
	switch q.Decision {
	case "", audit.Allow, audit.Deny, audit.Error:
	default:
		return q, badRequest("decision is allow, deny or error")
	}
	if s := get("status"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 999 {
			return q, badRequest("status is an HTTP status code such as 403")
		}
		q.Status = n
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, badRequest("limit is a number from 1 to 1000")
		}
		q.Limit = min(n, maxLimit)
	}
	var err error
	if q.Since, err = parseTime("since", get("since")); err != nil {
		return q, err
	}
	if q.Until, err = parseTime("until", get("until")); err != nil {
		return q, err
	}
	switch get("order") {
	case "", "desc":
	case "asc":
		q.Ascending = true
	default:
		return q, badRequest("order is desc (newest first, the default) or asc")
	}
	if c := get("cursor"); c != "" {
		id, err := decodeCursor(c)
		if err != nil {
			return q, err
		}
		if q.Ascending {
			q.After = id
		} else {
			q.Before = id
		}
	}
	return q, nil
}

// view shapes a record for the caller's role: a viewer sees metadata only —
// header names without their values, no bodies (SPEC §7).
func view(rec map[string]any, role string) map[string]any {
	if role != RoleViewer {
		return rec
	}
	for _, k := range []string{"request_headers", "response_headers"} {
		if h, ok := rec[k].(map[string]any); ok {
			names := make([]string, 0, len(h))
			for n := range h {
				names = append(names, n)
			}
			rec[k] = hiddenHeaders(names)
		}
	}
	for _, k := range []string{"request_body", "response_body", "query"} {
		if rec[k] != nil {
			rec[k] = nil
			rec[k+"_hidden"] = true
		}
	}
	return rec
}

func hiddenHeaders(names []string) map[string][]string {
	out := make(map[string][]string, len(names))
	for _, n := range names {
		out[n] = []string{"[hidden]"}
	}
	return out
}

func (a *API) listLogs(c *call) error {
	if c.r.URL.Query().Has("contains") {
		return a.searchLogs(c) // GET /logs?contains= is the search (stream.go)
	}
	q, err := LogQuery(c.r.URL.Query())
	if err != nil {
		return err
	}
	limit := q.Limit
	q.Limit = limit + 1
	q.WithData = true
	rows, err := a.Store.QueryLogs(c.r.Context(), q)
	if err != nil {
		return err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodeCursor(rows[len(rows)-1].Index.ID)
	} else if q.Ascending && len(rows) > 0 {
		// Oldest first is how a follower reads: it always gets a cursor
		// to continue from, also on the last page.
		next = encodeCursor(rows[len(rows)-1].Index.ID)
	}
	out := make([]any, 0, len(rows))
	for _, row := range rows {
		rec := audit.Merge(row)
		if c.who.Role != RoleViewer {
			// The list carries metadata and headers; bodies are read with
			// GET /logs/{id} (keeps pages small at a million records).
			for _, k := range []string{"request_body", "response_body"} {
				if rec[k] != nil {
					rec[k+"_omitted"] = true
				}
				delete(rec, k)
			}
		}
		out = append(out, view(rec, c.who.Role))
	}
	return c.json(http.StatusOK, map[string]any{"records": out, "next_cursor": next})
}

func (a *API) getLog(c *call) error {
	id := c.r.PathValue("id")
	if len(id) > 64 {
		return badRequest("a record id is at most 64 characters")
	}
	row, err := a.Store.GetLog(c.r.Context(), id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notFound("record " + id)
		}
		return err
	}
	return c.json(http.StatusOK, view(audit.Merge(row), c.who.Role))
}

func (a *API) verify(c *call) error {
	var heads map[string]store.ChainHead
	if a.ChainHeads != nil {
		heads = a.ChainHeads(c.r.Context())
	}
	res, err := audit.Verify(c.r.Context(), a.Store, heads)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, res)
}
