package ui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/admin"
	"github.com/keyhole-gw/keyhole/internal/catalog"
	"github.com/keyhole-gw/keyhole/internal/netguard"
	"github.com/keyhole-gw/keyhole/internal/store"
	"github.com/keyhole-gw/keyhole/internal/store/sqlite"
	"github.com/keyhole-gw/keyhole/internal/store/storetest"
	"github.com/keyhole-gw/keyhole/internal/vault"
)

// TestMemSessionsConformance: the in-memory fallback behaves as the
// stores do.
func TestMemSessionsConformance(t *testing.T) {
	storetest.Sessions(t, newMemSessions())
}

// countingSessions counts the writes a request makes, and can fail.
type countingSessions struct {
	store.Sessions
	touches, reads atomic.Int64
	fail           atomic.Bool
}

func (c *countingSessions) GetSession(ctx context.Context, id string, now time.Time) (store.Session, error) {
	c.reads.Add(1)
	if c.fail.Load() {
		return store.Session{}, errors.New("connection refused")
	}
	return c.Sessions.GetSession(ctx, id, now)
}

func (c *countingSessions) TouchSession(ctx context.Context, id string, seen, expires time.Time) error {
	c.touches.Add(1)
	return c.Sessions.TouchSession(ctx, id, seen, expires)
}

// sessionFixture: sessions on a SQLite store, with a catalog that knows
// one admin token, and a clock the test moves.
type sessionFixture struct {
	st    *sqlite.Store
	cat   *catalog.Catalog
	s     *sessions
	cs    *countingSessions
	clock time.Time
	adm   *catalog.Admin
}

func newSessionFixture(t *testing.T) *sessionFixture {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir()+"/k.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, _, err := vault.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	wk, _ := mk.NewDataKey(1)
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := st.AddKey(ctx, store.Key{ID: wk.ID, Wrapped: wk.Wrapped, CreatedAt: now, Active: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAdminToken(ctx, store.AdminToken{ID: "adm_ann", Hash: "h-ann", Name: "ann", Role: "admin", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	guard, _ := netguard.New(nil)
	cat, err := catalog.New(ctx, catalog.Options{Store: st, Master: mk, Guard: guard})
	if err != nil {
		t.Fatal(err)
	}
	f := &sessionFixture{st: st, cat: cat, clock: now, adm: cat.Load().AdminByID("adm_ann", now)}
	f.cs = &countingSessions{Sessions: st}
	f.s = &sessions{st: f.cs, cat: cat, log: slog.New(slog.DiscardHandler), now: func() time.Time { return f.clock }}
	return f
}

func (f *sessionFixture) signIn(t *testing.T) (*session, *http.Cookie) {
	t.Helper()
	ss, c, err := f.s.create(t.Context(), httptest.NewRequest("POST", "/login", nil), f.adm, "ann", "token")
	if err != nil {
		t.Fatal(err)
	}
	return ss, c
}

func (f *sessionFixture) lookup(t *testing.T, c *http.Cookie) (*session, error) {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	ss, _, err := f.s.lookup(r)
	return ss, err
}

// TestSessionTouchAndExpiry: the idle deadline slides with a write at
// most once a minute; the idle and absolute limits end a session.
func TestSessionTouchAndExpiry(t *testing.T) {
	f := newSessionFixture(t)
	start := f.clock
	_, c := f.signIn(t)
	for _, sec := range []int{0, 1, 30, 59} {
		f.clock = start.Add(time.Duration(sec) * time.Second)
		if ss, err := f.lookup(t, c); ss == nil || err != nil {
			t.Fatalf("at %d s: signed out (%v)", sec, err)
		}
	}
	if n := f.cs.touches.Load(); n != 0 {
		t.Errorf("%d writes in the first minute of page views, want 0", n)
	}
	f.clock = start.Add(61 * time.Second)
	if ss, _ := f.lookup(t, c); ss == nil {
		t.Fatal("signed out after 61 s")
	}
	f.clock = start.Add(90 * time.Second)
	f.lookup(t, c)
	if n := f.cs.touches.Load(); n != 1 {
		t.Errorf("%d writes by 90 s, want 1 (at most one a minute)", n)
	}
	// Idle: an hour after the last touch (61 s), the session is over.
	f.clock = start.Add(61*time.Second + IdleTimeout - time.Second)
	if ss, _ := f.lookup(t, c); ss == nil {
		t.Fatal("signed out before the idle timeout")
	}
	f.clock = f.clock.Add(IdleTimeout)
	if ss, _ := f.lookup(t, c); ss != nil {
		t.Error("a session idle for an hour is still valid")
	}

	// Absolute: a session used every 50 minutes ends 12 hours after sign-in.
	f.clock = start
	_, c = f.signIn(t)
	for f.clock = start; f.clock.Before(start.Add(MaxSessionAge - time.Minute)); f.clock = f.clock.Add(50 * time.Minute) {
		if ss, _ := f.lookup(t, c); ss == nil {
			t.Fatalf("signed out %v after sign-in", f.clock.Sub(start))
		}
	}
	f.clock = start.Add(MaxSessionAge)
	if ss, _ := f.lookup(t, c); ss != nil {
		t.Error("a session is still valid 12 hours after sign-in")
	}
}

// TestSessionStoredAsHashes: the store holds the cookie's SHA-256 only,
// and no CSRF token; the CSRF token is derived from the cookie.
func TestSessionStoredAsHashes(t *testing.T) {
	f := newSessionFixture(t)
	ss, c := f.signIn(t)
	row, err := f.st.GetSession(t.Context(), keyOf(c.Value), f.clock)
	if err != nil {
		t.Fatalf("the session is not stored under SHA-256(cookie): %v", err)
	}
	dump := strings.Join([]string{row.ID, row.AdminTokenID, row.Display, row.Via, row.Flash}, "|")
	if strings.Contains(dump, c.Value) || strings.Contains(dump, ss.csrf) {
		t.Errorf("the stored session holds the cookie or the CSRF token: %s", dump)
	}
	if len(ss.csrf) != 43 || ss.csrf != csrfOf(c.Value) || ss.csrf == c.Value {
		t.Errorf("CSRF token %q: want 43 characters derived from the cookie, not the cookie", ss.csrf)
	}
	got, _ := f.lookup(t, c)
	if got == nil || got.csrf != ss.csrf {
		t.Errorf("a later request's CSRF token differs from the sign-in's")
	}
	_, c2 := f.signIn(t)
	if csrfOf(c2.Value) == ss.csrf {
		t.Error("two sessions have one CSRF token")
	}
}

// TestSessionFlashAndRevocation: a one-time message is read once; a
// revoked admin token's session ends and is deleted.
func TestSessionFlashAndRevocation(t *testing.T) {
	f := newSessionFixture(t)
	ctx := t.Context()
	ss, c := f.signIn(t)
	f.s.setFlash(ctx, ss, "Proxy github saved.")
	got, _ := f.lookup(t, c)
	if got == nil || got.flash != "Proxy github saved." {
		t.Fatalf("the next request does not carry the message: %+v", got)
	}
	if m := f.s.takeFlash(ctx, got); m != "Proxy github saved." {
		t.Errorf("takeFlash = %q", m)
	}
	got, _ = f.lookup(t, c)
	if got.flash != "" || f.s.takeFlash(ctx, got) != "" {
		t.Error("the message was shown twice")
	}

	if err := f.st.RevokeAdminToken(ctx, "adm_ann", f.clock); err != nil {
		t.Fatal(err)
	}
	if err := f.cat.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.lookup(t, c); got != nil {
		t.Fatal("the session of a revoked admin token is still valid")
	}
	if _, err := f.st.GetSession(ctx, keyOf(c.Value), f.clock); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the session of a revoked admin token is still stored: %v", err)
	}
}

// TestSessionStoreDown: a store that fails is not mistaken for a
// signed-out session.
func TestSessionStoreDown(t *testing.T) {
	f := newSessionFixture(t)
	_, c := f.signIn(t)
	f.cs.fail.Store(true)
	ss, err := f.lookup(t, c)
	if ss != nil || !errors.Is(err, admin.ErrSessionsUnavailable) {
		t.Errorf("lookup with the store down = %v, %v; want nil, ErrSessionsUnavailable", ss, err)
	}
	// No cookie: no store read at all.
	before := f.cs.reads.Load()
	r := httptest.NewRequest("GET", "/", nil)
	if ss, _, err := f.s.lookup(r); ss != nil || err != nil || f.cs.reads.Load() != before {
		t.Errorf("a request without a cookie read the store")
	}
}

// TestSessionsFallBackToMemory: a store without store.Sessions keeps them
// in memory.
func TestSessionsFallBackToMemory(t *testing.T) {
	f := newSessionFixture(t)
	s := newSessions(struct{ store.Store }{f.st}, f.cat, slog.New(slog.DiscardHandler))
	if _, ok := s.st.(*memSessions); !ok {
		t.Fatalf("sessions kept in %T, want memory", s.st)
	}
	if s := newSessions(f.st, f.cat, slog.New(slog.DiscardHandler)); s.st != store.Sessions(f.st) {
		t.Errorf("sessions kept in %T, want the store", s.st)
	}
}
