package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// testKey stands for master.DeriveKey(audit.CheckpointPurpose).
var testKey = bytes.Repeat([]byte{0x5a}, 32)

// headRow is n1's row of audit_heads, read or written behind the store's
// back.
type headRow struct {
	seq       int64
	hash, mac []byte
	at        int64
}

func readHead(t *testing.T, db *sql.DB) headRow {
	t.Helper()
	var h headRow
	if err := db.QueryRow(`SELECT seq, hash, mac, updated_at FROM audit_heads WHERE node = 'n1'`).Scan(&h.seq, &h.hash, &h.mac, &h.at); err != nil {
		t.Fatalf("read n1's head: %v", err)
	}
	return h
}

func writeHead(t *testing.T, db *sql.DB, h headRow) {
	t.Helper()
	tamper(t, db, `UPDATE audit_heads SET seq = ?, hash = ?, mac = ?, updated_at = ? WHERE node = 'n1'`, h.seq, h.hash, h.mac, h.at)
}

// writeFile writes a checkpoint file as the writer does (a test of the
// window needs an older genuine one).
func writeFile(t *testing.T, path, node string, seq int64, hash, mac []byte) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"version": 1, "node": node, "seq": seq, "hash": hex.EncodeToString(hash),
		"mac": hex.EncodeToString(mac), "time": "2026-11-26T07:20:05.123456Z"})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the checkpoint file: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("checkpoint file %q: %v", b, err)
	}
	return m
}

// keyed is a store whose node n1 wrote, through a writer with the
// checkpoint key and file, the chain of chainFixture:
//
//	seq 1-3 rec-0001..rec-0003 record
//	seq 4, 5 rec-0004 start, end
//	seq 6, 7 rec-0005 start, end
//	seq 8 rec-0006 record
//
// head5 is n1's head row as it was after link 5: a genuine, older head to
// roll back to.
type keyed struct {
	st    store.Store
	path  string // the database file
	db    *sql.DB
	file  string // the checkpoint file
	head5 headRow
}

func keyedOptions(file string) audit.Options {
	return audit.Options{Node: "n1", CheckpointKey: testKey, CheckpointFile: file}
}

func keyedFixture(t *testing.T) *keyed {
	t.Helper()
	ctx := context.Background()
	st, path := newStore(t)
	k := &keyed{st: st, path: path, file: filepath.Join(t.TempDir(), audit.CheckpointFileName)}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k.db = db
	w := newWriter(t, st, keyedOptions(k.file))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Record(ctx, refusal("n1", 1), denied))
	must(w.Record(ctx, refusal("n1", 2), denied))
	must(w.Record(ctx, refusal("n1", 3), denied))
	must(w.Begin(ctx, start("n1", 4)))
	must(w.Finish(ctx, recID(4), ok200()))
	k.head5 = readHead(t, db)
	if k.head5.seq != 5 {
		t.Fatalf("setup: the head after link 5 is at %d", k.head5.seq)
	}
	must(w.Begin(ctx, start("n1", 5)))
	must(w.Finish(ctx, recID(5), ok200()))
	must(w.Record(ctx, refusal("n1", 6), denied))
	must(w.Close(ctx))
	return k
}

// truncate deletes n1's links after seq, and the index rows of their
// records, as a careful attacker would.
func (k *keyed) truncate(t *testing.T, seq int) {
	t.Helper()
	tamper(t, k.db, `DELETE FROM audit_records WHERE id IN (SELECT record_id FROM audit_events WHERE node = 'n1' AND seq > ? AND kind IN ('record', 'start'))`, seq)
	tamper(t, k.db, `DELETE FROM audit_events WHERE node = 'n1' AND seq > ?`, seq)
}

// forgeTail appends links 6..8 (refusals) after link 5, correctly linked:
// what an attacker without the master key can do.
func (k *keyed) forgeTail(t *testing.T) {
	t.Helper()
	_, _, prev := link(t, k.db, 5)
	for seq := 6; seq <= 8; seq++ {
		id := recID(90 + seq)
		data := []byte(`{"event":"record","id":"` + id + `","decision":"allow"}`)
		h := audit.Link(prev, data)
		tamper(t, k.db, `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES ('n1', ?, ?, 'record', ?, ?, ?)`,
			seq, id, data, prev, h)
		prev = h
	}
}

func TestCheckpointFileAfterClose(t *testing.T) {
	k := keyedFixture(t)
	st, err := os.Stat(k.file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint file mode %v, want 0600", st.Mode().Perm())
	}
	_, _, hash8 := link(t, k.db, 8)
	got := readFile(t, k.file)
	want := map[string]any{"version": float64(1), "node": "n1", "seq": float64(8), "hash": hex.EncodeToString(hash8),
		"mac": hex.EncodeToString(audit.HeadMAC(testKey, "n1", 8, hash8))}
	if d := cmp.Diff(want, got, cmpopts.IgnoreMapEntries(func(k string, _ any) bool { return k == "time" })); d != "" {
		t.Errorf("checkpoint file after Close (-want +got):\n%s", d)
	}
	if h := readHead(t, k.db); h.seq != 8 || !bytes.Equal(h.hash, hash8) || !bytes.Equal(h.mac, audit.HeadMAC(testKey, "n1", 8, hash8)) {
		t.Errorf("audit_heads row of n1 = seq %d, want link 8 with its MAC", h.seq)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(k.file), ".*.tmp"))
	if len(left) > 0 {
		t.Errorf("temporary files left beside the checkpoint: %v", left)
	}
}

// The checkpoint file follows the chain while the node runs, without a
// Close (polled, nothing timed).
func TestCheckpointFileFollowsTheChain(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	file := filepath.Join(t.TempDir(), audit.CheckpointFileName)
	w := newWriter(t, st, keyedOptions(file))
	for i := 1; i <= 3; i++ {
		if err := w.Record(ctx, refusal("n1", i), denied); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the checkpoint file names link 3", func() bool {
		b, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		var m map[string]any
		return json.Unmarshal(b, &m) == nil && m["seq"] == float64(3)
	})
}

func TestVerifyWithCheckpoints(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, k *keyed)
		want   audit.VerifyResult
	}{
		{
			name:   "untouched",
			tamper: func(*testing.T, *keyed) {},
			want:   audit.VerifyResult{OK: true, Records: 6, Events: 8, Nodes: 1},
		},
		{
			name:   "truncate the tail",
			tamper: func(t *testing.T, k *keyed) { k.truncate(t, 5) },
			want: audit.VerifyResult{Node: "n1", Seq: 5,
				Reason: "the chain of node n1 ends at link 5 but link 8 was written (per audit_heads): its tail was truncated"},
		},
		{
			name: "truncate the tail and delete the head",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 5)
				tamper(t, k.db, `DELETE FROM audit_heads`)
			},
			want: audit.VerifyResult{Node: "n1", Seq: 5,
				Reason: "the chain of node n1 ends at link 5 but link 8 was written (per checkpoint file): its tail was truncated"},
		},
		{
			name: "truncate the tail and roll the head back to an older genuine one",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 5)
				writeHead(t, k.db, k.head5)
			},
			want: audit.VerifyResult{Node: "n1", Seq: 5,
				Reason: "the chain of node n1 ends at link 5 but link 8 was written (per checkpoint file): its tail was truncated"},
		},
		{
			// The documented window: the links committed in the last second
			// before an unclean stop are not in the file yet. Deleting them
			// and rolling the head back goes unnoticed.
			name: "truncate inside the one-second window of the file",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 5)
				writeHead(t, k.db, k.head5)
				writeFile(t, k.file, "n1", 5, k.head5.hash, k.head5.mac)
			},
			want: audit.VerifyResult{OK: true, Records: 4, Events: 5, Nodes: 1},
		},
		{
			name: "move the head back without the master key",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 5)
				_, _, h5 := link(t, k.db, 5)
				tamper(t, k.db, `UPDATE audit_heads SET seq = 5, hash = ?`, h5)
			},
			want: audit.VerifyResult{Node: "n1",
				Reason: "the checkpoint of node n1 cannot be trusted: its head in audit_heads does not verify with the master key: it was forged"},
		},
		{
			name: "edit the checkpoint file",
			tamper: func(t *testing.T, k *keyed) {
				f := readFile(t, k.file)
				writeFile(t, k.file, "n1", 9, mustHex(t, f["hash"]), mustHex(t, f["mac"]))
			},
			want: audit.VerifyResult{Node: "n1",
				Reason: "the checkpoint of node n1 cannot be trusted: its checkpoint file does not verify with the master key: it was forged"},
		},
		{
			name: "corrupt the checkpoint file",
			tamper: func(t *testing.T, k *keyed) {
				if err := os.WriteFile(k.file, []byte("{\"version\":1,"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: audit.VerifyResult{Node: "n1",
				Reason: "the checkpoint of node n1 cannot be trusted: its checkpoint file cannot be read: the checkpoint file is malformed"},
		},
		{
			name: "rewrite the last link",
			tamper: func(t *testing.T, k *keyed) {
				data, prev, _ := link(t, k.db, 8)
				data = edit(data)
				tamper(t, k.db, `UPDATE audit_events SET data = ?, hash = ? WHERE node = 'n1' AND seq = 8`, data, audit.Link(prev, data))
			},
			want: audit.VerifyResult{FirstBad: recID(6), Node: "n1", Seq: 8,
				Reason: "link 8 of node n1 is not the one written (per audit_heads): the chain was rewritten from there on"},
		},
		{
			name: "replace the tail with forged links and delete the head",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 5)
				k.forgeTail(t)
				tamper(t, k.db, `DELETE FROM audit_heads`)
				tamper(t, k.db, `INSERT INTO audit_records (id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete)
					SELECT record_id, 0, 'n1', '', '', '', '', '', 'allow', '', '', 0, 0, 1 FROM audit_events WHERE node = 'n1' AND seq > 5`)
			},
			want: audit.VerifyResult{FirstBad: recID(98), Node: "n1", Seq: 8,
				Reason: "link 8 of node n1 is not the one written (per checkpoint file): the chain was rewritten from there on"},
		},
		{
			name:   "delete the whole chain",
			tamper: func(t *testing.T, k *keyed) { tamper(t, k.db, `DELETE FROM audit_events`) },
			want:   audit.VerifyResult{Node: "n1", Reason: "node n1 wrote 8 links (per audit_heads) but none is left: its chain was deleted"},
		},
		{
			name: "delete the whole chain and the head",
			tamper: func(t *testing.T, k *keyed) {
				tamper(t, k.db, `DELETE FROM audit_events`)
				tamper(t, k.db, `DELETE FROM audit_heads`)
			},
			want: audit.VerifyResult{Node: "n1", Reason: "node n1 wrote 8 links (per checkpoint file) but none is left: its chain was deleted"},
		},
		{
			// A link appended after the head cannot be told, while the node
			// runs, from one committed while verify reads: verify accepts
			// it. The node's next commit then fails (its seq is taken), and
			// its next start records the links as appended
			// (TestWriterRecordsGapsAtStart).
			name: "append a link after the head",
			tamper: func(t *testing.T, k *keyed) {
				_, _, prev := link(t, k.db, 8)
				data := []byte(`{"event":"record","id":"forged","time":"1970-01-01T00:00:00.000000Z"}`)
				tamper(t, k.db, `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES ('n1', 9, 'forged', 'record', ?, ?, ?)`,
					data, prev, audit.Link(prev, data))
				tamper(t, k.db, `INSERT INTO audit_records (id, time, node, proxy, agent, token_id, method, path, decision, reason, rule, status, latency_ms, complete)
					VALUES ('forged', 0, 'n1', '', '', '', '', '', '', '', '', 0, 0, 1)`)
			},
			want: audit.VerifyResult{OK: true, Records: 7, Events: 9, Nodes: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			k := keyedFixture(t)
			tc.tamper(t, k)
			heads, err := audit.Checkpoints(ctx, k.st, testKey, "n1", k.file)
			if err != nil {
				t.Fatalf("Checkpoints: %v", err)
			}
			got, err := audit.Verify(ctx, k.st, heads)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			opts := cmp.Options{}
			if !tc.want.OK {
				opts = append(opts, cmpopts.IgnoreFields(audit.VerifyResult{}, "Records", "Events", "Nodes"))
			}
			if d := cmp.Diff(tc.want, got, opts); d != "" {
				t.Errorf("Verify (-want +got):\n%s", d)
			}
		})
	}
}

func mustHex(t *testing.T, v any) []byte {
	t.Helper()
	s, _ := v.(string)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// TestWriterRecordsGapsAtStart: a node that starts on a chain behind, or
// different from, the checkpoints it wrote continues the chain (availability)
// but makes its first new link a "gap" event, which verify reports.
func TestWriterRecordsGapsAtStart(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, k *keyed)
		// wantGaps are the gap events' (why, source), in order; none: the
		// chain verifies after the restart.
		wantGaps   [][2]string
		wantReason string
	}{
		{name: "nothing changed", tamper: func(*testing.T, *keyed) {}},
		{
			// What a kill -9 leaves: the file one second behind the head.
			name: "the checkpoint file lags behind the chain",
			tamper: func(t *testing.T, k *keyed) {
				writeFile(t, k.file, "n1", 5, k.head5.hash, k.head5.mac)
			},
		},
		{
			// A store created before the heads table, or a lost row: the
			// chain still matches the file.
			name:   "no head in the store",
			tamper: func(t *testing.T, k *keyed) { tamper(t, k.db, `DELETE FROM audit_heads`) },
		},
		{
			name:   "no checkpoint file",
			tamper: func(t *testing.T, k *keyed) { os.Remove(k.file) },
		},
		{
			name:       "tail truncated while the node was down",
			tamper:     func(t *testing.T, k *keyed) { k.truncate(t, 5) },
			wantGaps:   [][2]string{{"truncated", "audit_heads"}, {"truncated", "checkpoint file"}},
			wantReason: "link 6 records that when node n1 started, its chain ended at link 5 but its audit_heads said link 8 had been written: the tail was truncated while the node was down",
		},
		{
			name: "tail truncated and the head rolled back",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 5)
				writeHead(t, k.db, k.head5)
			},
			wantGaps:   [][2]string{{"truncated", "checkpoint file"}},
			wantReason: "link 6 records that when node n1 started, its chain ended at link 5 but its checkpoint file said link 8 had been written: the tail was truncated while the node was down",
		},
		{
			name: "the last link rewritten",
			tamper: func(t *testing.T, k *keyed) {
				data, prev, _ := link(t, k.db, 8)
				data = edit(data)
				tamper(t, k.db, `UPDATE audit_events SET data = ?, hash = ? WHERE node = 'n1' AND seq = 8`, data, audit.Link(prev, data))
			},
			wantGaps:   [][2]string{{"rewritten", "audit_heads"}, {"rewritten", "checkpoint file"}},
			wantReason: "link 9 records that when node n1 started, its link 8 was not the one its audit_heads names: the chain was rewritten while the node was down",
		},
		{
			name: "the tail replaced, the head deleted, the file behind",
			tamper: func(t *testing.T, k *keyed) {
				k.truncate(t, 4)
				tamper(t, k.db, `DELETE FROM audit_heads`)
				data := []byte(`{"event":"record","id":"forged"}`)
				_, _, prev := link(t, k.db, 4)
				tamper(t, k.db, `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES ('n1', 5, 'forged', 'record', ?, ?, ?)`,
					data, prev, audit.Link(prev, data))
				// the file still names the genuine link 5
				writeFile(t, k.file, "n1", 5, k.head5.hash, k.head5.mac)
			},
			wantGaps:   [][2]string{{"rewritten", "checkpoint file"}},
			wantReason: "link 6 records that when node n1 started, its link 5 was not the one its checkpoint file names: the chain was rewritten while the node was down",
		},
		{
			name:       "the head forged",
			tamper:     func(t *testing.T, k *keyed) { tamper(t, k.db, `UPDATE audit_heads SET seq = 7`) },
			wantGaps:   [][2]string{{"forged", "audit_heads"}},
			wantReason: "link 9 records that when node n1 started, its head in audit_heads did not verify with the master key: it was forged",
		},
		{
			name: "a link appended behind the node's back",
			tamper: func(t *testing.T, k *keyed) {
				_, _, prev := link(t, k.db, 8)
				data := []byte(`{"event":"record","id":"forged"}`)
				tamper(t, k.db, `INSERT INTO audit_events (node, seq, record_id, kind, data, prev_hash, hash) VALUES ('n1', 9, 'forged', 'record', ?, ?, ?)`,
					data, prev, audit.Link(prev, data))
			},
			wantGaps:   [][2]string{{"appended", "audit_heads"}},
			wantReason: "link 10 records that when node n1 started, its chain went on to link 9 past its head in audit_heads (link 8): links were appended while the node was down",
		},
		{
			name: "the checkpoint file unreadable",
			tamper: func(t *testing.T, k *keyed) {
				if err := os.WriteFile(k.file, []byte("not json"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantGaps:   [][2]string{{"unreadable", "checkpoint file"}},
			wantReason: "link 9 records that when node n1 started, its checkpoint file could not be read: it was damaged or replaced",
		},
		{
			name: "the checkpoint file of another node",
			tamper: func(t *testing.T, k *keyed) {
				writeFile(t, k.file, "n2", 3, []byte("h"), audit.HeadMAC(testKey, "n2", 3, []byte("h")))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			k := keyedFixture(t)
			tc.tamper(t, k)
			before, err := k.st.ChainHead(ctx, "n1")
			if err != nil {
				t.Fatal(err)
			}
			w, err := audit.NewWriter(ctx, k.st, keyedOptions(k.file))
			if err != nil {
				t.Fatalf("NewWriter: %v (the node must start)", err)
			}
			if err := w.Record(ctx, refusal("n1", 7), denied); err != nil {
				t.Fatalf("Record after the restart: %v", err)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			var gaps [][2]string
			var after []store.AuditEvent
			err = k.st.Chain(ctx, "n1", func(e store.AuditEvent) error {
				if e.Seq > before.Seq {
					after = append(after, e)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range after {
				if e.Kind != "gap" {
					break
				}
				var g struct{ Why, Source string }
				if err := json.Unmarshal(e.Data, &g); err != nil {
					t.Fatal(err)
				}
				gaps = append(gaps, [2]string{g.Why, g.Source})
			}
			if d := cmp.Diff(tc.wantGaps, gaps, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("gap events after the restart (-want +got):\n%s", d)
			}
			if n := len(gaps); n >= len(after) || after[n].RecordID != recID(7) {
				t.Errorf("the node's first record after the restart is not right after its gap events: %d links after seq %d", len(after), before.Seq)
			}
			heads, err := audit.Checkpoints(ctx, k.st, testKey, "n1", k.file)
			if err != nil {
				t.Fatal(err)
			}
			res, err := audit.Verify(ctx, k.st, heads)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantReason == "" {
				if !res.OK {
					t.Errorf("Verify after the restart = %+v, want ok", res)
				}
			} else if res.OK || res.Reason != tc.wantReason {
				t.Errorf("Verify after the restart:\n got  %q (ok=%v)\n want %q", res.Reason, res.OK, tc.wantReason)
			}
			// The checkpoints now follow the continued chain.
			head := heads["n1"]
			last, _ := k.st.ChainHead(ctx, "n1")
			if head.Seq != last.Seq || !bytes.Equal(head.Hash, last.Hash) || head.Invalid != "" {
				t.Errorf("checkpoint after the restart = seq %d (%s) %q, want the chain's last link %d", head.Seq, head.Source, head.Invalid, last.Seq)
			}
		})
	}
}

// A crash in the middle of writing the checkpoint leaves a temporary file:
// the next start removes it.
func TestCheckpointStaleTempRemoved(t *testing.T) {
	st, _ := newStore(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "."+audit.CheckpointFileName+".123456.tmp")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, st, keyedOptions(filepath.Join(dir, audit.CheckpointFileName)))
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale temporary file is still there: %v", err)
	}
}
