package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// RunSessions runs the conformance tests of store.Sessions and
// store.OAuthFlows for a store that implements them (each subtest is
// skipped, saying so, when it does not).
func RunSessions(t *testing.T, open func(t *testing.T) store.Store) {
	// withAdmins opens a store with the admin tokens the tests name.
	withAdmins := func(t *testing.T) store.Store {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		for _, id := range []string{"adm-s1", "adm-s2"} {
			must(t, "CreateAdminToken", s.CreateAdminToken(t.Context(), store.AdminToken{ID: id, Hash: "h-" + id, Name: id, Role: "admin", CreatedAt: at(0)}))
		}
		return s
	}
	t.Run("Sessions", func(t *testing.T) {
		s := withAdmins(t)
		ss, ok := s.(store.Sessions)
		if !ok {
			t.Skip("this store does not implement store.Sessions")
		}
		v := version(t, s)
		Sessions(t, ss)
		wantErr(t, "CreateSession for an unknown admin token",
			ss.CreateSession(t.Context(), session("s-x", "adm-nope", 0, 3600)), store.ErrMissingRef)
		if got := version(t, s); got != v {
			t.Errorf("sessions bumped the configuration version from %d to %d; they are not configuration", v, got)
		}
	})
	t.Run("OAuthFlows", func(t *testing.T) {
		s := withAdmins(t)
		fs, ok := s.(store.OAuthFlows)
		if !ok {
			t.Skip("this store does not implement store.OAuthFlows")
		}
		v := version(t, s)
		OAuthFlows(t, fs)
		wantErr(t, "PutFlow for an unknown admin token", fs.PutFlow(t.Context(), flow("f-x", "adm-nope", 0, 600)), store.ErrMissingRef)
		if got := version(t, s); got != v {
			t.Errorf("flows bumped the configuration version from %d to %d; they are not configuration", v, got)
		}
	})
}

func session(id, admin string, created, expires float64) store.Session {
	return store.Session{ID: id, AdminTokenID: admin, Display: "name of " + admin, Via: "token",
		CreatedAt: at(created), LastSeen: at(created), ExpiresAt: at(expires)}
}

func flow(id, admin string, created, expires float64) store.OAuthFlow {
	return store.OAuthFlow{ID: id, Secret: "secret-" + id, AdminTokenID: admin, Sealed: []byte("\x01sealed\x00" + id),
		CreatedAt: at(created), ExpiresAt: at(expires)}
}

// Sessions is the conformance test of a store.Sessions on its own; the
// admin tokens adm-s1 and adm-s2 must exist (RunSessions creates them).
func Sessions(t *testing.T, ss store.Sessions) {
	ctx := t.Context()
	get := func(id string, now float64) (store.Session, error) { return ss.GetSession(ctx, id, at(now)) }

	s1 := session("s-1", "adm-s1", 0, 3600)
	s1.Via, s1.Display = "password", "ann"
	must(t, "CreateSession", ss.CreateSession(ctx, s1))
	must(t, "CreateSession", ss.CreateSession(ctx, session("s-2", "adm-s1", 1, 3601)))
	must(t, "CreateSession", ss.CreateSession(ctx, session("s-3", "adm-s2", 2, 3602)))
	wantErr(t, "CreateSession with an existing id", ss.CreateSession(ctx, session("s-1", "adm-s2", 3, 3603)), store.ErrConflict)

	got, err := get("s-1", 10)
	must(t, "GetSession", err)
	if d := cmp.Diff(s1, got, opts); d != "" {
		t.Errorf("GetSession (-want +got):\n%s", d)
	}
	_, err = get("s-nope", 10)
	wantErr(t, "GetSession of an unknown id", err, store.ErrNotFound)
	_, err = get("s-1", 3600)
	wantErr(t, "GetSession at its expiry", err, store.ErrNotFound)

	// Touch: the sliding deadline moves; an expired session stays dead.
	must(t, "TouchSession", ss.TouchSession(ctx, "s-1", at(1800), at(5400)))
	s1.LastSeen, s1.ExpiresAt = at(1800), at(5400)
	got, err = get("s-1", 5000)
	must(t, "GetSession after TouchSession", err)
	if d := cmp.Diff(s1, got, opts); d != "" {
		t.Errorf("GetSession after TouchSession (-want +got):\n%s", d)
	}
	wantErr(t, "TouchSession of an unknown id", ss.TouchSession(ctx, "s-nope", at(10), at(3610)), store.ErrNotFound)
	wantErr(t, "TouchSession after its expiry", ss.TouchSession(ctx, "s-2", at(3601), at(7201)), store.ErrNotFound)
	_, err = get("s-2", 3602)
	wantErr(t, "GetSession of an expired session that was touched too late", err, store.ErrNotFound)

	// Flash: one-time.
	must(t, "SetFlash", ss.SetFlash(ctx, "s-1", "Proxy github saved."))
	if got, _ := get("s-1", 20); got.Flash != "Proxy github saved." {
		t.Errorf("GetSession after SetFlash: Flash = %q", got.Flash)
	}
	msg, err := ss.TakeFlash(ctx, "s-1")
	must(t, "TakeFlash", err)
	if msg != "Proxy github saved." {
		t.Errorf("TakeFlash = %q, want the message", msg)
	}
	if msg, err := ss.TakeFlash(ctx, "s-1"); err != nil || msg != "" {
		t.Errorf("TakeFlash again = %q, %v; want \"\", nil", msg, err)
	}
	if msg, err := ss.TakeFlash(ctx, "s-nope"); err != nil || msg != "" {
		t.Errorf("TakeFlash of an unknown id = %q, %v; want \"\", nil", msg, err)
	}
	wantErr(t, "SetFlash of an unknown id", ss.SetFlash(ctx, "s-nope", "x"), store.ErrNotFound)
	// Of concurrent takers, one gets the message.
	for round := range 5 {
		want := fmt.Sprintf("message %d", round)
		must(t, "SetFlash", ss.SetFlash(ctx, "s-3", want))
		var mu sync.Mutex
		var got []string
		race(8, func() {
			m, err := ss.TakeFlash(ctx, "s-3")
			if err != nil {
				t.Errorf("TakeFlash: %v", err)
			}
			mu.Lock()
			if m != "" {
				got = append(got, m)
			}
			mu.Unlock()
		})
		if len(got) != 1 || got[0] != want {
			t.Fatalf("8 concurrent TakeFlash calls got %q, want one %q", got, want)
		}
	}

	// Delete one; then all of an admin token's.
	must(t, "CreateSession", ss.CreateSession(ctx, session("s-4", "adm-s1", 5, 3605)))
	must(t, "DeleteSession", ss.DeleteSession(ctx, "s-3"))
	wantErr(t, "DeleteSession again", ss.DeleteSession(ctx, "s-3"), store.ErrNotFound)
	_, err = get("s-3", 10)
	wantErr(t, "GetSession after DeleteSession", err, store.ErrNotFound)
	must(t, "CreateSession", ss.CreateSession(ctx, session("s-5", "adm-s2", 5, 3605)))
	n, err := ss.DeleteSessionsOf(ctx, "adm-s1")
	must(t, "DeleteSessionsOf", err)
	if n != 3 { // s-1, s-2 (expired, not swept yet) and s-4
		t.Errorf("DeleteSessionsOf(adm-s1) = %d, want 3", n)
	}
	for _, id := range []string{"s-1", "s-4"} {
		_, err = get(id, 10)
		wantErr(t, "GetSession after DeleteSessionsOf", err, store.ErrNotFound)
	}
	if _, err := get("s-5", 10); err != nil {
		t.Errorf("DeleteSessionsOf(adm-s1) ended adm-s2's session: %v", err)
	}
	if n, err := ss.DeleteSessionsOf(ctx, "adm-s1"); err != nil || n != 0 {
		t.Errorf("DeleteSessionsOf again = %d, %v; want 0, nil", n, err)
	}

	// The sweep deletes what expired at now (ExpiresAt ≤ now), nothing else.
	must(t, "CreateSession", ss.CreateSession(ctx, session("s-e1", "adm-s2", 0, 10)))
	must(t, "CreateSession", ss.CreateSession(ctx, session("s-e2", "adm-s2", 0, 20)))
	for _, c := range []struct {
		now  float64
		want int64
	}{{5, 0}, {15, 1}, {20, 1}, {21, 0}} {
		n, err := ss.DeleteExpiredSessions(ctx, at(c.now))
		must(t, "DeleteExpiredSessions", err)
		if n != c.want {
			t.Errorf("DeleteExpiredSessions(at %v s) = %d, want %d", c.now, n, c.want)
		}
	}
	if _, err := get("s-5", 21); err != nil {
		t.Errorf("the sweep took a live session: %v", err)
	}
}

// OAuthFlows is the conformance test of a store.OAuthFlows on its own;
// the admin tokens adm-s1 and adm-s2 must exist (RunSessions creates them).
func OAuthFlows(t *testing.T, fs store.OAuthFlows) {
	ctx := t.Context()
	f1 := flow("f-1", "adm-s1", 0, 600)
	must(t, "PutFlow", fs.PutFlow(ctx, f1))
	wantErr(t, "PutFlow with an existing id", fs.PutFlow(ctx, flow("f-1", "adm-s2", 1, 601)), store.ErrConflict)
	got, err := fs.TakeFlow(ctx, "f-1", at(60))
	must(t, "TakeFlow", err)
	if d := cmp.Diff(f1, got, opts); d != "" {
		t.Errorf("TakeFlow (-want +got):\n%s", d)
	}
	_, err = fs.TakeFlow(ctx, "f-1", at(61))
	wantErr(t, "TakeFlow again (single use)", err, store.ErrNotFound)
	_, err = fs.TakeFlow(ctx, "f-nope", at(61))
	wantErr(t, "TakeFlow of an unknown id", err, store.ErrNotFound)

	// An expired flow is not returned, and is gone.
	must(t, "PutFlow", fs.PutFlow(ctx, flow("f-2", "adm-s2", 0, 600)))
	_, err = fs.TakeFlow(ctx, "f-2", at(600))
	wantErr(t, "TakeFlow at its expiry", err, store.ErrNotFound)
	_, err = fs.TakeFlow(ctx, "f-2", at(1))
	wantErr(t, "TakeFlow of an expired flow, again", err, store.ErrNotFound)

	// The sweep deletes what expired at now, nothing else.
	must(t, "PutFlow", fs.PutFlow(ctx, flow("f-3", "adm-s1", 0, 5)))
	must(t, "PutFlow", fs.PutFlow(ctx, flow("f-4", "adm-s1", 0, 600)))
	for _, c := range []struct {
		now  float64
		want int64
	}{{4, 0}, {5, 1}, {6, 0}} {
		n, err := fs.DeleteExpiredFlows(ctx, at(c.now))
		must(t, "DeleteExpiredFlows", err)
		if n != c.want {
			t.Errorf("DeleteExpiredFlows(at %v s) = %d, want %d", c.now, n, c.want)
		}
	}
	if _, err := fs.TakeFlow(ctx, "f-4", at(7)); err != nil {
		t.Errorf("the sweep took a live flow: %v", err)
	}

	// Racing takers (two nodes given one callback, or a replay): exactly
	// one gets the flow, the others ErrNotFound.
	for _, takers := range []int{2, 2, 2, 2, 2, 8, 8, 8} {
		id := fmt.Sprintf("f-race-%d-%d", takers, time.Now().UnixNano())
		must(t, "PutFlow", fs.PutFlow(ctx, flow(id, "adm-s2", 0, 600)))
		var mu sync.Mutex
		won := 0
		race(takers, func() {
			f, err := fs.TakeFlow(ctx, id, at(1))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && f.ID == id:
				won++
			case !errors.Is(err, store.ErrNotFound):
				t.Errorf("TakeFlow: %v", err)
			}
		})
		if won != 1 {
			t.Fatalf("%d concurrent TakeFlow calls of one flow: %d got it, want exactly 1", takers, won)
		}
	}
}

// race runs fn in n goroutines released together, and waits for them.
func race(n int, fn func()) {
	var start, done sync.WaitGroup
	start.Add(1)
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			fn()
		}()
	}
	start.Done()
	done.Wait()
}
