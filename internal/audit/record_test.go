package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// merged writes events through a real writer and store and returns the
// stored row and its merged record.
func merged(t *testing.T, write func(w *audit.Writer) error, id string) (store.LogRow, map[string]any) {
	t.Helper()
	st, _ := newStore(t)
	w := newWriter(t, st, audit.Options{Node: "n1"})
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	row, err := st.GetLog(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as the API serves it.
	b, err := json.Marshal(audit.Merge(row))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return row, rec
}

func TestMerge(t *testing.T) {
	ctx := context.Background()
	type chainLink = map[string]any
	tests := []struct {
		name  string
		write func(w *audit.Writer) error
		want  map[string]any // fields of the merged record
		kinds []string       // its chain
	}{
		{
			name: "start and end: the end's fields override",
			write: func(w *audit.Writer) error {
				s := start("n1", 1)
				s.Reason = "report_only:watch"
				if err := w.Begin(ctx, s); err != nil {
					return err
				}
				return w.Finish(ctx, recID(1), &audit.End{Status: 502, Decision: audit.Error, Reason: "upstream_unreachable",
					LatencyMS: 12.34567, Upstream: true, UpstreamLatencyMS: 10.0004, RequestBytes: 7,
					ResponseBody: &audit.Body{Data: []byte("bad gateway")}})
			},
			want: map[string]any{"id": recID(1), "decision": "error", "reason": "upstream_unreachable", "rule": "read",
				"status": 502.0, "latency_ms": 12.346, "upstream_latency_ms": 10.0, "request_bytes": 7.0, "secret_version": 1.0,
				"query": "page=1", "response_body": "bad gateway", "response_body_truncated": false, "request_body": nil},
			kinds: []string{"start", "end"},
		},
		{
			name: "an end without decision, reason or rule keeps the start's",
			write: func(w *audit.Writer) error {
				s := start("n1", 1)
				s.Reason = "report_only:watch"
				if err := w.Begin(ctx, s); err != nil {
					return err
				}
				return w.Finish(ctx, recID(1), &audit.End{Status: 200, LatencyMS: 1})
			},
			want:  map[string]any{"decision": "allow", "reason": "report_only:watch", "rule": "read", "status": 200.0},
			kinds: []string{"start", "end"},
		},
		{
			name:  "a start without end is incomplete, status null",
			write: func(w *audit.Writer) error { return w.Begin(ctx, start("n1", 1)) },
			want: map[string]any{"incomplete": true, "status": nil, "latency_ms": nil, "response_body": nil,
				"upstream_latency_ms": nil, "decision": "allow"},
			kinds: []string{"start"},
		},
		{
			name:  "a whole record (a refusal)",
			write: func(w *audit.Writer) error { return w.Record(ctx, refusal("n1", 1), denied) },
			want: map[string]any{"decision": "deny", "reason": "denied_by_rule:no-delete", "rule": "no-delete", "status": 403.0,
				"latency_ms": 0.25, "secret_version": nil, "upstream_latency_ms": nil},
			kinds: []string{"record"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			row, rec := merged(t, tc.write, recID(1))
			got := map[string]any{}
			for k := range tc.want {
				v, ok := rec[k]
				if !ok {
					v = "<absent>"
				}
				got[k] = v
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("merged record (-want +got):\n%s", d)
			}
			if _, ok := tc.want["incomplete"]; !ok {
				if v, ok := rec["incomplete"]; ok {
					t.Errorf("incomplete = %v on a record that is not", v)
				}
			}
			first, last := row.Events[0], row.Events[len(row.Events)-1]
			if rec["prev_hash"] != hex.EncodeToString(first.PrevHash) || rec["hash"] != hex.EncodeToString(last.Hash) {
				t.Errorf("prev_hash %v, hash %v; want the first link's prev and the last link's hash", rec["prev_hash"], rec["hash"])
			}
			chain, _ := rec["chain"].([]any)
			var kinds []string
			for _, l := range chain {
				kinds = append(kinds, l.(chainLink)["kind"].(string))
			}
			if d := cmp.Diff(tc.kinds, kinds); d != "" {
				t.Errorf("chain kinds (-want +got):\n%s", d)
			}
		})
	}
}

var timeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$`)

// TestTimeFormat pins SPEC §6: RFC 3339 in UTC with a fixed six-digit
// fraction, never dropped when it is zero.
func TestTimeFormat(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"zero fraction", time.Date(2026, 11, 26, 7, 20, 5, 0, time.UTC), "2026-11-26T07:20:05.000000Z"},
		{"microseconds", time.Date(2026, 11, 26, 7, 20, 5, 123456000, time.UTC), "2026-11-26T07:20:05.123456Z"},
		{"trailing zeros kept", time.Date(2026, 11, 26, 7, 20, 5, 120000000, time.UTC), "2026-11-26T07:20:05.120000Z"},
		{"one microsecond", time.Date(2026, 11, 26, 7, 20, 5, 1000, time.UTC), "2026-11-26T07:20:05.000001Z"},
		{"another zone is written in UTC", time.Date(2026, 11, 26, 12, 50, 5, 0, ist), "2026-11-26T07:20:05.000000Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The stored record.
			s := refusal("n1", 1)
			s.Time = tc.in
			_, rec := merged(t, func(w *audit.Writer) error { return w.Record(context.Background(), s, denied) }, recID(1))
			if got := rec["time"]; got != tc.want || !timeRE.MatchString(tc.want) {
				t.Errorf("stored record time = %v, want %s", got, tc.want)
			}
			// An index-only row (no events read).
			got := audit.Merge(store.LogRow{Index: store.LogIndex{ID: "x", Time: tc.in}})["time"]
			if got != tc.want {
				t.Errorf("index-only record time = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestRecordNonUTF8Body pins SPEC §7.1: a body that is not UTF-8 is stored
// base64 with *_body_encoding, so that it survives JSON intact.
func TestRecordNonUTF8Body(t *testing.T) {
	raw := []byte{0x89, 'P', 'N', 'G', 0x00, 0xff, 0xfe, '\n'}
	_, rec := merged(t, func(w *audit.Writer) error {
		if err := w.Begin(context.Background(), start("n1", 1)); err != nil {
			return err
		}
		return w.Finish(context.Background(), recID(1), &audit.End{Status: 200,
			RequestBody: &audit.Body{Data: raw}, ResponseBody: &audit.Body{Data: []byte("plain text")}})
	}, recID(1))
	if rec["request_body_encoding"] != "base64" {
		t.Errorf("request_body_encoding = %v, want base64", rec["request_body_encoding"])
	}
	if got, _ := base64.StdEncoding.DecodeString(rec["request_body"].(string)); !bytes.Equal(got, raw) {
		t.Errorf("request_body decodes to %q, want %q", got, raw)
	}
	if v, ok := rec["response_body_encoding"]; ok {
		t.Errorf("a UTF-8 body has response_body_encoding %v", v)
	}

	// The stored bytes (what the chain hashes) say so too; a refusal's
	// whole record as well.
	row, _ := merged(t, func(w *audit.Writer) error {
		return w.Record(context.Background(), refusal("n1", 1), &audit.End{Status: 403, RequestBody: &audit.Body{Data: raw}})
	}, recID(1))
	if !bytes.Contains(row.Events[0].Data, []byte(`"request_body_encoding":"base64"`)) {
		t.Errorf("stored record %s lacks request_body_encoding base64", row.Events[0].Data)
	}
}

// TestRecordLogInjection pins that what an agent sends is stored as data:
// CR, LF, ANSI escapes and U+2028 in headers, path and query stay
// characters inside JSON strings, so that a line-oriented reader of the
// log (jsonl export, a terminal) sees no forged line or colour.
func TestRecordLogInjection(t *testing.T) {
	evil := []string{
		"ok\r\n{\"id\":\"forged\",\"decision\":\"allow\"}",
		"\x1b[2J\x1b[31mred\x1b[0m",
		"js\u2028line\u2029para",
		"nul\x00byte",
	}
	s := start("n1", 1)
	s.RequestHeaders = testRedactor().Headers(http.Header{"X-Evil": evil, "User-Agent": {evil[1]}})
	s.Path = "/x\r\ny"
	s.Query = "q=a\nb"
	row, rec := merged(t, func(w *audit.Writer) error {
		if err := w.Begin(context.Background(), s); err != nil {
			return err
		}
		return w.Finish(context.Background(), recID(1), &audit.End{Status: 200, Error: "upstream said \r\nbye",
			ResponseHeaders: map[string][]string{"X-Upstream": {evil[0]}}})
	}, recID(1))
	for _, e := range row.Events {
		for _, bad := range []string{"\r", "\n", "\x1b", "\x00", "\u2028", "\u2029"} {
			if bytes.Contains(e.Data, []byte(bad)) {
				t.Errorf("stored %s event holds a raw %q: %s", e.Kind, bad, e.Data)
			}
		}
	}
	hdrs, _ := rec["request_headers"].(map[string]any)
	var got []string
	for _, v := range hdrs["X-Evil"].([]any) {
		got = append(got, v.(string))
	}
	if d := cmp.Diff(evil, got); d != "" {
		t.Errorf("header values did not survive as data (-want +got):\n%s", d)
	}
	if rec["path"] != s.Path || rec["query"] != s.Query {
		t.Errorf("path %q query %q did not survive", rec["path"], rec["query"])
	}
}
