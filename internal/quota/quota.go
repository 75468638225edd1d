// Package quota keeps the per-agent budgets of SPEC §3.8: a count of
// requests, or a sum of a number read from each response (such as
// usage.total_tokens), per calendar minute, hour, day or month (UTC).
//
// Counters live in memory and are written to the store at most once a
// second and at shutdown, so they survive a restart; a crash can forget the
// last second of usage (documented). Several nodes share counters through
// Redis when configured (the several-nodes issue); without it each node
// counts its own traffic.
package quota

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

// Usage is one stored counter.
type Usage struct {
	Key         string
	PeriodStart time.Time
	Used        float64
}

// Store persists counters (store/sqlite and store/postgres implement it).
type Store interface {
	LoadQuotas(ctx context.Context) ([]Usage, error)
	SaveQuotas(ctx context.Context, us []Usage) error
}

// Counter keeps counters for several nodes at once (internal/redislimit,
// with --redis): Take, Add and Spent as Tracker's.
type Counter interface {
	Take(key string, q spec.Quota, now time.Time) (bool, time.Duration)
	Add(key, per string, v float64, now time.Time)
	Spent(key, per string, now time.Time) float64
}

// Tracker holds the counters of one node.
type Tracker struct {
	// Shared, when set (before the Tracker is used), keeps the counters
	// instead of this node's memory, so that every node counts against
	// the same budget (several nodes, --redis). It persists them itself.
	Shared Counter

	prefix string // of the stored keys: this node's (New's scope)
	mu     sync.Mutex
	m      map[string]*counter
	st     Store
	log    *slog.Logger
	stop   chan struct{}
	done   chan struct{}
	clock  func() time.Time
}

type counter struct {
	start time.Time
	used  float64
	dirty bool
}

// New loads the stored counters of the current periods and starts the
// flusher (st may be nil: memory only).
//
// scope names whose counters these are (the node id): without Redis each
// node counts its own traffic, so it saves and loads its own rows only —
// on a shared store a restarted node must not start from another's count.
func New(ctx context.Context, st Store, log *slog.Logger, scope string) (*Tracker, error) {
	t := &Tracker{m: map[string]*counter{}, st: st, log: log, stop: make(chan struct{}), done: make(chan struct{}), clock: time.Now}
	if log == nil {
		t.log = slog.Default()
	}
	if scope != "" {
		t.prefix = "node:" + scope + "\x01"
	}
	if st != nil {
		us, err := st.LoadQuotas(ctx)
		if err != nil {
			return nil, fmt.Errorf("cannot read quota counters: %w", err)
		}
		for _, u := range us {
			if k, ok := strings.CutPrefix(u.Key, t.prefix); ok && (t.prefix != "" || !strings.HasPrefix(u.Key, "node:")) {
				t.m[k] = &counter{start: u.PeriodStart, used: u.Used}
			}
		}
		if t.prefix != "" {
			// Rows saved before counters were per node (no prefix): the
			// node starts from them where it has no row of its own, so an
			// upgrade does not reset a period's count.
			for _, u := range us {
				if !strings.HasPrefix(u.Key, "node:") && t.m[u.Key] == nil {
					t.m[u.Key] = &counter{start: u.PeriodStart, used: u.Used, dirty: true}
				}
			}
		}
	}
	go t.flusher()
	return t, nil
}

// PeriodStart is the start of the calendar period (UTC) holding now.
func PeriodStart(per string, now time.Time) time.Time {
	now = now.UTC()
	switch per {
	case "minute":
		return now.Truncate(time.Minute)
	case "hour":
		return now.Truncate(time.Hour)
	case "day":
		return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	default: // month
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
}

// PeriodEnd is when the period holding now ends.
func PeriodEnd(per string, now time.Time) time.Time {
	s := PeriodStart(per, now)
	switch per {
	case "minute":
		return s.Add(time.Minute)
	case "hour":
		return s.Add(time.Hour)
	case "day":
		return s.AddDate(0, 0, 1)
	default:
		return s.AddDate(0, 1, 0)
	}
}

// Name is a quota's name in reason codes and keys: its name, or q<index>.
func Name(q spec.Quota, i int) string {
	if q.Name != "" {
		return q.Name
	}
	return fmt.Sprintf("q%d", i)
}

// Key identifies one agent's counter of one quota of one proxy. The period
// and what is counted are part of it, so changing them starts afresh;
// changing the limit applies to the running counter.
func Key(proxy string, q spec.Quota, i int, agent string) string {
	return strings.Join([]string{proxy, Name(q, i), q.Per, q.Sum, agent}, "\x00")
}

// Applies reports whether the quota covers agent.
func Applies(q spec.Quota, agent string) bool {
	if len(q.Agents) == 0 {
		return true
	}
	for _, a := range q.Agents {
		if a == agent {
			return true
		}
	}
	return false
}

func (t *Tracker) get(key, per string, now time.Time) *counter {
	start := PeriodStart(per, now)
	c := t.m[key]
	if c == nil || c.start.Before(start) {
		c = &counter{start: start, dirty: true}
		t.m[key] = c
	}
	return c
}

// Spent returns what agent has used of the quota in the current period.
func (t *Tracker) Spent(key, per string, now time.Time) float64 {
	if t.Shared != nil {
		return t.Shared.Spent(key, per, now)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(key, per, now).used
}

// Take checks a quota before a request: spent → false and how long until
// the period ends. A count quota is charged at once (so concurrent requests
// cannot overrun it); a sum quota is charged after the response (Add).
func (t *Tracker) Take(key string, q spec.Quota, now time.Time) (bool, time.Duration) {
	if t.Shared != nil {
		return t.Shared.Take(key, q, now)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.get(key, q.Per, now)
	if c.used >= float64(q.Limit) {
		return false, PeriodEnd(q.Per, now).Sub(now)
	}
	if q.Sum == "" {
		c.used++
		c.dirty = true
	}
	return true, 0
}

// Add charges v to a sum quota (after the response told how much).
func (t *Tracker) Add(key, per string, v float64, now time.Time) {
	if v <= 0 {
		return
	}
	if t.Shared != nil {
		t.Shared.Add(key, per, v, now)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.get(key, per, now)
	c.used += v
	c.dirty = true
}

func (t *Tracker) flusher() {
	defer close(t.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.Flush(context.Background())
		case <-t.stop:
			t.Flush(context.Background())
			return
		}
	}
}

// Flush writes the changed counters to the store (and forgets counters of
// past periods).
func (t *Tracker) Flush(ctx context.Context) {
	if t.st == nil {
		return
	}
	now := t.clock()
	t.mu.Lock()
	var us []Usage
	for k, c := range t.m {
		if c.dirty {
			us = append(us, Usage{Key: t.prefix + k, PeriodStart: c.start, Used: c.used})
			c.dirty = false
		} else if now.Sub(c.start) > 32*24*time.Hour {
			delete(t.m, k)
		}
	}
	t.mu.Unlock()
	if len(us) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := t.st.SaveQuotas(ctx, us); err != nil {
		t.log.Warn("quota counters not saved; retrying", "err", err)
		t.mu.Lock()
		for _, u := range us {
			if c := t.m[strings.TrimPrefix(u.Key, t.prefix)]; c != nil && c.start.Equal(u.PeriodStart) {
				c.dirty = true
			}
		}
		t.mu.Unlock()
	}
}

// Close flushes and stops the flusher.
func (t *Tracker) Close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}
