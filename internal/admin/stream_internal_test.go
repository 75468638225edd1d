package admin

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/store"
)

func TestStreamCursor(t *testing.T) {
	c := streamCursor{"node-b": 7, "node-a": 0, "n,:=\"x": 1 << 40}
	got, err := parseStreamCursor(c.String())
	if err != nil || !cmp.Equal(got, c) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if c.String() != (streamCursor{"node-a": 0, "n,:=\"x": 1 << 40, "node-b": 7}).String() {
		t.Error("the cursor of one position is not one string")
	}
	for _, bad := range []string{"", "garbage", encodeCursor("0190"), "czE6", "czE6W10", "czE6eyJhIjotMX0", "czE6eyJhIjoiMSJ9"} {
		if _, err := parseStreamCursor(bad); err == nil {
			t.Errorf("parseStreamCursor(%q) accepted", bad)
		}
	}
}

func TestUUIDFloor(t *testing.T) {
	at := time.Date(2026, 11, 26, 7, 20, 5, 123_000_000, time.UTC)
	f := store.IDFloor(at)
	ms, err := strconv.ParseUint(f[0:8]+f[9:13], 16, 64)
	if len(f) != 36 || err != nil || int64(ms) != at.UnixMilli() {
		t.Fatalf("IDFloor = %s, want the 48-bit millisecond %x first", f, at.UnixMilli())
	}
	// Any UUIDv7 of that millisecond sorts after the floor, and the floor
	// of the millisecond before sorts before it.
	if v7 := f[:14] + "7000-8000-000000000000"; !(store.IDFloor(at.Add(-time.Millisecond)) < f && f < v7) {
		t.Errorf("IDFloor does not order: %s", f)
	}
}

func TestMatchRecord(t *testing.T) {
	rec := map[string]any{"proxy": "stripe", "agent": "bot", "token_id": "tok_1", "decision": "deny", "node": "n1",
		"reason": "denied_by_rule:no-refunds", "status": 403.0, "path": "/v1/refunds/re_1"}
	inflight := map[string]any{"proxy": "stripe", "status": nil, "path": "/v1/x"}
	tests := []struct {
		name string
		rec  map[string]any
		q    store.LogQuery
		want bool
	}{
		{"no filter", rec, store.LogQuery{}, true},
		{"every filter", rec, store.LogQuery{Proxy: "stripe", Agent: "bot", TokenID: "tok_1", Decision: "deny", Node: "n1",
			Reason: "denied_by_rule:no-refunds", Status: 403, PathContains: "refunds"}, true},
		{"another proxy", rec, store.LogQuery{Proxy: "github"}, false},
		{"a reason's prefix", rec, store.LogQuery{Reason: "denied_by_rule"}, true},
		{"not a reason's prefix at a word", rec, store.LogQuery{Reason: "denied_by"}, false},
		{"another status", rec, store.LogQuery{Status: 200}, false},
		{"no status yet", inflight, store.LogQuery{Status: 200}, false},
		{"path", rec, store.LogQuery{PathContains: "/v2"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchRecord(tc.rec, tc.q); got != tc.want {
				t.Errorf("matchRecord = %v, want %v", got, tc.want)
			}
		})
	}
}
