// Package audit is keyhole's audit log: the record of every request (SPEC
// §6), its redaction before storage, the per-node hash chain, the
// group-commit writer that makes "recorded before forwarded" cheap, and the
// verifier that finds a broken link.
//
// A request that is refused is one "record" event. A request that is
// forwarded is two events: "start" (committed before the upstream sees the
// request, in sync mode) and "end" (committed before the response ends).
// Each event is a link of the node's chain: hash = SHA-256(prev_hash ‖ data),
// where data is the exact JSON stored. The API merges a record's events into
// one object.
package audit

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// TimeFormat is RFC 3339 in UTC with a fixed six-digit fraction (SPEC §6:
// the fraction is never dropped, even when it is zero).
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
	Error = "error"
)

// AdminProxy is the proxy name of admin API records (SPEC §7).
const AdminProxy = "-admin"

// Body is a captured body: at most the proxy's capture.max_bytes, redacted.
type Body struct {
	Data      []byte
	Truncated bool
}

// Start is what is known of a request when it is decided.
type Start struct {
	ID             string
	Time           time.Time
	Node           string
	Agent          string
	TokenID        string
	Proxy          string
	Method         string
	Path           string
	Query          string
	Decision       string
	Rule           string
	Reason         string
	Report         []string
	RequestHeaders map[string][]string
	SecretVersion  int
}

// End is what is known when the response is over (or was refused).
type End struct {
	Status            int
	Decision          string // overrides the start's decision when set (an upstream failure is "error")
	Reason            string // overrides when set
	Rule              string
	LatencyMS         float64
	UpstreamLatencyMS float64
	Upstream          bool // the request reached the upstream (upstream_latency_ms applies)
	RequestBytes      int64
	ResponseBytes     int64
	RequestBody       *Body
	ResponseBody      *Body
	ResponseHeaders   map[string][]string
	Filtered          bool
	Scrubbed          int
	Error             string // a client-safe note of what failed
}

// startData and endData are the stored JSON of the events. Field order is
// fixed by the struct, and the stored bytes are what the chain hashes, so
// nothing needs re-canonicalizing to verify.
type startData struct {
	// Event is the event's kind ("record" or "start"): it is part of the
	// hashed data, so relabelling an event breaks its link.
	Event          string              `json:"event"`
	ID             string              `json:"id"`
	Time           string              `json:"time"`
	Node           string              `json:"node"`
	Agent          string              `json:"agent"`
	TokenID        string              `json:"token_id"`
	Proxy          string              `json:"proxy"`
	Method         string              `json:"method"`
	Path           string              `json:"path"`
	Query          string              `json:"query"`
	Decision       string              `json:"decision"`
	Rule           string              `json:"rule"`
	Reason         string              `json:"reason"`
	Report         []string            `json:"report,omitempty"`
	RequestHeaders map[string][]string `json:"request_headers"`
	SecretVersion  *int                `json:"secret_version"`
}

type endData struct {
	// Event and ID name the event and its record inside the hashed data
	// (empty in a whole record, whose start part carries them): an end
	// event moved to another record breaks its link.
	Event             string              `json:"event,omitempty"`
	ID                string              `json:"id,omitempty"`
	Status            int                 `json:"status"`
	Decision          string              `json:"decision,omitempty"`
	Reason            string              `json:"reason,omitempty"`
	Rule              string              `json:"rule,omitempty"`
	LatencyMS         float64             `json:"latency_ms"`
	UpstreamLatencyMS *float64            `json:"upstream_latency_ms"`
	RequestBytes      int64               `json:"request_bytes"`
	ResponseBytes     int64               `json:"response_bytes"`
	RequestBody       *string             `json:"request_body"`
	RequestTrunc      bool                `json:"request_body_truncated"`
	RequestEnc        string              `json:"request_body_encoding,omitempty"`
	ResponseHeaders   map[string][]string `json:"response_headers"`
	ResponseBody      *string             `json:"response_body"`
	ResponseTrunc     bool                `json:"response_body_truncated"`
	ResponseEnc       string              `json:"response_body_encoding,omitempty"`
	Filtered          bool                `json:"response_filtered,omitempty"`
	Scrubbed          int                 `json:"secrets_scrubbed,omitempty"`
	Error             string              `json:"error,omitempty"`
}

func encodeBody(b *Body) (s *string, enc string, trunc bool) {
	if b == nil {
		return nil, "", false
	}
	v := string(b.Data)
	if !utf8.ValidString(v) {
		v, enc = base64.StdEncoding.EncodeToString(b.Data), "base64"
	}
	return &v, enc, b.Truncated
}

func (s *Start) data(event string) startData {
	d := startData{Event: event, ID: s.ID, Time: s.Time.UTC().Format(TimeFormat), Node: s.Node, Agent: s.Agent, TokenID: s.TokenID,
		Proxy: s.Proxy, Method: s.Method, Path: s.Path, Query: s.Query, Decision: s.Decision, Rule: s.Rule,
		Reason: s.Reason, Report: s.Report, RequestHeaders: s.RequestHeaders}
	if d.RequestHeaders == nil {
		d.RequestHeaders = map[string][]string{}
	}
	if s.SecretVersion > 0 {
		v := s.SecretVersion
		d.SecretVersion = &v
	}
	return d
}

func (e *End) data(id string) endData {
	d := endData{Status: e.Status, Decision: e.Decision, Reason: e.Reason, Rule: e.Rule, LatencyMS: round3(e.LatencyMS),
		RequestBytes: e.RequestBytes, ResponseBytes: e.ResponseBytes, ResponseHeaders: e.ResponseHeaders,
		Filtered: e.Filtered, Scrubbed: e.Scrubbed, Error: e.Error}
	if e.Upstream {
		v := round3(e.UpstreamLatencyMS)
		d.UpstreamLatencyMS = &v
	}
	if id != "" {
		d.Event, d.ID = "end", id
	}
	d.RequestBody, d.RequestEnc, d.RequestTrunc = encodeBody(e.RequestBody)
	d.ResponseBody, d.ResponseEnc, d.ResponseTrunc = encodeBody(e.ResponseBody)
	return d
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// index derives the queryable columns of a start (or whole) record.
func (s *Start) index() store.LogIndex {
	return store.LogIndex{ID: s.ID, Time: s.Time, Node: s.Node, Proxy: s.Proxy, Agent: s.Agent, TokenID: s.TokenID,
		Method: s.Method, Path: s.Path, Decision: s.Decision, Reason: s.Reason, Rule: s.Rule}
}

// wholeJSON is a refused request's record: the start's fields and the
// end's in one JSON object (the end's decision, reason and rule are left
// empty, so no key repeats).
func wholeJSON(s *Start, e *End) ([]byte, error) {
	sd, err := json.Marshal(s.data("record"))
	if err != nil {
		return nil, err
	}
	ed := e.data("")
	ed.Decision, ed.Reason, ed.Rule = "", "", ""
	eb, err := json.Marshal(ed)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(sd)+len(eb))
	out = append(out, sd[:len(sd)-1]...)
	out = append(out, ',')
	return append(out, eb[1:]...), nil
}

// Link computes a chain link: SHA-256(prev ‖ data).
func Link(prev, data []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(data)
	return h.Sum(nil)
}

// Genesis is the prev_hash of a chain's first link.
var Genesis = make([]byte, sha256.Size)

// Merge turns a stored row into the API's record object (SPEC §6, §7.1):
// the start (or whole) event's fields, overlaid with the end event's, plus
// the chain links. A forwarded request without an end event is
// "incomplete" (the node stopped before the response ended).
func Merge(row store.LogRow) map[string]any {
	rec := map[string]any{}
	var links []map[string]any
	ended := false
	for _, e := range row.Events {
		var m map[string]any
		if err := json.Unmarshal(e.Data, &m); err == nil {
			if e.Kind == "end" {
				ended = true
				for k, v := range m {
					if s, ok := v.(string); ok && s == "" && (k == "decision" || k == "reason" || k == "rule") {
						continue
					}
					rec[k] = v
				}
			} else {
				for k, v := range m {
					rec[k] = v
				}
			}
		}
		links = append(links, map[string]any{"seq": e.Seq, "kind": e.Kind,
			"prev_hash": hex.EncodeToString(e.PrevHash), "hash": hex.EncodeToString(e.Hash)})
	}
	for _, k := range []string{"status", "latency_ms", "upstream_latency_ms", "request_bytes", "response_bytes",
		"request_body", "response_body", "response_headers", "secret_version", "rule", "query"} {
		if _, ok := rec[k]; !ok {
			rec[k] = nil
		}
	}
	if _, ok := rec["request_body_truncated"]; !ok {
		rec["request_body_truncated"] = false
		rec["response_body_truncated"] = false
	}
	delete(rec, "event")
	if len(row.Events) > 0 {
		first, last := row.Events[0], row.Events[len(row.Events)-1]
		rec["prev_hash"] = hex.EncodeToString(first.PrevHash)
		rec["hash"] = hex.EncodeToString(last.Hash)
		rec["chain"] = links
		if first.Kind == "start" && !ended {
			rec["incomplete"] = true
			rec["status"] = nil
		}
	}
	// The index is authoritative for nothing: it is derived. But an
	// index-only row (no events read) still shows its metadata.
	if len(row.Events) == 0 {
		x := row.Index
		rec["id"], rec["time"], rec["node"], rec["proxy"], rec["agent"] = x.ID, x.Time.UTC().Format(TimeFormat), x.Node, x.Proxy, x.Agent
		rec["token_id"], rec["method"], rec["path"], rec["decision"], rec["reason"] = x.TokenID, x.Method, x.Path, x.Decision, x.Reason
		rec["rule"], rec["status"], rec["latency_ms"] = x.Rule, x.Status, x.LatencyMS
	}
	return rec
}
