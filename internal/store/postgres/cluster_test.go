package postgres

// What the PostgreSQL store does for several nodes beyond the conformance
// suite: notifications at commit, nodes migrating at once, the advisory
// lock, and an audit batch whose commit outcome was lost.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyhole-gw/keyhole/internal/audit"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/postgres/pgtest"
)

func openURL(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestNotifyAtCommit pins the change events of SPEC §10: each
// configuration write sends its new version on Channel when it commits; a
// write that fails, and anything that is not configuration, sends nothing.
func TestNotifyAtCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openURL(t, pgtest.URL(t))
	c, err := pgx.ConnectConfig(ctx, s.ConnConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{s.Channel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	next := func(wait time.Duration) (string, bool) {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return "", false
		}
		if n.Channel != s.Channel() {
			t.Errorf("notification on %q, want %q", n.Channel, s.Channel())
		}
		return n.Payload, true
	}
	for i := range 3 {
		if err := s.CreateAgent(ctx, store.Agent{Name: fmt.Sprintf("a%d", i), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		v, err := s.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := next(5 * time.Second)
		if !ok || got != strconv.FormatInt(v, 10) {
			t.Fatalf("after a write at version %d: notification %q (received %v)", v, got, ok)
		}
	}
	if err := s.CreateAgent(ctx, store.Agent{Name: "a0", CreatedAt: time.Now()}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateAgent of an existing name: %v", err)
	}
	if _, err := s.SetMetaIfAbsent(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got, ok := next(300 * time.Millisecond); ok {
		t.Errorf("a refused write or a meta write sent a notification %q", got)
	}
	if s.Channel() == channelName("public") {
		t.Errorf("a test schema's channel is the public schema's")
	}
}

// TestNodesMigrateAtOnce: nodes started together on a fresh schema
// migrate one at a time; all start.
func TestNodesMigrateAtOnce(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(t.Context(), url, Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Open: %v", err)
		}
	}
}

// TestOpenCreatesTheSchema: a search_path naming a schema that does not
// exist yet gets it created.
func TestOpenCreatesTheSchema(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t) // exists: drop it so Open must create it
	s := openURL(t, url)
	schema := s.Schema()
	s.Close()
	pgtest.Exec(t, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	s2 := openURL(t, url)
	if s2.Schema() != schema {
		t.Errorf("schema %q, want %q", s2.Schema(), schema)
	}
	if err := s2.CreateAgent(t.Context(), store.Agent{Name: "x", CreatedAt: time.Now()}); err != nil {
		t.Error(err)
	}
}

// TestLock pins the refresh-token lock: one holder at a time across nodes
// (two stores on one schema), other keys independent, a wait bounded by
// its context, and a lock whose holder's session died is free again.
func TestLock(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	nodes := []*Store{openURL(t, url), openURL(t, url)}
	var inside, max, total atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			unlock, err := nodes[i%2].Lock(t.Context(), "oauth/gh")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := max.Load()
				if n <= m || max.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			total.Add(1)
			inside.Add(-1)
			unlock()
		})
	}
	wg.Wait()
	if max.Load() != 1 || total.Load() != 20 {
		t.Errorf("%d holders at once (want 1), %d turns (want 20)", max.Load(), total.Load())
	}

	unlock, err := nodes[0].Lock(t.Context(), "oauth/gh")
	if err != nil {
		t.Fatal(err)
	}
	other, err := nodes[1].Lock(ctxFor(t, time.Second), "oauth/slack")
	if err != nil {
		t.Fatalf("another key waited for a held one: %v", err)
	}
	other()
	if _, err := nodes[1].Lock(ctxFor(t, 200*time.Millisecond), "oauth/gh"); err == nil {
		t.Fatal("a held lock was granted to another node")
	}
	unlock()
	unlock() // idempotent
	again, err := nodes[1].Lock(ctxFor(t, 5*time.Second), "oauth/gh")
	if err != nil {
		t.Fatalf("a released lock (after a timed-out wait) could not be taken: %v", err)
	}
	again()

	// The holder's session ends (its node died): the lock is free.
	dead, err := nodes[0].Lock(t.Context(), "oauth/dead")
	if err != nil {
		t.Fatal(err)
	}
	defer dead() // on a dead session: closes it and gives it back
	pgtest.Exec(t, fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('keyhole/%s/oauth/dead', 0)`, nodes[0].Schema()))
	free, err := nodes[1].Lock(ctxFor(t, 5*time.Second), "oauth/dead")
	if err != nil {
		t.Fatalf("the lock of a dead session was not released: %v", err)
	}
	free()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestAuditCommitOutcomeLost reproduces the connection dying after a
// batch committed (the writer is told it failed) with a real audit writer:
// the batch's refused start must not stay in the chain, the end event the
// writer keeps and resends must not collide with its own earlier copy,
// and the node must go on writing, with a chain that verifies.
func TestAuditCommitOutcomeLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openURL(t, pgtest.URL(t))
	key := make([]byte, 32)
	rand.Read(key)
	w, err := audit.NewWriter(ctx, s, audit.Options{Node: "n1", CheckpointKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Close(ctx)
	}()
	var lose atomic.Int32 // batches whose success is reported as a lost connection
	s.afterAppend = func(err error) error {
		if err == nil && lose.Add(-1) >= 0 {
			return errors.New("read tcp: connection reset by peer (after commit)")
		}
		return err
	}
	start := func(id string) *audit.Start {
		return &audit.Start{ID: id, Time: time.Now(), Node: "n1", Agent: "alice", TokenID: "tok", Proxy: "gh", Method: "GET", Path: "/" + id, Decision: audit.Allow}
	}
	if err := w.Begin(ctx, start("r1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx, "r1", &audit.End{Status: 200, Upstream: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Begin(ctx, start("r3")); err != nil {
		t.Fatal(err)
	}
	// r3's end commits, but the writer hears of a failure: it keeps the
	// end (its request reached the upstream) and sends it again.
	lose.Store(1)
	if err := w.Finish(ctx, "r3", &audit.End{Status: 201, Upstream: true}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Finish with the outcome lost: %v, want ErrUnavailable", err)
	}
	waitHealthy(t, w)
	// r4's start commits, the writer hears of a failure and refuses the
	// request (503): the start must not stay.
	lose.Store(1)
	if err := w.Begin(ctx, start("r4")); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Begin with the outcome lost: %v, want ErrUnavailable", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := w.Record(ctx, start("r5"), &audit.End{Status: 403})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer did not recover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if row, err := s.GetLog(ctx, "r3"); err != nil || !row.Index.Complete || row.Index.Status != 201 || len(row.Events) != 2 {
		t.Errorf("r3: %+v, %v; want complete, status 201, start and one end", row.Index, err)
	}
	if _, err := s.GetLog(ctx, "r4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused request r4 kept its start: %v", err)
	}
	heads, err := audit.Checkpoints(ctx, s, key, "n1", "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, s, heads)
	if err != nil || !res.OK || res.Records != 3 {
		t.Errorf("verify: %+v, %v; want ok with 3 records (r1, r3, r5)", res, err)
	}
}

func waitHealthy(t *testing.T, w *audit.Writer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !w.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not recover within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCustomPlans pins plan_cache_mode (see tune): a generic plan cached
// while the audit tables were empty scanned audit_records whole for every
// batch once they had grown. A URL may still choose its own.
func TestCustomPlans(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	for _, tc := range []struct{ url, want string }{
		{url, "force_custom_plan"},
		{url + "&plan_cache_mode=auto", "auto"},
	} {
		s := openURL(t, tc.url)
		for range 3 { // several connections of the pool
			var got string
			if err := s.pool.QueryRow(t.Context(), "SHOW plan_cache_mode").Scan(&got); err != nil || got != tc.want {
				t.Errorf("%s: plan_cache_mode %q, %v; want %q", tc.url, got, err, tc.want)
			}
		}
	}
}
