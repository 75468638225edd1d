package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// TestWriterGroupCommit pins the group commit: many concurrent requests
// share transactions instead of paying one commit each, and the chain
// they build together still verifies.
func TestWriterGroupCommit(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	fa := &faultyAudit{Audit: st}
	w := newWriter(t, fa, audit.Options{Node: "n1"})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	ready := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-ready
			errs <- w.Begin(ctx, start("n1", i))
			errs <- w.Finish(ctx, recID(i), ok200())
		})
	}
	close(ready)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Begin/Finish: %v", err)
		}
	}
	appends := fa.appends.Load()
	t.Logf("%d events in %d transactions", 2*n, appends)
	if appends >= n {
		t.Errorf("%d events took %d AppendAudit transactions: the writer does not group commits", 2*n, appends)
	}
	verifyOK(t, st, n, 2*n)
	rows, err := st.QueryLogs(ctx, store.LogQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n {
		t.Errorf("%d records listed, want %d", len(rows), n)
	}
	for _, r := range rows {
		if !r.Index.Complete || r.Index.Status != 200 {
			t.Errorf("%s: complete=%v status=%d after Finish returned", r.Index.ID, r.Index.Complete, r.Index.Status)
		}
	}
}

// TestWriterSyncIsDurableOnReturn pins "recorded before forwarded": in sync
// mode, Begin and Record return only once the event is committed, and
// Finish once the completion is.
func TestWriterSyncIsDurableOnReturn(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	w := newWriter(t, st, audit.Options{Node: "n1"})

	if err := w.Record(ctx, refusal("n1", 1), denied); err != nil {
		t.Fatalf("Record: %v", err)
	}
	row, err := st.GetLog(ctx, recID(1))
	if err != nil {
		t.Fatalf("the refused request's record is not visible when Record returns: %v", err)
	}
	if !row.Index.Complete || row.Index.Status != 403 || row.Index.Decision != audit.Deny || len(row.Events) != 1 || row.Events[0].Kind != "record" {
		t.Errorf("record as stored: %+v, %d events", row.Index, len(row.Events))
	}

	if err := w.Begin(ctx, start("n1", 2)); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	row, err = st.GetLog(ctx, recID(2))
	if err != nil {
		t.Fatalf("the start is not visible when Begin returns (the request would be forwarded unrecorded): %v", err)
	}
	if row.Index.Complete || len(row.Events) != 1 || row.Events[0].Kind != "start" {
		t.Errorf("start as stored: %+v, %d events", row.Index, len(row.Events))
	}

	// An end that changes nothing but the status keeps the start's
	// decision, reason and rule, in the index as in the merged record.
	if err := w.Finish(ctx, recID(2), &audit.End{Status: 204, LatencyMS: 3}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	row, err = st.GetLog(ctx, recID(2))
	if err != nil {
		t.Fatal(err)
	}
	want := store.LogIndex{ID: recID(2), Time: t0.Add(2 * time.Second), Node: "n1", Proxy: "gh", Agent: "builder", TokenID: "tok-1",
		Method: "GET", Path: "/repos/acme/issues/2", Decision: audit.Allow, Rule: "read", Status: 204, LatencyMS: 3, Complete: true}
	if row.Index != want {
		t.Errorf("index when Finish returns:\n got %+v\nwant %+v", row.Index, want)
	}
	rec := audit.Merge(row)
	if rec["decision"] != row.Index.Decision || rec["rule"] != row.Index.Rule {
		t.Errorf("merged record says decision %v rule %v, the index %q %q", rec["decision"], rec["rule"], row.Index.Decision, row.Index.Rule)
	}
}

// TestWriterFailClosed pins --audit-failure=closed: while the store fails,
// requests are refused (ErrUnavailable, 503) rather than forwarded
// unrecorded; the writer recovers by itself; and the completions of
// requests that had already reached an upstream are kept and committed
// after recovery.
func TestWriterFailClosed(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	fa := &faultyAudit{Audit: st}
	w := newWriter(t, fa, audit.Options{Node: "n1"})

	// Request 1 is forwarded before the fault.
	if err := w.Begin(ctx, start("n1", 1)); err != nil {
		t.Fatalf("Begin before the fault: %v", err)
	}
	if !w.Healthy() {
		t.Error("Healthy() = false before any fault")
	}

	fa.fail.Store(true)
	if err := w.Begin(ctx, start("n1", 2)); !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("Begin during the fault = %v, want ErrUnavailable", err)
	}
	if err := w.Record(ctx, refusal("n1", 3), denied); !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("Record during the fault = %v, want ErrUnavailable", err)
	}
	if w.Healthy() {
		t.Error("Healthy() = true while the store fails")
	}
	// Request 1's upstream answered during the fault: its completion is
	// not droppable.
	err := w.Finish(ctx, recID(1), ok200())
	t.Logf("Finish during the fault: %v", err)

	fa.fail.Store(false)
	i := 100
	eventually(t, "a Begin to succeed after the fault cleared", func() bool {
		i++
		err := w.Begin(ctx, start("n1", i))
		if err != nil && !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("Begin after the fault = %v", err)
		}
		return err == nil
	})
	// A small commit after a failure does not make the store healthy by
	// itself (a full disk takes small writes): the writer's probe, which
	// runs right after, does.
	eventually(t, "Healthy() after a write succeeded and the probe ran", w.Healthy)

	row, err := st.GetLog(ctx, recID(1))
	if err != nil {
		t.Fatal(err)
	}
	if !row.Index.Complete || row.Index.Status != 200 || len(row.Events) != 2 {
		t.Errorf("the completion submitted during the fault was lost: %+v, %d events", row.Index, len(row.Events))
	}
	// The refused requests were answered 503 and never forwarded: they
	// must not appear later as allowed requests.
	for _, id := range []string{recID(2), recID(3)} {
		if _, err := st.GetLog(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetLog(%s) = %v: an event refused with ErrUnavailable was committed later", id, err)
		}
	}
	// Attempts that failed fast while the store recovered were not
	// committed either; the one that succeeded was.
	for j := 101; j < i; j++ {
		if _, err := st.GetLog(ctx, recID(j)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetLog(%s) = %v, want not found", recID(j), err)
		}
	}
	if _, err := st.GetLog(ctx, recID(i)); err != nil {
		t.Errorf("GetLog(%s): %v", recID(i), err)
	}
	// record 1 (start, end) and record i (start)
	verifyOK(t, st, 2, 3)
}

// TestWriterFailOpen pins --audit-failure=open: requests proceed while the
// store fails, and their events are committed once it recovers, without
// any new request to push them.
func TestWriterFailOpen(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	fa := &faultyAudit{Audit: st}
	w := newWriter(t, fa, audit.Options{Node: "n1", FailOpen: true})

	fa.fail.Store(true)
	if err := w.Begin(ctx, start("n1", 1)); err != nil {
		t.Errorf("Begin during the fault in open mode = %v, want nil", err)
	}
	if w.Healthy() {
		t.Error("Healthy() = true while the store fails")
	}
	if err := w.Finish(ctx, recID(1), ok200()); err != nil {
		t.Errorf("Finish during the fault in open mode = %v, want nil", err)
	}
	if err := w.Record(ctx, refusal("n1", 2), denied); err != nil {
		t.Errorf("Record during the fault in open mode = %v, want nil", err)
	}
	if _, err := st.GetLog(ctx, recID(1)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetLog during the fault = %v, want not found", err)
	}

	fa.fail.Store(false)
	eventually(t, "the events kept during the fault to be committed", func() bool {
		r1, err1 := st.GetLog(ctx, recID(1))
		_, err2 := st.GetLog(ctx, recID(2))
		return err1 == nil && err2 == nil && r1.Index.Complete
	})
	// The writer marks itself healthy just after its commit: wait for it.
	eventually(t, "Healthy() to turn true after the retry committed", w.Healthy)
	verifyOK(t, st, 2, 3)
}

// TestWriterAsync pins --audit-durability=async: calls return before the
// commit, Close commits everything still queued, and nothing is accepted
// after Close.
func TestWriterAsync(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	fa := &faultyAudit{Audit: st, gate: make(chan struct{})}
	w := newWriter(t, fa, audit.Options{Node: "n1", Async: true})
	if !w.Async() {
		t.Error("Async() = false")
	}

	// The store holds every commit: the calls return anyway.
	const n = 30
	for i := range n {
		if err := w.Begin(ctx, start("n1", i)); err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if i%2 == 0 {
			if err := w.Finish(ctx, recID(i), ok200()); err != nil {
				t.Fatalf("Finish: %v", err)
			}
		}
	}
	if err := w.Record(ctx, refusal("n1", n), denied); err != nil {
		t.Fatalf("Record: %v", err)
	}
	if _, err := st.GetLog(ctx, recID(0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetLog while the store holds the commit = %v: the async call waited for it", err)
	}

	close(fa.gate)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rows, err := st.QueryLogs(ctx, store.LogQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n+1 {
		t.Errorf("%d records after Close, want %d: Close did not flush the queue", len(rows), n+1)
	}
	for _, r := range rows {
		i := 0
		for j := range n + 1 {
			if recID(j) == r.Index.ID {
				i = j
			}
		}
		if wantDone := i%2 == 0 || i == n; r.Index.Complete != wantDone {
			t.Errorf("%s complete = %v, want %v", r.Index.ID, r.Index.Complete, wantDone)
		}
	}
	verifyOK(t, st, n+1, n+1+n/2)

	if err := w.Begin(ctx, start("n1", 100)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Begin after Close = %v, want ErrClosed", err)
	}
	if err := w.Record(ctx, refusal("n1", 101), denied); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Close = %v, want ErrClosed", err)
	}
	if err := w.Finish(ctx, recID(1), ok200()); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Finish after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(cctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestWriterChainContinuesAfterRestart pins that a restarted node appends
// to its chain instead of starting a second one at seq 1 (which would
// break the chain, or collide with the old links).
func TestWriterChainContinuesAfterRestart(t *testing.T) {
	ctx := context.Background()
	st, path := newStore(t)
	w := newWriter(t, st, audit.Options{Node: "n1"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Record(ctx, refusal("n1", 1), denied))
	must(w.Begin(ctx, start("n1", 2)))
	must(w.Finish(ctx, recID(2), ok200()))
	must(w.Begin(ctx, start("n1", 3))) // in flight when the node stops
	must(w.Close(ctx))
	head, err := st.ChainHead(ctx, "n1")
	must(err)
	must(st.Close())

	st = openStore(t, path)
	w = newWriter(t, st, audit.Options{Node: "n1"})
	must(w.Record(ctx, refusal("n1", 4), denied))
	must(w.Begin(ctx, start("n1", 5)))
	must(w.Finish(ctx, recID(5), ok200()))

	var links []store.AuditEvent
	must(st.Chain(ctx, "n1", func(e store.AuditEvent) error { links = append(links, e); return nil }))
	if len(links) != 7 {
		t.Fatalf("%d links, want 7", len(links))
	}
	first := links[head.Seq] // the first link after the restart
	if first.Seq != head.Seq+1 || string(first.PrevHash) != string(head.Hash) {
		t.Errorf("first link after restart: seq %d, prev %x; want seq %d, prev %x", first.Seq, first.PrevHash, head.Seq+1, head.Hash)
	}
	verifyOK(t, st, 5, 7)
	row, err := st.GetLog(ctx, recID(3))
	must(err)
	if rec := audit.Merge(row); rec["incomplete"] != true {
		t.Errorf("the request in flight at the restart: incomplete = %v, want true", rec["incomplete"])
	}
}
