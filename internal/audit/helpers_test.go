package audit_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
)

// t0 has a non-zero microsecond fraction, as real request times do.
var t0 = time.Date(2026, 11, 26, 7, 20, 5, 123456000, time.UTC)

// newStore opens a fresh SQLite store in t.TempDir and returns it with
// its file path.
func newStore(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyhole.db")
	return openStore(t, path), path
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newWriter starts a writer and closes it when t ends (unless the test
// closed it first).
func newWriter(t *testing.T, st store.Audit, opt audit.Options) *audit.Writer {
	t.Helper()
	w, err := audit.NewWriter(context.Background(), st, opt)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return w
}

// faultyAudit decorates a store.Audit: it counts AppendAudit transactions,
// fails them while fail is set, and holds them while gate is open.
type faultyAudit struct {
	store.Audit
	appends atomic.Int64
	fail    atomic.Bool
	gate    chan struct{} // nil: no gate; else AppendAudit waits until it is closed
}

var errInjected = errors.New("disk I/O error (injected)")

func (f *faultyAudit) AppendAudit(ctx context.Context, batch []store.AuditEvent) error {
	f.appends.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.fail.Load() {
		return errInjected
	}
	return f.Audit.AppendAudit(ctx, batch)
}

func recID(i int) string { return fmt.Sprintf("rec-%04d", i) }

// start is a forwarded request's start, i seconds after t0.
func start(node string, i int) *audit.Start {
	return &audit.Start{ID: recID(i), Time: t0.Add(time.Duration(i) * time.Second), Node: node, Agent: "builder",
		TokenID: "tok-1", Proxy: "gh", Method: "GET", Path: fmt.Sprintf("/repos/acme/issues/%d", i), Query: "page=1",
		Decision: audit.Allow, Rule: "read", RequestHeaders: map[string][]string{"Accept": {"application/json"}}, SecretVersion: 1}
}

// refusal is a refused request's start, i seconds after t0.
func refusal(node string, i int) *audit.Start {
	s := start(node, i)
	s.Method, s.Decision, s.Reason, s.Rule, s.SecretVersion = "DELETE", audit.Deny, "denied_by_rule:no-delete", "no-delete", 0
	return s
}

var denied = &audit.End{Status: 403, LatencyMS: 0.25}

func ok200() *audit.End {
	return &audit.End{Status: 200, LatencyMS: 12.5, Upstream: true, UpstreamLatencyMS: 10}
}

// eventually polls cond until it holds, failing after a generous deadline.
// It waits for the writer's own retry; nothing asserts how long that takes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func verifyOK(t *testing.T, st store.Audit, records, events int64) {
	t.Helper()
	res, err := audit.Verify(context.Background(), st, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !res.OK || res.Records != records || res.Events != events {
		t.Errorf("Verify = %+v, want ok with %d records, %d events", res, records, events)
	}
}
