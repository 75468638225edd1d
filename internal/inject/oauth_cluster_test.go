package inject

// The several-node hooks (SPEC §10): OAuthOptions.Lock around refresh-token
// grants, and Material.Rotated, which keeps an access token when another
// node stored the provider's rotated refresh token.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/keyhole-gw/keyhole/internal/spec"
)

func TestOAuthLockAroundRefreshGrants(t *testing.T) {
	ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
		tokenJSON(w, fmt.Sprintf("at-%d", n), 60, map[string]any{"refresh_token": fmt.Sprintf("rt-%d", n+1)})
	})
	var held, locks atomic.Int32
	var sawHeld atomic.Bool
	opt := testOpt(newClock(), nil)
	opt.Lock = func(ctx context.Context, secret string) (func(), error) {
		if secret != "google" {
			t.Errorf("Lock(%q), want the secret's name", secret)
		}
		locks.Add(1)
		held.Add(1)
		return func() { held.Add(-1) }, nil
	}
	opt.Persist = func(ctx context.Context, name string, base int, fields map[string]string) (int, error) {
		sawHeld.Store(held.Load() == 1) // the rotated token is stored under the lock
		return base + 1, nil
	}
	s := newSource(t, spec.Auth{Type: "oauth2_refresh_token", TokenURL: ts.URL}, rtMaterial(1, "rt-1"), opt)
	mustToken(t, s)
	if locks.Load() != 1 || held.Load() != 0 || !sawHeld.Load() {
		t.Errorf("%d locks, %d still held, persisted under the lock: %v; want 1, 0, true", locks.Load(), held.Load(), sawHeld.Load())
	}

	// Client credentials spend nothing: no lock.
	cc := testOpt(newClock(), nil)
	cc.Lock = func(context.Context, string) (func(), error) {
		t.Error("Lock for a client-credentials grant")
		return func() {}, nil
	}
	mustToken(t, newSource(t, spec.Auth{Type: "oauth2_client_credentials", TokenURL: ts.URL}, ccMaterial(1), cc))

	// No lock, no refresh: the refresh token may have been spent already.
	before := ts.count()
	bad := testOpt(newClock(), nil)
	bad.Lock = func(context.Context, string) (func(), error) { return nil, errors.New("database unreachable") }
	s2 := newSource(t, spec.Auth{Type: "oauth2_refresh_token", TokenURL: ts.URL}, rtMaterial(1, "rt-x"), bad)
	if _, err := s2.Token(context.Background()); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Token without the lock: %v, want ErrAuthFailed", err)
	}
	if ts.count() != before {
		t.Error("the token endpoint was asked without the lock")
	}
}

func TestOAuthKeepsTokenOnAnotherNodesRotation(t *testing.T) {
	ts := newTokenServer(t, func(n int, r tokenRequest, w http.ResponseWriter) {
		tokenJSON(w, fmt.Sprintf("at-%d", n), 3600, nil)
	})
	s := newSource(t, spec.Auth{Type: "oauth2_refresh_token", TokenURL: ts.URL}, rtMaterial(1, "rt-1"), testOpt(newClock(), nil))
	if mustToken(t, s) != "at-1" {
		t.Fatal("priming failed")
	}
	// Another node refreshed: version 2 holds the rotated refresh token.
	m := rtMaterial(2, "rt-2")
	m.Rotated = true
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, s); tok != "at-1" || ts.count() != 1 {
		t.Errorf("after another node's rotation: %q after %d fetches; want at-1 kept", tok, ts.count())
	}
	if s.Version() != 2 {
		t.Errorf("version %d, want 2 (the next refresh spends rt-2)", s.Version())
	}
	// An admin's new grant (not marked) drops it.
	if err := s.Update(rtMaterial(3, "rt-admin")); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, s); tok != "at-2" {
		t.Errorf("after an admin's new grant: %q, want a new token", tok)
	}
	if got := ts.req(1).form.Get("refresh_token"); got != "rt-admin" {
		t.Errorf("the new grant sent refresh token %q, want rt-admin", got)
	}
}
