package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// TestDashboardQueriesAtScale measures what the dashboard asks of the
// store on a large audit index: the overview's aggregates over an hour and
// a day, and log pages deep into the index (keyset paging) with and without
// filters. It runs only with KEYHOLE_SCALE_RECORDS=N (e.g. 1000000) and
// reports times; it asserts nothing about them.
func TestDashboardQueriesAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KEYHOLE_SCALE_RECORDS"))
	if n == 0 {
		t.Skip("set KEYHOLE_SCALE_RECORDS=N to measure the dashboard's queries on N records")
	}
	s := open(t, filepath.Join(t.TempDir(), "keyhole.db"))
	ctx := t.Context()
	end := time.Now().UTC()
	start := end.Add(-24 * time.Hour)
	step := 24 * time.Hour / time.Duration(n)
	proxies := []string{"stripe", "openai", "github", "slack"}
	began := time.Now()
	var seq int64
	for i := 0; i < n; {
		batch := make([]store.AuditEvent, 0, 2000)
		for ; i < n && len(batch) < cap(batch); i++ {
			seq++
			at := start.Add(time.Duration(i) * step)
			id := fmt.Sprintf("%012x-0000-7000-8000-%012d", at.UnixMilli(), i)
			dec, st, reason := "allow", 200, "allowed_by_rule:read"
			switch {
			case i%17 == 0:
				dec, st, reason = "deny", 403, "no_rule_allows"
			case i%53 == 0:
				dec, st, reason = "error", 502, "upstream_unreachable"
			}
			batch = append(batch, store.AuditEvent{Node: "n1", Seq: seq, RecordID: id, Kind: "record", Data: []byte(`{}`),
				PrevHash: []byte{0}, Hash: []byte{1}, Index: store.LogIndex{ID: id, Time: at, Node: "n1", Proxy: proxies[i%4],
					Agent: "agent-" + strconv.Itoa(i%25), TokenID: "tok", Method: "GET", Path: "/v1/items/" + strconv.Itoa(i),
					Decision: dec, Reason: reason, Status: st, LatencyMS: float64(i%400) / 3, Complete: true}})
		}
		if err := s.AppendAudit(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d records written in %v", n, time.Since(began).Round(time.Millisecond))
	measure := func(what string, f func() error) {
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%-55s %v", what, time.Since(t0).Round(100*time.Microsecond))
	}
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour} {
		measure("stats over "+w.String(), func() error {
			_, err := s.LogStats(ctx, store.LogStatsQuery{Since: end.Add(-w), Until: end, Bucket: w / 60, ExcludeProxies: []string{"-admin"}})
			return err
		})
	}
	// Page 50 records at a time, deep into the index: the cursor of the
	// middle record.
	mid := fmt.Sprintf("%012x-0000-7000-8000-%012d", start.Add(time.Duration(n/2)*step).UnixMilli(), n/2)
	for _, q := range []store.LogQuery{
		{Limit: 51, WithData: true},
		{Limit: 51, WithData: true, Before: mid},
		{Limit: 51, WithData: true, Before: mid, Proxy: "github"},
		{Limit: 51, WithData: true, Before: mid, Decision: "error"},
		{Limit: 51, WithData: true, Before: mid, Reason: "upstream_unreachable", Agent: "agent-3"},
		{Limit: 51, WithData: true, Before: mid, PathContains: "/v1/items/4242"},
	} {
		measure(fmt.Sprintf("a page: %+v", struct {
			Deep                                 bool
			Proxy, Decision, Reason, Agent, Path string
		}{q.Before != "", q.Proxy, q.Decision, q.Reason, q.Agent, q.PathContains}), func() error {
			_, err := s.QueryLogs(ctx, q)
			return err
		})
	}
}
