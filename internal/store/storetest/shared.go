package storetest

// Cases that matter once several nodes share one store (SPEC §10), run by
// Run with the others: configuration writes racing from many goroutines
// (as from many nodes), chains of many nodes appended at once, the log
// stream's ChainFrom, an index that takes whatever bytes a request
// carried, and the quota counters (quota.Store, when the store has it).

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/quota"
	"github.com/keyhole-gw/keyhole/internal/store"
)

// sharedTests are appended to Run's list.
var sharedTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"VersionUnderConcurrentWrites", testVersionConcurrent},
	{"ConcurrentChainsOfManyNodes", testConcurrentChains},
	{"ChainFrom", testChainFrom},
	{"AuditIndexTakesAnyBytes", testIndexAnyBytes},
	{"Quotas", testQuotas},
}

// testVersionConcurrent pins what other nodes rely on to notice changes:
// configuration writes made at the same time (from many nodes) all land,
// and the version ends at least as many steps further, so no node that
// saw the version before the writes can miss them. A write that fails
// does not move it.
func testVersionConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := version(t, s)
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				err = s.CreateAgent(ctx, store.Agent{Name: fmt.Sprintf("agent-%02d", i), CreatedAt: at(float64(i))})
			case 1:
				sec, sv := secret(fmt.Sprintf("secret-%02d", i), float64(i))
				err = s.CreateSecret(ctx, sec, sv)
			default:
				err = s.PutProxy(ctx, proxy(fmt.Sprintf("proxy-%02d", i), "", float64(i)), true)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, "concurrent write", err)
	}
	after := version(t, s)
	if after-before < n {
		t.Errorf("%d concurrent configuration writes moved the version %d → %d: fewer steps than writes", n, before, after)
	}
	st, err := s.Load(ctx)
	must(t, "Load", err)
	if st.Version != after {
		t.Errorf("Load's version %d, Version() %d", st.Version, after)
	}
	if got := len(st.Agents) + len(st.Secrets) + len(st.Proxies); got != n {
		t.Errorf("after %d concurrent creations Load holds %d objects", n, got)
	}
	// Refused writes (a conflict each) leave the version alone.
	wantErr(t, "CreateAgent of an existing name", s.CreateAgent(ctx, store.Agent{Name: "agent-00", CreatedAt: at(0)}), store.ErrConflict)
	wantErr(t, "DeleteProxy of an unknown name", s.DeleteProxy(ctx, "nope"), store.ErrNotFound)
	if v := version(t, s); v != after {
		t.Errorf("refused writes moved the version %d → %d", after, v)
	}
}

// testConcurrentChains appends the chains of several nodes at the same
// time, each in batches as its audit writer would: every chain is whole
// and in order, and each node's head is its own.
func testConcurrentChains(t *testing.T, s store.Store) {
	ctx := t.Context()
	const nodes, batches, per = 4, 15, 7
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	want := map[string][]store.AuditEvent{}
	var mu sync.Mutex
	for k := range nodes {
		node := fmt.Sprintf("node-%d", k)
		wg.Go(func() {
			var c chainer
			var all []store.AuditEvent
			for b := range batches {
				var batch []store.AuditEvent
				for i := range per {
					id := fmt.Sprintf("rec-%s-%03d-%d", node, b, i)
					batch = append(batch, c.record(idx(id, float64(b), node, "gh", "alice", "tok-a", "GET", "/x", "allow", "", "", 200, 1)))
				}
				batch[len(batch)-1].HeadMAC = []byte("mac-" + node)
				if err := s.AppendAudit(ctx, batch); err != nil {
					errs <- err
					return
				}
				all = append(all, batch...)
			}
			mu.Lock()
			want[node] = all
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, "AppendAudit", err)
	}
	nodesGot, err := s.ChainNodes(ctx)
	must(t, "ChainNodes", err)
	sort.Strings(nodesGot)
	if d := cmp.Diff([]string{"node-0", "node-1", "node-2", "node-3"}, nodesGot); d != "" {
		t.Errorf("ChainNodes (-want +got):\n%s", d)
	}
	heads, err := s.Heads(ctx)
	must(t, "Heads", err)
	for node, evs := range want {
		var got []int64
		var prev []byte
		must(t, "Chain", s.Chain(ctx, node, func(e store.AuditEvent) error {
			if prev != nil && string(e.PrevHash) != string(prev) {
				return errors.New("a link does not continue the previous one")
			}
			prev = e.Hash
			got = append(got, e.Seq)
			return nil
		}))
		if len(got) != len(evs) || got[0] != 1 || got[len(got)-1] != int64(len(evs)) {
			t.Errorf("chain of %s: %d links (%v…), want %d from 1", node, len(got), got[:min(3, len(got))], len(evs))
		}
		last := evs[len(evs)-1]
		if h := heads[node]; h.Seq != last.Seq || string(h.Hash) != string(last.Hash) {
			t.Errorf("head of %s = seq %d, want %d", node, h.Seq, last.Seq)
		}
	}
	rows, err := s.QueryLogs(ctx, store.LogQuery{Limit: 1000})
	must(t, "QueryLogs", err)
	if len(rows) != nodes*batches*per {
		t.Errorf("QueryLogs lists %d records, want %d", len(rows), nodes*batches*per)
	}
}

// testChainFrom pins the log stream's read: a node's links after a seq,
// in order, at most limit.
func testChainFrom(t *testing.T, s store.Store) {
	ctx := t.Context()
	var c chainer
	var batch []store.AuditEvent
	for _, node := range []string{"a", "b"} {
		n := map[string]int{"a": 5, "b": 2}[node]
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("%s-%d", node, i)
			batch = append(batch, c.record(idx(id, float64(i), node, "gh", "alice", "tok-a", "GET", "/x", "allow", "", "", 200, 1)))
		}
	}
	must(t, "AppendAudit", s.AppendAudit(ctx, batch))
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
		evs, err := s.ChainFrom(ctx, tc.node, tc.after, tc.limit)
		must(t, tc.name, err)
		var got []int64
		for _, e := range evs {
			if e.Node != tc.node || e.RecordID != fmt.Sprintf("%s-%d", tc.node, e.Seq) || len(e.Data) == 0 || len(e.Hash) == 0 {
				t.Errorf("%s: event %+v", tc.name, e)
			}
			got = append(got, e.Seq)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: seqs (-want +got):\n%s", tc.name, d)
		}
	}
}

// testIndexAnyBytes pins that an agent cannot make a batch fail with the
// bytes of its request: a path that is not valid UTF-8 must not fail the
// batch (and with it every other request of the batch). What the index
// keeps of such bytes may differ between stores; the record is there.
func testIndexAnyBytes(t *testing.T, s store.Store) {
	ctx := t.Context()
	var c chainer
	odd := idx("rec-odd", 1, "n1", "gh", "alice", "tok-a", "GET", "/caf\xe9/\xff\xfe", "allow", "", "", 200, 1)
	fine := idx("rec-fine", 2, "n1", "gh", "alice", "tok-a", "GET", "/ok", "allow", "", "", 200, 1)
	must(t, "AppendAudit of a path that is not UTF-8", s.AppendAudit(ctx, []store.AuditEvent{c.record(odd), c.record(fine)}))
	for _, id := range []string{"rec-odd", "rec-fine"} {
		if _, err := s.GetLog(ctx, id); err != nil {
			t.Errorf("GetLog(%s): %v", id, err)
		}
	}
}

// testQuotas pins the counters that survive a restart: saved and loaded
// as they were (keys hold NUL bytes), a later save of a period replaces an
// earlier, lower one, and a new period replaces the old.
func testQuotas(t *testing.T, s store.Store) {
	qs, ok := s.(quota.Store)
	if !ok {
		t.Skip("this store does not keep quota counters (quota.Store)")
	}
	ctx := t.Context()
	got := func() map[string]quota.Usage {
		t.Helper()
		us, err := qs.LoadQuotas(ctx)
		must(t, "LoadQuotas", err)
		m := map[string]quota.Usage{}
		for _, u := range us {
			m[u.Key] = u
		}
		return m
	}
	if len(got()) != 0 {
		t.Fatal("LoadQuotas of an empty store is not empty")
	}
	p1, p2 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	k1 := "gh\x00q0\x00hour\x00\x00alice" // quota keys hold NUL separators
	k2 := "gh\x00tokens\x00hour\x00usage.total_tokens\x00bob"
	must(t, "SaveQuotas", qs.SaveQuotas(ctx, []quota.Usage{{Key: k1, PeriodStart: p1, Used: 3}, {Key: k2, PeriodStart: p1, Used: 1234.5}}))
	must(t, "SaveQuotas", qs.SaveQuotas(ctx, []quota.Usage{{Key: k1, PeriodStart: p1, Used: 5}}))
	want := map[string]quota.Usage{k1: {Key: k1, PeriodStart: p1, Used: 5}, k2: {Key: k2, PeriodStart: p1, Used: 1234.5}}
	if d := cmp.Diff(want, got(), opts); d != "" {
		t.Errorf("counters (-want +got):\n%s", d)
	}
	must(t, "SaveQuotas of the next period", qs.SaveQuotas(ctx, []quota.Usage{{Key: k1, PeriodStart: p2, Used: 1}}))
	want[k1] = quota.Usage{Key: k1, PeriodStart: p2, Used: 1}
	if d := cmp.Diff(want, got(), opts); d != "" {
		t.Errorf("a new period did not replace the counter (-want +got):\n%s", d)
	}
	must(t, "SaveQuotas (empty)", qs.SaveQuotas(ctx, nil))
}
