package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// retained is a store with a running keyed writer for n1 and
//
//	n1: seq 1 rec-0001 record  t0+1s
//	    seq 2 rec-0002 start   t0+2s
//	    seq 3 rec-0003 record  t0+3s
//	    seq 4 rec-0010 record  t0+10s
//	    seq 5 rec-0002 end     (a late end of an old record)
//	    seq 6 rec-0011 record  t0+11s
//	n2: seq 1 rec-0021 record  t0+21s (another node's chain: never cut by n1)
type retained struct {
	st   store.Store
	db   *sql.DB
	w    *audit.Writer
	file string
}

const keep = time.Hour

// at is the "now" of a retention pass whose cutoff is t0+sec.
func at(sec int) time.Time { return t0.Add(keep + time.Duration(sec)*time.Second) }

func retainedFixture(t *testing.T) *retained {
	t.Helper()
	ctx := context.Background()
	st, path := newStore(t)
	r := &retained{st: st, file: filepath.Join(t.TempDir(), audit.CheckpointFileName)}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r.db = db
	w2 := newWriter(t, st, audit.Options{Node: "n2", CheckpointKey: testKey})
	if err := w2.Record(ctx, refusal("n2", 21), denied); err != nil {
		t.Fatal(err)
	}
	r.w = newWriter(t, st, keyedOptions(r.file))
	r.record(t, 1)
	if err := r.w.Begin(ctx, start("n1", 2)); err != nil {
		t.Fatal(err)
	}
	r.record(t, 3)
	r.record(t, 10)
	if err := r.w.Finish(ctx, recID(2), ok200()); err != nil {
		t.Fatal(err)
	}
	r.record(t, 11)
	return r
}

func (r *retained) record(t *testing.T, i int) {
	t.Helper()
	if err := r.w.Record(context.Background(), refusal("n1", i), denied); err != nil {
		t.Fatal(err)
	}
}

func (r *retained) pass(t *testing.T, now time.Time) audit.Cut {
	t.Helper()
	cut, err := (&audit.Retention{Writer: r.w, Store: r.st, Keep: keep, Batch: 2}).Pass(context.Background(), now)
	if err != nil {
		t.Fatalf("retention pass: %v", err)
	}
	return cut
}

func (r *retained) verify(t *testing.T) audit.VerifyResult {
	t.Helper()
	heads, err := r.w.Checkpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(context.Background(), r.st, heads)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// seqs lists n1's links as seq:kind.
func (r *retained) seqs(t *testing.T) []string {
	t.Helper()
	var out []string
	err := r.st.Chain(context.Background(), "n1", func(e store.AuditEvent) error {
		out = append(out, itoa(e.Seq)+":"+e.Kind)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// listed says which of ids GET /logs/{id} still finds.
func (r *retained) listed(t *testing.T, ids ...string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, id := range ids {
		_, err := r.st.GetLog(context.Background(), id)
		switch {
		case err == nil:
			out[id] = true
		case errors.Is(err, store.ErrNotFound):
			out[id] = false
		default:
			t.Fatal(err)
		}
	}
	return out
}

func cutOf(t *testing.T, st store.Audit, seq int64) map[string]any {
	t.Helper()
	e, err := st.ChainLink(context.Background(), "n1", seq)
	if err != nil {
		t.Fatalf("link %d: %v", seq, err)
	}
	if e.Kind != "cut" {
		t.Fatalf("link %d is a %s, want a cut", seq, e.Kind)
	}
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRetentionOnePass(t *testing.T) {
	r := retainedFixture(t)
	_, _, hash3 := link(t, r.db, 3)
	cut := r.pass(t, at(5))
	want := audit.Cut{FirstSeq: 4, PrevHash: hash3, Records: 3, Links: 3, Deleted: 3, Cutoff: t0.Add(5 * time.Second)}
	if d := cmp.Diff(want, cut); d != "" {
		t.Errorf("Pass (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"4:record", "5:end", "6:record", "7:cut"}, r.seqs(t)); d != "" {
		t.Errorf("n1's chain after the pass (-want +got):\n%s", d)
	}
	wantListed := map[string]bool{recID(1): false, recID(2): false, recID(3): false, recID(10): true, recID(11): true, recID(21): true}
	if d := cmp.Diff(wantListed, r.listed(t, recID(1), recID(2), recID(3), recID(10), recID(11), recID(21))); d != "" {
		t.Errorf("records found after the pass (-want +got):\n%s", d)
	}
	gotCut := cutOf(t, r.st, 7)
	wantCut := map[string]any{"event": "cut", "node": "n1", "first_seq": float64(4), "prev_hash": hex.EncodeToString(hash3),
		"records": float64(3), "links": float64(3), "cutoff": "2026-11-26T07:20:10.123456Z", "time": at(5).Format(audit.TimeFormat)}
	if d := cmp.Diff(wantCut, gotCut, cmpopts.IgnoreMapEntries(func(k string, _ any) bool { return k == "id" })); d != "" {
		t.Errorf("the cut event (-want +got):\n%s", d)
	}
	if res := r.verify(t); !res.OK || res.Records != 3 || res.Events != 5 || res.Nodes != 2 {
		t.Errorf("Verify after one pass = %+v, want ok with 3 records (rec-0010, rec-0011, rec-0021), 5 links", res)
	}
	// Nothing more is old: a second pass at the same time cuts nothing.
	if cut := r.pass(t, at(5)); cut.FirstSeq != 0 || cut.Deleted != 0 {
		t.Errorf("a pass with nothing old = %+v, want no cut", cut)
	}
	if n := len(r.seqs(t)); n != 4 {
		t.Errorf("a pass with nothing old appended a link: %d links", n)
	}
}

func TestRetentionTwoPasses(t *testing.T) {
	r := retainedFixture(t)
	r.pass(t, at(5))
	r.record(t, 20)
	_, _, hash6 := link(t, r.db, 6)
	cut := r.pass(t, at(15))
	// Links 4-6 are old now; the first cut (link 7, written "at(5)") is
	// not: the chain starts at it.
	want := audit.Cut{FirstSeq: 7, PrevHash: hash6, Records: 2, Links: 3, Deleted: 3, Cutoff: t0.Add(15 * time.Second)}
	if d := cmp.Diff(want, cut); d != "" {
		t.Errorf("second Pass (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"7:cut", "8:record", "9:cut"}, r.seqs(t)); d != "" {
		t.Errorf("n1's chain after two passes (-want +got):\n%s", d)
	}
	if res := r.verify(t); !res.OK || res.Records != 2 || res.Events != 4 {
		t.Errorf("Verify after two passes = %+v, want ok with 2 records, 4 links", res)
	}
	// Once everything is old, the chain is the last cut alone.
	cut = r.pass(t, at(24*3600))
	if cut.FirstSeq != 10 || cut.Records != 1 || cut.Links != 3 {
		t.Errorf("a pass with every link old = %+v, want the chain to start at the new cut, link 10", cut)
	}
	if d := cmp.Diff([]string{"10:cut"}, r.seqs(t)); d != "" {
		t.Errorf("n1's chain when everything was old (-want +got):\n%s", d)
	}
	if res := r.verify(t); !res.OK || res.Records != 1 || res.Events != 2 {
		t.Errorf("Verify with a chain of one cut = %+v, want ok (n2's record only)", res)
	}
	// The node goes on after it.
	r.record(t, 30)
	if res := r.verify(t); !res.OK {
		t.Errorf("Verify after a record following the cut = %+v", res)
	}
}

func TestRetentionTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, r *retained)
		want   audit.VerifyResult
	}{
		{
			name: "edit the cut",
			tamper: func(t *testing.T, r *retained) {
				data, _, _ := link(t, r.db, 7)
				data = bytes.Replace(data, []byte(`"first_seq":4`), []byte(`"first_seq":5`), 1)
				tamper(t, r.db, `UPDATE audit_events SET data = ? WHERE node = 'n1' AND seq = 7`, data)
			},
			want: audit.VerifyResult{Node: "n1", Seq: 7, Reason: "link 7's hash does not match its data: the record was altered"},
		},
		{
			name: "edit the cut and recompute its hash",
			tamper: func(t *testing.T, r *retained) {
				data, prev, _ := link(t, r.db, 7)
				data = bytes.Replace(data, []byte(`"first_seq":4`), []byte(`"first_seq":5`), 1)
				tamper(t, r.db, `UPDATE audit_events SET data = ?, hash = ? WHERE node = 'n1' AND seq = 7`, data, audit.Link(prev, data))
			},
			want: audit.VerifyResult{Node: "n1", Seq: 7, Reason: "link 7 of node n1 is not the one written (per audit_heads): the chain was rewritten from there on"},
		},
		{
			name: "delete more than the cut says",
			tamper: func(t *testing.T, r *retained) {
				tamper(t, r.db, `DELETE FROM audit_records WHERE id = ?`, recID(10))
				tamper(t, r.db, `DELETE FROM audit_events WHERE node = 'n1' AND seq = 4`)
			},
			want: audit.VerifyResult{FirstBad: recID(2), Node: "n1", Seq: 5,
				Reason: "the chain of node n1 starts at link 5, but its latest cut (link 7) removed only the links before 4: links were deleted beyond the cut"},
		},
		{
			name: "replace the first link kept",
			tamper: func(t *testing.T, r *retained) {
				// A new beginning, linked to a made-up predecessor: its
				// successor no longer follows it.
				data, _, _ := link(t, r.db, 4)
				prev := audit.Link(nil, []byte("made up"))
				tamper(t, r.db, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE node = 'n1' AND seq = 4`, prev, audit.Link(prev, data))
			},
			want: audit.VerifyResult{FirstBad: recID(2), Node: "n1", Seq: 5,
				Reason: "link 5 does not continue link 4: a record was inserted, removed or reordered"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := retainedFixture(t)
			r.pass(t, at(5))
			if res := r.verify(t); !res.OK {
				t.Fatalf("setup: Verify after the pass = %+v", res)
			}
			tc.tamper(t, r)
			got := r.verify(t)
			if got.FirstBad != "" && tc.want.FirstBad == "" {
				tc.want.FirstBad = got.FirstBad // a cut's id is random
			}
			if d := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(audit.VerifyResult{}, "Records", "Events", "Nodes")); d != "" {
				t.Errorf("Verify (-want +got):\n%s", d)
			}
		})
	}
}

// failingDeletes lets DeleteAuditPrefix through `allow` times, then fails:
// a pass stopped half way (a crash, a full disk).
type failingDeletes struct {
	store.Audit
	allow atomic.Int64
}

func (f *failingDeletes) DeleteAuditPrefix(ctx context.Context, node string, before int64, limit int) (int64, int64, error) {
	if f.allow.Add(-1) < 0 {
		return 0, 0, errInjected
	}
	return f.Audit.DeleteAuditPrefix(ctx, node, before, limit)
}

// A pass records its cut before it deletes: one stopped half way leaves a
// chain that still verifies, and the next pass finishes the job.
func TestRetentionInterrupted(t *testing.T) {
	r := retainedFixture(t)
	fd := &failingDeletes{Audit: r.st}
	fd.allow.Store(1)
	_, err := (&audit.Retention{Writer: r.w, Store: fd, Keep: keep, Batch: 1}).Pass(context.Background(), at(5))
	if !errors.Is(err, errInjected) {
		t.Fatalf("interrupted pass: err = %v, want the injected failure", err)
	}
	if d := cmp.Diff([]string{"2:start", "3:record", "4:record", "5:end", "6:record", "7:cut"}, r.seqs(t)); d != "" {
		t.Errorf("chain after the interrupted pass (-want +got):\n%s", d)
	}
	if res := r.verify(t); !res.OK {
		t.Errorf("Verify after an interrupted pass = %+v, want ok", res)
	}
	r.pass(t, at(5))
	if d := cmp.Diff([]string{"4:record", "5:end", "6:record", "7:cut", "8:cut"}, r.seqs(t)); d != "" {
		t.Errorf("chain after the next pass (-want +got):\n%s", d)
	}
	if res := r.verify(t); !res.OK {
		t.Errorf("Verify after the next pass = %+v, want ok", res)
	}
}

// Nothing is deleted unless the cut is committed first.
func TestRetentionDeletesNothingWithoutItsCut(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	fa := &faultyAudit{Audit: st}
	w := newWriter(t, fa, audit.Options{Node: "n1", CheckpointKey: testKey})
	for i := 1; i <= 3; i++ {
		if err := w.Record(ctx, refusal("n1", i), denied); err != nil {
			t.Fatal(err)
		}
	}
	fa.fail.Store(true)
	_, err := (&audit.Retention{Writer: w, Store: st, Keep: keep}).Pass(ctx, at(100))
	if err == nil {
		t.Fatal("a pass whose cut could not be committed succeeded")
	}
	fa.fail.Store(false)
	n := 0
	if err := st.Chain(ctx, "n1", func(store.AuditEvent) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d links left after a pass whose cut failed, want all 3", n)
	}
}

// Run makes its first pass at once; it stops with its context.
func TestRetentionRun(t *testing.T) {
	r := retainedFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&audit.Retention{Writer: r.w, Store: r.st, Keep: time.Nanosecond}).Run(ctx, time.Hour)
	}()
	eventually(t, "the first pass cuts every record", func() bool {
		l := r.listed(t, recID(1), recID(11))
		return !l[recID(1)] && !l[recID(11)]
	})
	cancel()
	<-done
	if res := r.verify(t); !res.OK {
		t.Errorf("Verify after Run = %+v", res)
	}
}
