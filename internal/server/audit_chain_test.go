package server

import (
	"bytes"
	"database/sql"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// `keyhole serve --help` documents --audit-retention (SPEC §2: every flag).
func TestServeHelpListsAuditRetention(t *testing.T) {
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--audit-retention", "KEYHOLE_AUDIT_RETENTION", "90d"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("keyhole serve --help does not mention %q:\n%s", want, out.String())
		}
	}
}

func TestAuditRetentionFlag(t *testing.T) {
	tests := []struct {
		name, value string
		wantErr     bool
	}{
		{name: "unset keeps all", value: ""},
		{name: "days", value: "90d"},
		{name: "Go duration", value: "720h"},
		{name: "zero days", value: "0d", wantErr: true},
		{name: "negative", value: "-1h", wantErr: true},
		{name: "words", value: "forever", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Listen: "a:1", AdminListen: "a:2", LogLevel: "info", LogFormat: "text", AuditDurability: "sync",
				AuditFailure: "closed", Store: DefaultStore, AuditRetention: tc.value}
			err := c.Validate()
			if (err != nil) != tc.wantErr {
				t.Errorf("Validate with --audit-retention %q = %v, want error %v", tc.value, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "--audit-retention") {
				t.Errorf("the error does not name the flag: %v", err)
			}
		})
	}
}

// chainDB opens the node's database behind its back, as an attacker with
// write access to it would.
func chainDB(t *testing.T, n *testNode) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(n.dir, "keyhole.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func dbExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// truncateTail deletes the node's last k links and the index rows of
// their records (a careful attacker), and returns the seq left last.
func truncateTail(t *testing.T, db *sql.DB, k int) int64 {
	t.Helper()
	var last int64
	if err := db.QueryRow(`SELECT MAX(seq) FROM audit_events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	dbExec(t, db, `DELETE FROM audit_records WHERE id IN (SELECT record_id FROM audit_events WHERE seq > ? AND kind IN ('record', 'start'))`, last-int64(k))
	dbExec(t, db, `DELETE FROM audit_events WHERE seq > ?`, last-int64(k))
	return last - int64(k)
}

func (n *testNode) verify() map[string]any {
	n.t.Helper()
	return n.must(http.StatusOK, "POST", "/audit/verify", nil)
}

// POST /audit/verify finds a truncated tail: while the node runs (the head
// in the store), and after a restart (the gap event the node records).
func TestVerifyFindsTruncatedTail(t *testing.T) {
	n := startNode(t)
	for _, a := range []string{"a1", "a2", "a3"} {
		n.agent(a)
	}
	if v := n.verify(); v["ok"] != true {
		t.Fatalf("verify of an untouched log: %v", v)
	}
	db := chainDB(t, n)
	left := truncateTail(t, db, 3)
	v := n.verify()
	if v["ok"] != false || !strings.Contains(str(v, "reason"), "its tail was truncated") {
		t.Errorf("verify after the tail was truncated under a running node = %v, want a truncated tail", v)
	}
	n.restart()
	v = n.verify()
	if v["ok"] != false || !strings.Contains(str(v, "reason"), "the tail was truncated while the node was down") ||
		str(v, "seq") != itoa(int(left+1)) {
		t.Errorf("verify after a restart on a truncated chain = %v, want the gap at link %d", v, left+1)
	}
	// The node still serves and records.
	n.agent("a4")
	if logs := n.logs("limit=5"); len(logs) == 0 {
		t.Error("no records listed after the restart")
	}
}

// The checkpoint file lives in the data folder and survives the head being
// rolled back in the database.
func TestVerifyUsesTheCheckpointFile(t *testing.T) {
	n := startNode(t)
	n.agent("b1")
	db := chainDB(t, n)
	var seq int64
	var hash, mac []byte
	var at int64
	if err := db.QueryRow(`SELECT seq, hash, mac, updated_at FROM audit_heads`).Scan(&seq, &hash, &mac, &at); err != nil {
		t.Fatalf("the node's head is not in audit_heads: %v", err)
	}
	n.agent("b2")
	n.agent("b3")
	n.stop()
	file := filepath.Join(n.dir, "audit-checkpoint")
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the checkpoint file after a stop: %v, %v", st, err)
	}
	// Truncate to the old head and roll the head back to it: only the
	// file still knows.
	dbExec(t, db, `DELETE FROM audit_records WHERE id IN (SELECT record_id FROM audit_events WHERE seq > ? AND kind IN ('record', 'start'))`, seq)
	dbExec(t, db, `DELETE FROM audit_events WHERE seq > ?`, seq)
	dbExec(t, db, `UPDATE audit_heads SET seq = ?, hash = ?, mac = ?, updated_at = ?`, seq, hash, mac, at)
	n.stopped = false
	if err := n.start(nil); err != nil {
		t.Fatal(err)
	}
	v := n.verify()
	if v["ok"] != false || !strings.Contains(str(v, "reason"), "its checkpoint file said link") {
		t.Errorf("verify after truncating and rolling the head back = %v, want the gap the checkpoint file revealed", v)
	}
}

// --audit-retention: at start the node deletes the records older than the
// retention (GET /logs/{id} 404), records the cut, and verify still
// passes; newer records stay.
func TestAuditRetentionDeletesOldRecords(t *testing.T) {
	n := startNode(t)
	for _, a := range []string{"c1", "c2", "c3"} {
		n.agent(a)
	}
	var old []string
	for _, rec := range n.logs("limit=100") {
		old = append(old, str(rec, "id"))
	}
	if len(old) < 3 {
		t.Fatalf("setup: %d records", len(old))
	}
	// Every record so far is older than a millisecond by the time the
	// node is back; the first pass runs at start.
	n.restart(func(c *Config) { c.AuditRetention = "1ms" })
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range old {
		for n.admin("GET", "/logs/"+url.PathEscape(id), nil).status != http.StatusNotFound {
			if time.Now().After(deadline) {
				t.Fatalf("record %s older than the retention is still there", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if v := n.verify(); v["ok"] != true {
		t.Errorf("verify after a retention pass = %v, want ok", v)
	}
	r := n.admin("POST", "/agents", map[string]any{"name": "c4"})
	if r.status != http.StatusCreated {
		t.Fatalf("create agent after the cut: %s", r)
	}
	if rec := n.record(r.rid()); str(rec, "path") != "/api/v1/agents" {
		t.Errorf("a record newer than the cut: %v", rec)
	}
	if !strings.Contains(n.stderr.String(), "audit retention: old records deleted") {
		t.Errorf("the node did not log its retention pass")
	}
}
