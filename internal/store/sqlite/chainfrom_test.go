package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/store"
)

func TestChainFrom(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "keyhole.db"))
	defer s.Close()
	var batch []store.AuditEvent
	for node, n := range map[string]int{"a": 5, "b": 2} {
		for seq := 1; seq <= n; seq++ {
			id := fmt.Sprintf("%s-%d", node, seq)
			batch = append(batch, store.AuditEvent{Node: node, Seq: int64(seq), RecordID: id, Kind: "record", Data: []byte(`{}`),
				PrevHash: []byte{0}, Hash: []byte{byte(seq)}, Index: store.LogIndex{ID: id, Time: time.Now(), Node: node}})
		}
	}
	if err := s.AppendAudit(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		node  string
		after int64
		limit int
		want  []int64
	}{
		{"from the start", "a", 0, 10, []int64{1, 2, 3, 4, 5}},
		{"after a seq", "a", 3, 10, []int64{4, 5}},
		{"limited", "a", 0, 2, []int64{1, 2}},
		{"another node's chain", "b", 0, 10, []int64{1, 2}},
		{"caught up", "b", 2, 10, nil},
		{"an unknown node", "c", 0, 10, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := s.ChainFrom(t.Context(), tc.node, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range evs {
				if e.Node != tc.node || e.RecordID != fmt.Sprintf("%s-%d", tc.node, e.Seq) {
					t.Errorf("event %+v", e)
				}
				got = append(got, e.Seq)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("seqs (-want +got):\n%s", d)
			}
		})
	}
}
