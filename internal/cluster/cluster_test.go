package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/postgres"
	"github.com/keyhole-gw/keyhole/internal/store/postgres/pgtest"
)

// node stands for a keyhole node's catalog: it "rebuilds" by reading the
// store's version, and notes when it first saw each one.
type node struct {
	st   *postgres.Store
	v    atomic.Int64
	mu   sync.Mutex
	seen map[int64]time.Time
}

func (n *node) reload(ctx context.Context) error {
	v, err := n.st.Version(ctx)
	if err != nil {
		return err
	}
	if v != n.v.Load() {
		n.v.Store(v)
		n.mu.Lock()
		n.seen[v] = time.Now()
		n.mu.Unlock()
	}
	return nil
}

// waitFor waits until the node serves version v, returning when it did.
func (n *node) waitFor(t *testing.T, v int64, bound time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(bound)
	for n.v.Load() < v {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not reach version %d within %v (serves %d)", v, bound, n.v.Load())
		}
		time.Sleep(time.Millisecond)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if at, ok := n.seen[v]; ok {
		return at
	}
	return time.Now()
}

type setup struct {
	st      *postgres.Store
	n       *node
	w       *Watcher
	connect atomic.Bool // false: Connect fails (the database refuses the listener)
}

func start(t *testing.T, listen bool, poll time.Duration) *setup {
	t.Helper()
	st, err := postgres.Open(t.Context(), pgtest.URL(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &setup{st: st, n: &node{st: st, seen: map[int64]time.Time{}}}
	s.connect.Store(true)
	o := Options{Channel: st.Channel(), Poll: poll, Current: s.n.v.Load, Reload: s.n.reload, Logger: slog.New(slog.DiscardHandler)}
	if listen {
		o.Connect = func(ctx context.Context) (*pgx.Conn, error) {
			if !s.connect.Load() {
				return nil, errors.New("connection refused (test)")
			}
			return pgx.ConnectConfig(ctx, st.ConnConfig())
		}
	}
	s.w = Start(o)
	t.Cleanup(s.w.Close)
	return s
}

// write makes a configuration change and returns its version and when it
// was committed.
func (s *setup) write(t *testing.T, i int) (int64, time.Time) {
	t.Helper()
	if err := s.st.CreateAgent(t.Context(), store.Agent{Name: fmt.Sprintf("agent-%d-%d", i, time.Now().UnixNano()), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	v, err := s.st.Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v, at
}

func (s *setup) waitListening(t *testing.T, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.w.Listening() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Listening() stayed %v for 10 s", !want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNotifyBringsChanges: with a poll too slow to matter, changes arrive
// by notification, each within a fraction of a second.
func TestNotifyBringsChanges(t *testing.T) {
	t.Parallel()
	s := start(t, true, time.Hour)
	s.waitListening(t, true)
	var lat []time.Duration
	for i := range 30 {
		v, at := s.write(t, i)
		lat = append(lat, s.n.waitFor(t, v, 2*time.Second).Sub(at))
	}
	slices.Sort(lat)
	t.Logf("NOTIFY: change to rebuild p50 %v, max %v over %d changes", lat[len(lat)/2], lat[len(lat)-1], len(lat))
}

// TestPollAloneConverges: without LISTEN, every change arrives within
// about one poll interval.
func TestPollAloneConverges(t *testing.T) {
	t.Parallel()
	const poll = 200 * time.Millisecond
	s := start(t, false, poll)
	var worst time.Duration
	for i := range 10 {
		v, at := s.write(t, i)
		worst = max(worst, s.n.waitFor(t, v, 10*poll).Sub(at))
	}
	if worst > poll+500*time.Millisecond { // a loaded machine delays ticks and reads
		t.Errorf("a change took %v with a %v poll", worst, poll)
	}
}

// TestListenerReconnects: the listener's backend is killed (a restart, a
// network cut, an idle-session killer); a change made while it is down
// arrives (by the check every reconnection starts with, or the poll), and
// the listener comes back by itself and carries changes again.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	s := start(t, true, time.Hour)
	s.waitListening(t, true)
	for round := range 3 {
		s.connect.Store(false) // hold it down while the change is made
		pgtest.Exec(t, fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN %s'`,
			pgx.Identifier{s.st.Channel()}.Sanitize()))
		s.waitListening(t, false)
		v, _ := s.write(t, round)
		time.Sleep(200 * time.Millisecond)
		if s.n.v.Load() >= v {
			t.Fatalf("round %d: a change arrived with no listener and no poll", round)
		}
		s.connect.Store(true)
		s.waitListening(t, true)
		s.n.waitFor(t, v, 5*time.Second) // the check on reconnection
		v2, _ := s.write(t, 100+round)
		s.n.waitFor(t, v2, 2*time.Second) // by notification again
	}
}

// TestDeadListenerPollBound: the listener cannot connect at all; the poll
// alone keeps the node within its interval.
func TestDeadListenerPollBound(t *testing.T) {
	t.Parallel()
	const poll = 150 * time.Millisecond
	s := start(t, true, poll)
	s.waitListening(t, true)
	s.connect.Store(false)
	pgtest.Exec(t, fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN %s'`,
		pgx.Identifier{s.st.Channel()}.Sanitize()))
	s.waitListening(t, false)
	for i := range 5 {
		v, at := s.write(t, i)
		if d := s.n.waitFor(t, v, 10*poll).Sub(at); d > poll+500*time.Millisecond {
			t.Errorf("change %d took %v with the listener dead and a %v poll", i, d, poll)
		}
	}
}
