package quota

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

func TestPeriods(t *testing.T) {
	at := time.Date(2026, 11, 26, 7, 20, 5, 123, time.UTC)
	for _, c := range []struct {
		per        string
		start, end time.Time
	}{
		{"minute", time.Date(2026, 11, 26, 7, 20, 0, 0, time.UTC), time.Date(2026, 11, 26, 7, 21, 0, 0, time.UTC)},
		{"hour", time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)},
		{"day", time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"month", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if s, e := PeriodStart(c.per, at), PeriodEnd(c.per, at); !s.Equal(c.start) || !e.Equal(c.end) {
			t.Errorf("%s: want [%v, %v), got [%v, %v)", c.per, c.start, c.end, s, e)
		}
	}
	// A local time is judged in UTC.
	local := time.Date(2026, 12, 31, 23, 30, 0, 0, time.FixedZone("x", -3600))
	if got := PeriodStart("month", local); !got.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("periods are UTC calendar periods; got %v", got)
	}
}

type memStore struct {
	mu sync.Mutex
	m  map[string]Usage
}

func (s *memStore) LoadQuotas(context.Context) ([]Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Usage
	for _, u := range s.m {
		out = append(out, u)
	}
	return out, nil
}

func (s *memStore) SaveQuotas(_ context.Context, us []Usage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range us {
		s.m[u.Key] = u
	}
	return nil
}

func TestCountAndSumQuotas(t *testing.T) {
	st := &memStore{m: map[string]Usage{}}
	tr, err := New(context.Background(), st, nil, "n1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 7, 20, 5, 0, time.UTC)
	count := spec.Quota{Limit: 2, Per: "minute"}
	ck := Key("p", count, 0, "bot")
	for i, want := range []bool{true, true, false} {
		ok, wait := tr.Take(ck, count, now)
		if ok != want {
			t.Fatalf("count quota 2/minute, request %d: want %v, got %v", i+1, want, ok)
		}
		if !ok && wait != 55*time.Second {
			t.Errorf("a spent quota says how long until its period ends; want 55s, got %v", wait)
		}
	}
	if ok, _ := tr.Take(ck, count, now.Add(time.Minute)); !ok {
		t.Errorf("a new period starts afresh")
	}
	if ok, _ := tr.Take(Key("p", count, 0, "other"), count, now); !ok {
		t.Errorf("each agent has its own budget")
	}
	sum := spec.Quota{Limit: 100, Per: "day", Sum: "usage.total_tokens"}
	sk := Key("p", sum, 1, "bot")
	for i, c := range []struct {
		add  float64
		want bool
	}{{60, true}, {60, true}, {0, false}} {
		ok, _ := tr.Take(sk, sum, now)
		if ok != c.want {
			t.Fatalf("sum quota 100/day, request %d: want %v, got %v (spent %v)", i+1, c.want, ok, tr.Spent(sk, "day", now))
		}
		tr.Add(sk, "day", c.add, now)
	}
	tr.Close()
	// Restart: the counters come back from the store.
	tr2, err := New(context.Background(), st, nil, "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if got := tr2.Spent(sk, "day", now); got != 120 {
		t.Errorf("a sum survives a restart; want 120, got %v", got)
	}
	if got := tr2.Spent(ck, "minute", now.Add(time.Minute)); got != 1 {
		t.Errorf("a count survives a restart; want 1 in the second minute, got %v", got)
	}
}

// Without Redis each node counts its own traffic: on a shared store a
// node loads its own counters, never another node's.
func TestCountersAreScopedToTheirNode(t *testing.T) {
	st := &memStore{m: map[string]Usage{}}
	now := time.Now()
	q := spec.Quota{Limit: 1, Per: "hour"}
	k := Key("p", q, 0, "bot")
	a, _ := New(context.Background(), st, nil, "node-a")
	if ok, _ := a.Take(k, q, now); !ok {
		t.Fatal("first request of node a")
	}
	a.Close()
	b, _ := New(context.Background(), st, nil, "node-b")
	defer b.Close()
	if ok, _ := b.Take(k, q, now); !ok {
		t.Errorf("node b must not start from node a's count")
	}
	a2, _ := New(context.Background(), st, nil, "node-a")
	defer a2.Close()
	if ok, _ := a2.Take(k, q, now); ok {
		t.Errorf("node a restarted must keep its own count")
	}
}

// TestCountersSavedBeforeScopesAreKept: a row saved before counters were
// per node (no node prefix) is where an upgraded node starts, unless it has
// a row of its own; it is then saved under the node's own key.
func TestCountersSavedBeforeScopesAreKept(t *testing.T) {
	st := &memStore{m: map[string]Usage{}}
	now := time.Now()
	q := spec.Quota{Limit: 1, Per: "hour"}
	k := Key("p", q, 0, "bot")
	old, _ := New(context.Background(), st, nil, "")
	if ok, _ := old.Take(k, q, now); !ok {
		t.Fatal("first request before the upgrade")
	}
	old.Close()
	n, _ := New(context.Background(), st, nil, "node-a")
	if ok, _ := n.Take(k, q, now); ok {
		t.Errorf("after the upgrade the node must start from the count saved before it")
	}
	n.Close()
	if _, ok := st.m["node:node-a\x01"+k]; !ok {
		t.Errorf("the count was not saved under the node's own key: %v", st.m)
	}
}
