package audit_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
)

// BenchmarkWriterSync is the audit cost of one forwarded request in sync
// mode: its start and end committed through the group-commit writer into
// SQLite, with many requests in flight (as under load).
func BenchmarkWriterSync(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "a.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := audit.NewWriter(context.Background(), st, audit.Options{Node: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(context.Background())
	hdr := map[string][]string{"Accept": {"application/json"}, "User-Agent": {"bench/1.0"}, "Authorization": {"Bearer [REDACTED]"}}
	body := &audit.Body{Data: []byte(`{"id":"cus_123","object":"customer","email":"ann@example.com","balance":0}`)}
	pad := strings.Repeat("x", 0)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id, _ := uuid.NewV7()
			s := &audit.Start{ID: id.String(), Time: time.Now(), Node: "bench", Agent: "bot", TokenID: "tok_x", Proxy: "p" + pad,
				Method: "GET", Path: "/v1/customers/cus_123", Decision: audit.Allow, Reason: "allowed_by_rule:all", Rule: "all",
				RequestHeaders: hdr, SecretVersion: 1}
			if err := w.Begin(ctx, s); err != nil {
				b.Fatal(err)
			}
			e := &audit.End{Status: 200, LatencyMS: 1.2, Upstream: true, UpstreamLatencyMS: 0.9, ResponseBytes: 80,
				ResponseHeaders: hdr, ResponseBody: body}
			if err := w.Finish(ctx, s.ID, e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
