package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// chainFixture writes, through the real writer, node n1's chain
//
//	seq 1 rec-0001 record
//	seq 2 rec-0002 record
//	seq 3 rec-0003 record
//	seq 4 rec-0004 start
//	seq 5 rec-0004 end
//	seq 6 rec-0005 start
//	seq 7 rec-0005 end
//	seq 8 rec-0006 record
//
// and node n2's (two records), and returns the store, a second handle on
// the same file for tampering, and the nodes' heads as written.
func chainFixture(t *testing.T) (store.Store, *sql.DB, map[string]store.ChainHead) {
	t.Helper()
	ctx := context.Background()
	st, path := newStore(t)
	for _, node := range []string{"n1", "n2"} {
		w := newWriter(t, st, audit.Options{Node: node})
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		if node == "n2" {
			must(w.Record(ctx, refusal(node, 21), denied))
			must(w.Record(ctx, refusal(node, 22), denied))
		} else {
			must(w.Record(ctx, refusal(node, 1), denied))
			must(w.Record(ctx, refusal(node, 2), denied))
			must(w.Record(ctx, refusal(node, 3), denied))
			must(w.Begin(ctx, start(node, 4)))
			must(w.Finish(ctx, recID(4), ok200()))
			must(w.Begin(ctx, start(node, 5)))
			must(w.Finish(ctx, recID(5), ok200()))
			must(w.Record(ctx, refusal(node, 6), denied))
		}
		must(w.Close(ctx))
	}
	heads := map[string]store.ChainHead{}
	for _, node := range []string{"n1", "n2"} {
		h, err := st.ChainHead(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		heads[node] = h
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return st, db, heads
}

// tamper runs SQL on the database file behind the store's back.
func tamper(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("tamper %q: %v", query, err)
	}
}

// link reads one stored link of n1.
func link(t *testing.T, db *sql.DB, seq int) (data, prev, hash []byte) {
	t.Helper()
	if err := db.QueryRow(`SELECT data, prev_hash, hash FROM audit_events WHERE node = 'n1' AND seq = ?`, seq).Scan(&data, &prev, &hash); err != nil {
		t.Fatalf("read link %d: %v", seq, err)
	}
	return data, prev, hash
}

// edit turns a denied request's data into an allowed one's.
func edit(data []byte) []byte {
	out := bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
	if bytes.Equal(out, data) {
		panic("edit: no denial in " + string(data))
	}
	return out
}

func TestVerifyFindsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB)
		heads  bool // pass the heads checkpoint
		want   audit.VerifyResult
		// bug, when set, names a known gap: the test is skipped while
		// Verify still misses the tampering.
		bug string
	}{
		{
			name:   "untouched",
			tamper: func(*testing.T, *sql.DB) {},
			heads:  true,
			want:   audit.VerifyResult{OK: true, Records: 8, Events: 10, Nodes: 2},
		},
		{
			name: "edit one event's data",
			tamper: func(t *testing.T, db *sql.DB) {
				data, _, _ := link(t, db, 2)
				tamper(t, db, `UPDATE audit_events SET data = ? WHERE node = 'n1' AND seq = 2`, edit(data))
			},
			want: audit.VerifyResult{FirstBad: recID(2), Node: "n1", Seq: 2,
				Reason: "link 2's hash does not match its data: the record was altered"},
		},
		{
			name: "edit one event's data and recompute its hash",
			tamper: func(t *testing.T, db *sql.DB) {
				data, prev, _ := link(t, db, 2)
				data = edit(data)
				tamper(t, db, `UPDATE audit_events SET data = ?, hash = ? WHERE node = 'n1' AND seq = 2`, data, audit.Link(prev, data))
			},
			want: audit.VerifyResult{FirstBad: recID(3), Node: "n1", Seq: 3,
				Reason: "link 3 does not continue link 2: a record was inserted, removed or reordered"},
		},
		{
			name: "delete a middle event",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1' AND seq = 4`)
			},
			want: audit.VerifyResult{FirstBad: recID(4), Node: "n1", Seq: 5,
				Reason: "link 5 follows link 3: links between them were deleted"},
		},
		{
			name: "delete the beginning",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1' AND seq <= 2`)
			},
			want: audit.VerifyResult{FirstBad: recID(3), Node: "n1", Seq: 3,
				Reason: "the chain of node n1 starts at link 3, not 1: its beginning was deleted"},
		},
		{
			name: "insert a forged event with a hash of its own data",
			tamper: func(t *testing.T, db *sql.DB) {
				data := []byte(`{"event":"record","id":"forged","decision":"allow"}`)
				prev := audit.Link(nil, []byte("not the previous link"))
				tamper(t, db, `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES ('n1', 9, 'forged', 'record', ?, ?, ?)`,
					data, prev, audit.Link(prev, data))
			},
			want: audit.VerifyResult{FirstBad: "forged", Node: "n1", Seq: 9,
				Reason: "link 9 does not continue link 8: a record was inserted, removed or reordered"},
		},
		{
			name: "insert a forged event in the middle, linked to its predecessor",
			tamper: func(t *testing.T, db *sql.DB) {
				// Make room at seq 4, then link the forgery to link 3: the
				// break shows at the next link.
				tamper(t, db, `UPDATE audit_events SET seq = -seq WHERE node = 'n1' AND seq >= 4`)
				tamper(t, db, `UPDATE audit_events SET seq = 1 - seq WHERE node = 'n1' AND seq < 0`)
				_, _, prev := link(t, db, 3)
				data := []byte(`{"event":"record","id":"forged","decision":"allow"}`)
				tamper(t, db, `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES ('n1', 4, 'forged', 'record', ?, ?, ?)`,
					data, prev, audit.Link(prev, data))
			},
			want: audit.VerifyResult{FirstBad: recID(4), Node: "n1", Seq: 5,
				Reason: "link 5 does not continue link 4: a record was inserted, removed or reordered"},
		},
		{
			name: "swap two events' seq",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `UPDATE audit_events SET seq = CASE seq WHEN 2 THEN -3 ELSE -2 END WHERE node = 'n1' AND seq IN (2, 3)`)
				tamper(t, db, `UPDATE audit_events SET seq = -seq WHERE node = 'n1' AND seq < 0`)
			},
			want: audit.VerifyResult{FirstBad: recID(3), Node: "n1", Seq: 2,
				Reason: "link 2 does not continue link 1: a record was inserted, removed or reordered"},
		},
		{
			name: "move an event to another record id",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `UPDATE audit_events SET record_id = ? WHERE node = 'n1' AND seq = 3`, recID(1))
			},
			want: audit.VerifyResult{FirstBad: recID(1), Node: "n1", Seq: 3,
				Reason: "link 3's data names another record: it was moved"},
		},
		{
			// Without a checkpoint kept outside the table, a clean cut of the
			// tail leaves a valid, shorter chain: nothing in the table can
			// tell. This pins that limit (and why heads exist).
			// A careful attacker removes the index rows too: without a
			// checkpoint kept outside the table, a clean truncation of the
			// tail cannot be told from a log that ends there.
			name: "truncate the tail, without heads",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_records WHERE id IN (SELECT record_id FROM audit_events WHERE node = 'n1' AND seq > 5 AND kind IN ('record', 'start'))`)
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1' AND seq > 5`)
			},
			want: audit.VerifyResult{OK: true, Records: 6, Events: 7, Nodes: 2},
		},
		{
			name: "truncate the tail, with heads",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_records WHERE id IN (SELECT record_id FROM audit_events WHERE node = 'n1' AND seq > 5 AND kind IN ('record', 'start'))`)
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1' AND seq > 5`)
			},
			heads: true,
			want: audit.VerifyResult{Node: "n1", Seq: 5,
				Reason: "the chain of node n1 ends at link 5 but link 8 was written: its tail was truncated"},
		},
		{
			name: "rewrite the last link, with heads",
			tamper: func(t *testing.T, db *sql.DB) {
				data, prev, _ := link(t, db, 8)
				data = edit(data)
				tamper(t, db, `UPDATE audit_events SET data = ?, hash = ? WHERE node = 'n1' AND seq = 8`, data, audit.Link(prev, data))
			},
			heads: true,
			want: audit.VerifyResult{FirstBad: recID(6), Node: "n1", Seq: 8,
				Reason: "link 8 of node n1 is not the one written: the chain was rewritten from there on"},
		},
		{
			name: "delete the whole chain, with heads",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1'`)
			},
			heads: true,
			want: audit.VerifyResult{Node: "n1",
				Reason: "node n1 wrote 8 links but none is left: its chain was deleted"},
		},
		{
			name: "delete the whole chain, without heads",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1'`)
			},
			want: audit.VerifyResult{OK: true, Records: 2, Events: 2, Nodes: 1},
		},
		{
			// The end event's data does not name its record, so it can be
			// re-attached to another request: a 200 with its response body
			// then belongs to a request that never got it.
			name: "move an end event to another record",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `UPDATE audit_events SET record_id = ? WHERE node = 'n1' AND seq = 5`, recID(5))
			},
			want: audit.VerifyResult{FirstBad: recID(5), Node: "n1", Seq: 5, Reason: "link 5's data names another record: it was moved"},
		},
		{
			// kind is a column outside the hash, and a leading "cut" link
			// skips the seq 1 and genesis checks.
			name: "delete the beginning and relabel the first remaining link as a cut",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_events WHERE node = 'n1' AND seq <= 2`)
				tamper(t, db, `UPDATE audit_events SET kind = 'cut' WHERE node = 'n1' AND seq = 3`)
			},
			want: audit.VerifyResult{FirstBad: recID(3), Node: "n1", Seq: 3, Reason: `link 3 is stored as a "cut" event but its data says "record": it was relabelled`},
		},
		{
			// The listing (GET /logs) reads the index, not the chain.
			name: "delete a record's index row to hide it from listings",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `DELETE FROM audit_records WHERE id = ?`, recID(2))
			},
			want: audit.VerifyResult{FirstBad: recID(2), Node: "n1", Seq: 2, Reason: "record rec-0002 (link 2) is missing from the index: it was hidden from listings"},
		},
		{
			name: "turn a denial into an allowed request in the index",
			tamper: func(t *testing.T, db *sql.DB) {
				tamper(t, db, `UPDATE audit_records SET decision = 'allow', status = 200 WHERE id = ?`, recID(2))
			},
			want: audit.VerifyResult{FirstBad: recID(2), Node: "n1", Seq: 2, Reason: "index row rec-0002 shows another decision than its record: the index was edited"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, db, heads := chainFixture(t)
			tc.tamper(t, db)
			if !tc.heads {
				heads = nil
			}
			got, err := audit.Verify(context.Background(), st, heads)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			opts := cmp.Options{}
			if !tc.want.OK {
				// Counts stop at the first bad link.
				opts = append(opts, cmpopts.IgnoreFields(audit.VerifyResult{}, "Records", "Events", "Nodes"))
			}
			if tc.bug != "" {
				opts = append(opts, cmpopts.IgnoreFields(audit.VerifyResult{}, "Reason"))
			}
			d := cmp.Diff(tc.want, got, opts)
			switch {
			case d != "" && tc.bug != "":
				t.Skipf("BUG: %s (Verify = %+v)", tc.bug, got)
			case d != "":
				t.Errorf("Verify (-want +got):\n%s", d)
			case tc.bug != "":
				t.Logf("Verify now catches this: the BUG mark can go (%s)", tc.bug)
			}
		})
	}
}

// TestVerifyChecksEveryNode pins that a break in a later node's chain is
// found even when the first node's chain is intact.
func TestVerifyChecksEveryNode(t *testing.T) {
	st, db, _ := chainFixture(t)
	tamper(t, db, `DELETE FROM audit_events WHERE node = 'n2' AND seq = 1`)
	got, err := audit.Verify(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.VerifyResult{FirstBad: recID(22), Node: "n2", Seq: 2,
		Reason: "the chain of node n2 starts at link 2, not 1: its beginning was deleted"}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(audit.VerifyResult{}, "Records", "Events", "Nodes")); d != "" {
		t.Errorf("Verify (-want +got):\n%s", d)
	}
}
